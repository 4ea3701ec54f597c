package fault

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/vm"
)

// kmemleakScript runs in the guest after all test binaries: two kmemleak
// scans (an object must stay unreferenced across scans and be older than
// kmemleak's minimum age to be reported), then the report, which must be
// empty.
const kmemleakScript = `
f=/sys/kernel/debug/kmemleak
if [ ! -e $f ]; then
	echo "kmemleak: $f missing: the debug kernel was built without CONFIG_DEBUG_KMEMLEAK or debugfs is not mounted"
	exit 2
fi
echo scan >$f
sleep 6
echo scan >$f
report=$(cat $f)
if [ -n "$report" ]; then
	echo "kmemleak: suspected leaks:"
	echo "$report"
	exit 1
fi
echo "kmemleak: scan after the suite reports nothing"
`

// debugKernelRoot returns the cached debug kernel's root (see
// test/debugkernel/build.sh) or why there is none.
func debugKernelRoot(repo string) (string, error) {
	cmd := exec.Command(filepath.Join(repo, "test", "debugkernel", "build.sh"), "--cached")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", errors.New(strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// releaseIn finds the one kernel release installed under root/boot.
func releaseIn(root string) (string, error) {
	m, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(m) != 1 {
		return "", errors.New("want exactly one boot/vmlinuz-* in " + root)
	}
	return strings.TrimPrefix(filepath.Base(m[0]), "vmlinuz-"), nil
}

// TestDebugKernel runs the whole VM suite on the debug kernel: kecho's
// in-guest tests (test/guest, the daemon's included) and the fault, fuzz
// and soak suite (test/guestfault), then a kmemleak scan. Any KASAN,
// lockdep, atomic-sleep, debug-objects or other kernel report fails it
// (vm.SplatPatterns), and so does a non-empty kmemleak report.
//
// Building the kernel takes about an hour here, so this test only runs
// when it is cached; `make test-debug` builds it first. A cold cache is a
// skip, also under `make test`.
func TestDebugKernel(t *testing.T) {
	if testing.Short() && !vm.Required() {
		t.Skip("boots the debug kernel and runs the whole VM suite on it (20+ minutes under TCG); run without -short, or `make test-debug`")
	}
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	root, err := debugKernelRoot(repo)
	if err != nil {
		if os.Getenv("KECHO_REQUIRE_DEBUG_KERNEL") == "1" {
			t.Fatalf("no debug kernel: %v", err)
		}
		t.Skipf("skipped: %v (building it takes about an hour on two cores; the regular VM tests ran on the stock kernel)", err)
	}
	rel, err := releaseIn(root)
	if err != nil {
		t.Fatal(err)
	}
	k, err := vm.KernelFromRoot(root, rel)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := k.KernelConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{"CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_DEBUG_ATOMIC_SLEEP", "CONFIG_DEBUG_OBJECTS_WORK", "CONFIG_DEBUG_KMEMLEAK"} {
		if cfg[opt] != "y" {
			t.Fatalf("%s: %s is %q, not y", k.Config, opt, cfg[opt])
		}
	}
	spec := guestSpec(t, []string{"./test/guest", "./test/guestfault"}, []string{vm.GuestTag, "kechodaemon"})
	spec.Kernel = k
	if _, ok := spec.Env["KECHO_SOAK_DURATION"]; !ok {
		spec.Env["KECHO_SOAK_DURATION"] = "2m"
	}
	if _, ok := spec.Env["KECHO_FUZZ_DATAGRAMS"]; !ok {
		spec.Env["KECHO_FUZZ_DATAGRAMS"] = "3000" // KASAN and lockdep make every datagram slower
	}
	spec.Script = kmemleakScript
	spec.Memory = 2048
	spec.Timeout = 75 * time.Minute
	if f := os.Getenv("KECHO_DEBUG_RUN"); f != "" {
		spec.RunArgs = []string{"-test.run", f}
	}
	res := vm.RunTest(t, spec)
	logFigures(t, res)
	for _, l := range res.ScriptOutput {
		t.Log("guest script: " + l)
	}
	if res.ScriptExit != 0 {
		t.Errorf("kmemleak check exited %d", res.ScriptExit)
	}
}
