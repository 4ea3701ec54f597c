// Package vm boots a real Linux kernel in qemu with kecho and runs Go
// tests inside it. Other tests import it; `go test ./test/vm` runs
// kecho's own in-guest tests (test/guest).
//
// A run (Run, or RunTest inside a Go test) does this:
//
//   - picks a kernel (Spec.Kernel; DefaultKernel is the newest installed
//     Debian kernel that has headers, KernelFromRoot finds one extracted
//     from .debs elsewhere),
//   - builds kecho.ko from a copy of dkms/ against that kernel's headers
//     (BuildModule), unless Spec.Module gives a prebuilt one,
//   - compiles Spec.TestPackages with the build tag "kechoguest" into
//     static test binaries and Spec.Programs into static programs,
//   - assembles a gzip'd cpio initramfs: busybox-static with a link per
//     applet, the real kmod (modprobe, insmod, rmmod, lsmod, modinfo,
//     depmod) and iproute2's ip with their shared libraries, the kernel's
//     own modules that are needed (veth and kecho's dependencies, from
//     modules.dep; .ko, .ko.xz, .ko.zst), kecho.ko at
//     /lib/modules/<release>/updates/kecho.ko with the tree depmod'ed, the
//     test binaries in /tests and Spec.ExtraFiles,
//   - boots `qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 1G
//     -nographic -no-reboot` (KVM only with KECHO_VM_ACCEL=kvm): the
//     kernel console is the first serial port (ttyS0, saved as
//     kernel.log), the tests write to the second one (ttyS1), so kernel
//     messages and test output never interleave,
//   - /init mounts proc, sys, devtmpfs, devpts and tmpfs, brings up lo,
//     runs each test binary with -test.v=test2json, then Spec.Script, and
//     powers off; a run that outlives Spec.Timeout is killed,
//   - parses the test channel into Binary and GuestTest results and scans
//     the kernel log for splats (SplatPatterns: BUG, WARNING, Oops,
//     "scheduling while atomic", refcount and list corruption, hung tasks,
//     general protection faults, KASAN/UBSAN, lockdep reports, Call Trace).
//
// RunTest reports each guest test as a subtest of the calling test, fails
// on guest failures, an unfinished guest or a splat, and attaches the
// kernel log on failure. Logs of every run stay in LogRoot()
// (${KECHO_CACHE_DIR:-~/.cache/kecho}/vm-logs).
//
// Inside the guest, tests find: $PATH with real kmod and ip first,
// KECHO_VM=1, KECHO_KVER (the release), KECHO_VERSION (the version kecho
// was built with) and Spec.Env; `modprobe kecho` works; the tests run as
// root from /tmp.
//
// Shell scripts in the guest (Spec.Script) source /etc/kecho-vm/profile,
// which defines modprobe, insmod, rmmod, lsmod, modinfo, depmod and ip as
// functions calling the real tools: Debian's busybox shell would otherwise
// run its own applets of those names before searching $PATH. Go tests
// using os/exec get the real tools through $PATH.
//
// Environment knobs:
//
//	KECHO_VM_KVER=<release>   boot that kernel instead of the newest one
//	KECHO_VM_ROOT=<dir>       find it in a tree of extracted .debs
//	KECHO_VM_MODULE_SRC=<dir> build kecho from another source tree
//	KECHO_VM_NOCACHE=1        rebuild kecho.ko instead of reusing a cached
//	                          build (CacheRoot()/vm-modules, keyed by a hash
//	                          of sources, kernel, headers, compiler, version)
//	KECHO_VM_ACCEL=kvm        boot with KVM instead of TCG
//	KECHO_GUEST_RUN=<regexp>  -test.run filter for TestModuleInGuest
//	KECHO_REQUIRE_VM=1        missing prerequisites fail instead of skip
//
// Root is not needed: qemu runs under TCG, and the initramfs (device
// nodes included) is written by this package, not by cpio.
//
// Prerequisites (Missing, Require): qemu-system-x86, busybox-static,
// kmod, iproute2, make, gcc and a kernel image with modules and headers.
// Without them a test skips, except under KECHO_REQUIRE_VM=1 (`make
// test`), where that is a failure.
//
// Example, a daemon test booting kechod next to the module:
//
//	func TestDaemonInGuest(t *testing.T) {
//		vm.RunTest(t, vm.Spec{
//			TestPackages: []string{"./internal/daemon/vmtest"},
//			Programs:     map[string]string{"/usr/bin/kechod": "./cmd/kechod"},
//		})
//	}
package vm
