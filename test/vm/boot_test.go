package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQemu is a qemu-system-x86_64 stand-in: it writes a kernel log to
// the file of the first -serial, the guest output to stdout, and then
// sleeps $FAKE_QEMU_SLEEP seconds (or exits).
const fakeQemu = `#!/bin/sh
for a in "$@"; do case "$a" in file:*) log="${a#file:}";; esac; done
printf '[    1.000000] Linux version 6.1.0-fake\r\n' >"$log"
printf '[    2.000000] WARNING: CPU: 0 PID: 1 at kecho/socket.c:1 kecho_work+0x0/0x10 [kecho]\r\n' >>"$log"
echo "KECHO-VM: begin 6.1.0-fake"
echo "KECHO-VM: run guest.test"
printf '\026=== RUN   TestA\r\n\026--- PASS: TestA (0.00s)\r\n'
echo "KECHO-VM: exit guest.test 0"
if [ -n "$FAKE_QEMU_DONE" ]; then echo "KECHO-VM: script-exit 0"; echo "KECHO-VM: done"; fi
exec sleep "${FAKE_QEMU_SLEEP:-0}"
`

func withFakeQemu(t *testing.T, done bool, sleep string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "qemu-system-x86_64"), []byte(fakeQemu), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_QEMU_SLEEP", sleep)
	if done {
		t.Setenv("FAKE_QEMU_DONE", "1")
	} else {
		t.Setenv("FAKE_QEMU_DONE", "")
	}
}

func fakeBoot(t *testing.T, ctx context.Context, spec Spec) *Result {
	t.Helper()
	res := &Result{LogDir: t.TempDir(), ScriptExit: -1}
	if err := boot(ctx, spec, Kernel{Release: "6.1.0-fake", Image: "/nonexistent"}, "/nonexistent", res); err != nil {
		t.Fatal(err)
	}
	res.analyze()
	return res
}

// After "done" the harness does not wait for the guest to power off
// longer than doneGrace; output and the kernel log are captured and a
// splat in it fails the run.
func TestBootDoneThenKill(t *testing.T) {
	withFakeQemu(t, true, "30")
	old := doneGrace
	doneGrace = 200 * time.Millisecond
	defer func() { doneGrace = old }()
	var live strings.Builder
	start := time.Now()
	res := fakeBoot(t, context.Background(), Spec{Output: &live})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("boot took %v after the guest was done", d)
	}
	if !res.Finished || res.TimedOut || res.QemuError != nil {
		t.Fatalf("finished=%v timedOut=%v qemuErr=%v", res.Finished, res.TimedOut, res.QemuError)
	}
	if len(res.Binaries) != 1 || res.Binaries[0].Exit != 0 || res.Binaries[0].Tests[0].Status != StatusPass {
		t.Errorf("binaries %+v", res.Binaries)
	}
	if len(res.Splats) != 1 || !res.Failed() {
		t.Errorf("splats %q, failed=%v: a WARNING must fail the run", res.Splats, res.Failed())
	}
	if !strings.Contains(live.String(), "KECHO-VM: done") {
		t.Errorf("live output %q", live.String())
	}
	for _, f := range []string{"kernel.log", "guest.log", "qemu.log"} {
		if _, err := os.Stat(filepath.Join(res.LogDir, f)); err != nil {
			t.Error(err)
		}
	}
	if strings.Contains(res.GuestOutput, "\r") {
		t.Error("carriage returns left in the guest output")
	}
}

// A guest that never finishes is killed at the deadline.
func TestBootTimeout(t *testing.T) {
	withFakeQemu(t, false, "30")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	res := fakeBoot(t, ctx, Spec{})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the timeout took %v to kill qemu", d)
	}
	if !res.TimedOut || res.Finished || !res.Failed() {
		t.Fatalf("timedOut=%v finished=%v failed=%v", res.TimedOut, res.Finished, res.Failed())
	}
	if p := res.Problems(); len(p) == 0 || !strings.Contains(p[0], "timeout") {
		t.Errorf("problems %q", p)
	}
}

// A guest that dies before the end of /init (qemu exits) is unfinished.
func TestBootDiesEarly(t *testing.T) {
	withFakeQemu(t, false, "0")
	res := fakeBoot(t, context.Background(), Spec{})
	if res.Finished || res.TimedOut || !res.Failed() {
		t.Fatalf("finished=%v timedOut=%v failed=%v", res.Finished, res.TimedOut, res.Failed())
	}
	if p := res.Problems(); len(p) == 0 || !strings.Contains(p[0], "did not finish") {
		t.Errorf("problems %q", p)
	}
}
