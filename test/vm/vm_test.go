package vm

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// EnvGuestRun is a -test.run filter for the guest tests of
// TestModuleInGuest, e.g. KECHO_GUEST_RUN=TestHelloWorld.
const EnvGuestRun = "KECHO_GUEST_RUN"

// TestModuleInGuest builds kecho for the default kernel (DefaultKernel),
// boots it in qemu and runs the in-guest tests of test/guest, each
// reported as a subtest.
func TestModuleInGuest(t *testing.T) {
	if testing.Short() && !Required() {
		t.Skip("boots a VM (a few minutes under TCG); run without -short, or `make test`")
	}
	spec := Spec{
		TestPackages: []string{"./test/guest"},
		Timeout:      15 * time.Minute,
	}
	if f := os.Getenv(EnvGuestRun); f != "" {
		spec.RunArgs = []string{"-test.run", f}
	}
	if testing.Verbose() {
		spec.Output = &PrefixWriter{W: os.Stdout, Prefix: "guest| "}
	}
	res := RunTest(t, spec)
	if res.ModuleStub {
		t.Error("the guest tests ran against the test stand-in module (dkms/dkms.conf is missing); they cannot pass")
	}
}

// TestHarnessCatchesKernelCrash proves on a real kernel that the harness
// sees what the kernel reports: a backtrace dump (sysrq l) is a splat, and
// a crash (sysrq c) ends the run at once as unfinished instead of waiting
// for the timeout.
func TestHarnessCatchesKernelCrash(t *testing.T) {
	if testing.Short() && !Required() {
		t.Skip("boots a VM; run without -short, or `make test`")
	}
	Require(t)
	timeout := 5 * time.Minute
	res, err := Run(context.Background(), Spec{
		NoModule: true,
		Script:   "echo l >/proc/sysrq-trigger; sleep 2; echo c >/proc/sysrq-trigger; sleep 60; echo still alive",
		Timeout:  timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ran %.1fs; logs in %s", res.BootTime.Seconds(), res.LogDir)
	if res.Finished || res.TimedOut {
		t.Errorf("finished=%v timedOut=%v, want a guest that crashed before the end", res.Finished, res.TimedOut)
	}
	if strings.Contains(res.GuestOutput, "still alive") {
		t.Error("the guest survived sysrq c")
	}
	var trace, panicked bool
	for _, s := range res.Splats {
		trace = trace || strings.Contains(s, "Call Trace:")
		panicked = panicked || strings.Contains(s, "Kernel panic")
	}
	if !trace || !panicked {
		t.Errorf("splats %q: want the backtrace and the panic", res.Splats)
	}
	if !res.Failed() {
		t.Error("the run does not count as failed")
	}
	if t.Failed() {
		t.Logf("kernel log:\n%s", res.KernelLog)
	}
}
