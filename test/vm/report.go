package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// EnvRequire is set to 1 by `make test`: a missing VM prerequisite is then
// a test failure instead of a skip, and so is a guest test that skips
// without saying why.
const EnvRequire = "KECHO_REQUIRE_VM"

// Required reports whether KECHO_REQUIRE_VM=1.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Missing names the prerequisites of a VM run this host lacks ("" when
// none): qemu, busybox-static, kmod, iproute2, ldd, make, and a kernel
// with image, modules and headers (see DefaultKernel).
func Missing() string {
	var miss []string
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		miss = append(miss, "qemu-system-x86_64 (qemu-system-x86)")
	}
	for _, t := range []struct{ tool, pkg string }{
		{"busybox", "busybox-static"}, {"kmod", "kmod"}, {"depmod", "kmod"}, {"ip", "iproute2"},
		{"ldd", "libc-bin"}, {"make", "make"}, {"gcc", "gcc"},
	} {
		if _, err := lookTool(t.tool); err != nil {
			miss = append(miss, fmt.Sprintf("%s (%s)", t.tool, t.pkg))
		}
	}
	if p, err := lookTool("busybox"); err == nil && isDynamicELF(p) {
		miss = append(miss, "a static busybox (busybox-static)")
	}
	k, err := DefaultKernel()
	switch {
	case err != nil:
		miss = append(miss, err.Error())
	default:
		if f, err := os.Open(k.Image); err != nil {
			miss = append(miss, fmt.Sprintf("a readable kernel image (%v)", err))
		} else {
			f.Close()
		}
	}
	return strings.Join(miss, "; ")
}

// Require skips the test when the host cannot run a VM, saying why and
// how to get there, or fails it under KECHO_REQUIRE_VM=1.
func Require(t testing.TB) {
	t.Helper()
	if miss := Missing(); miss != "" {
		Unmet(t, "VM test needs "+miss+"; run `make test` as root on Debian 12 (it installs qemu-system-x86, busybox-static, kmod, iproute2, linux-image-amd64, linux-headers-amd64 via test/deps.sh)")
	}
}

// Unmet skips the test with msg, which says what is missing and how to
// get it, or fails it with msg under KECHO_REQUIRE_VM=1, where every
// prerequisite must be there.
func Unmet(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// RunTest is Run for Go tests: it checks the prerequisites (Require),
// boots the guest and reports every guest test as a subtest of t with its
// output, in the guest's order. t fails when a guest test fails or does
// not finish, a guest binary exits non-zero, the guest does not finish, or
// the kernel log shows a splat (see SplatPatterns); then the kernel log is
// attached and the path of its saved copy printed. A guest test that
// skips is skipped on the host with its reason; under KECHO_REQUIRE_VM=1 a
// skip without a reason is a failure.
func RunTest(t *testing.T, spec Spec) *Result {
	t.Helper()
	Require(t)
	if spec.Timeout == 0 {
		spec.Timeout = DefaultTimeout
	}
	if dl, ok := t.Deadline(); ok {
		if left := timeFromNow(dl); left < spec.Timeout {
			spec.Timeout = left
		}
	}
	res, err := Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("VM run could not start: %v", err)
	}
	if res.ModuleStub {
		t.Logf("dkms/dkms.conf does not exist yet: the guest got the test stand-in module (loads, serves nothing)")
	}
	how := "built"
	if res.ModuleCached {
		how = "cached"
	}
	t.Logf("kernel %s, module %s (%s): build %.1fs, guest %.1fs; logs in %s",
		res.Kernel.Release, res.Module, how, res.BuildTime.Seconds(), res.BootTime.Seconds(), res.LogDir)
	single := len(res.Binaries) == 1
	for _, b := range res.Binaries {
		b := b
		if single {
			reportTests(t, b.Tests)
		} else {
			t.Run(strings.TrimSuffix(b.Name, ".test"), func(t *testing.T) { reportTests(t, b.Tests) })
		}
		if b.Exit != 0 {
			t.Errorf("guest binary %s exited with status %d; its output ends:\n%s", b.Name, b.Exit, lastLines(b.Output, 40))
		}
		if len(b.Tests) == 0 && b.Exit == 0 {
			t.Errorf("guest binary %s ran no tests (RunArgs %q match nothing?)", b.Name, spec.RunArgs)
		}
	}
	if len(res.Binaries) < len(spec.TestPackages) {
		t.Errorf("the guest ran %d of %d test binaries", len(res.Binaries), len(spec.TestPackages))
	}
	for _, n := range res.Notices {
		t.Logf("kernel log notice: %s", n)
	}
	for _, p := range res.Problems() {
		if strings.HasPrefix(p, "guest binary ") {
			continue // reported above with output
		}
		t.Error(p)
	}
	if spec.Script != "" && res.ScriptExit != 0 {
		t.Logf("guest script output:\n%s", strings.Join(res.ScriptOutput, "\n"))
	}
	if t.Failed() {
		t.Logf("kernel log (saved as %s/kernel.log):\n%s", res.LogDir, res.KernelLog)
	}
	return res
}

func reportTests(t *testing.T, tests []*GuestTest) {
	t.Helper()
	for _, gt := range tests {
		gt := gt
		name := gt.Name
		if i := strings.LastIndex(name, "/"); i >= 0 {
			name = name[i+1:]
		}
		t.Run(name, func(t *testing.T) {
			if len(gt.Output) > 0 {
				t.Logf("guest output:\n%s", strings.Join(gt.Output, "\n"))
			}
			reportTests(t, gt.Subtests)
			switch gt.Status {
			case StatusPass:
			case StatusFail:
				t.Errorf("guest test %s failed (%s)", gt.Name, gt.Elapsed)
			case StatusSkip:
				reason := skipReason(gt.Output)
				if reason == "" && Required() {
					t.Errorf("guest test %s skipped without saying why (a skip is a failure under %s=1)", gt.Name, EnvRequire)
					return
				}
				t.Skipf("guest test %s skipped: %s", gt.Name, reason)
			default:
				t.Errorf("guest test %s did not finish (crash, timeout or the guest died)", gt.Name)
			}
		})
	}
}

// skipReason is the text a skipped guest test logged.
func skipReason(out []string) string {
	var parts []string
	for _, l := range out {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "--- ") {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

func lastLines(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// timeFromNow is the time left until a test deadline, minus a margin for
// reporting.
func timeFromNow(dl time.Time) time.Duration {
	return time.Until(dl) - 30*time.Second
}
