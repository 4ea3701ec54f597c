package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/kmod/kmodtest"
	"github.com/kecho-dev/kecho/internal/notify/notifytest"
	"github.com/kecho-dev/kecho/internal/state"
)

// fakeHost replaces host for one test: a fake kernel, a temporary state
// directory, a /proc in which this process is "kechod", and a signal
// channel the test writes to.
type fakeHost struct {
	k    *kmodtest.Kernel
	sigs chan os.Signal
	dir  string
}

func useFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	f := &fakeHost{k: kmodtest.NewKernel(t), sigs: make(chan os.Signal, 4), dir: t.TempDir()}
	proc := t.TempDir()
	pid := strconv.Itoa(os.Getpid())
	os.MkdirAll(filepath.Join(proc, pid), 0o755)
	os.WriteFile(filepath.Join(proc, pid, "comm"), []byte("kechod\n"), 0o644)
	old := host
	host = hostDeps{
		runner: f.k, sysfsRoot: f.k.SysfsRoot, stateDir: f.dir, procRoot: proc,
		signals: func() (<-chan os.Signal, func()) { return f.sigs, func() {} },
	}
	t.Cleanup(func() { host = old })
	t.Setenv("WATCHDOG_USEC", "")
	return f
}

func udpFreePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func serviceConfig(t *testing.T, port int, extra string) string {
	return writeConfig(t, fmt.Sprintf(`module:
  port: %d
  bind_address: 127.0.0.1
health:
  interval: 1s
  timeout: 800ms
%s`, port, extra))
}

// loadFake loads the fake module as someone other than kechod would.
func (f *fakeHost) loadFake(t *testing.T, p kmod.Params) {
	t.Helper()
	if out, err := f.k.Run(context.Background(), "modprobe", append([]string{"kecho"}, p.Args()...)...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

func TestRunLifecycle(t *testing.T) {
	f := useFakeHost(t)
	n := notifytest.Listen(t, true)
	port := udpFreePort(t)
	cfg := serviceConfig(t, port, "")
	done := make(chan result, 1)
	go func() { done <- kechod(t, nil, "run", "--config", cfg) }()
	_, seen := n.WaitFor(t, `^READY=1$`, 10*time.Second)
	want := []string{"STATUS=starting…", "STATUS=loading module",
		fmt.Sprintf("STATUS=healthy · kecho 127.0.0.1:%d · rtt ", port)}
	if len(seen) != 3 || seen[0] != want[0] || seen[1] != want[1] || !strings.HasPrefix(seen[2], want[2]) {
		t.Fatalf("before READY: %q", seen)
	}
	n.WaitFor(t, ` 3/3 probes ok$`, 10*time.Second)

	// status, text and JSON.
	r := kechod(t, nil, "status", "--config", cfg)
	for _, w := range []string{
		"Module:   kecho loaded\n",
		fmt.Sprintf("  Params:   port=%d bind_addr=127.0.0.1 log_packets=Y max_pps=0\n", port),
		"  Counters: drop_bcast=0 drop_loop=0 drop_ratelimit=0 rx_bytes=",
		fmt.Sprintf("Daemon:   running (pid %d, kechod ", os.Getpid()),
		fmt.Sprintf("  Status:   healthy · kecho 127.0.0.1:%d · rtt ", port),
		"  Config:   " + cfg + "\n",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("status lacks %q:\n%s", w, r.stdout)
		}
	}
	if r.code != StatusRunning {
		t.Errorf("status exit %d, want 0", r.code)
	}
	r = kechod(t, nil, "status", "--json", "--config", cfg)
	var rep statusReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if !rep.Module.Loaded || rep.Module.Params["port"] != strconv.Itoa(port) || rep.Module.Counters["rx_packets"] < 3 ||
		rep.Daemon.Running != "running" || rep.Daemon.State.State != state.Healthy || rep.Daemon.State.Probes.OK < 3 {
		t.Errorf("status --json: %s", r.stdout)
	}

	// check against the running module.
	r = kechod(t, nil, "check", "--config", cfg)
	if !regexp.MustCompile(fmt.Sprintf(`^KECHO OK - echo from 127\.0\.0\.1:%d in \d+\.\d\d ms \| rtt=\d+\.\d\dms\n$`, port)).MatchString(r.stdout) || r.code != CheckOK {
		t.Errorf("check: %+v", r)
	}

	// SIGHUP with a drop-in that changes the port.
	port2 := udpFreePort(t)
	os.MkdirAll(filepath.Join(filepath.Dir(cfg), "conf.d"), 0o755)
	dropIn := filepath.Join(filepath.Dir(cfg), "conf.d", "10-port.yaml")
	os.WriteFile(dropIn, []byte(fmt.Sprintf("module:\n  port: %d\n", port2)), 0o644)
	f.sigs <- syscall.SIGHUP
	n.WaitFor(t, `^RELOADING=1\nMONOTONIC_USEC=\d+$`, 10*time.Second)
	_, seen = n.WaitFor(t, `^READY=1$`, 10*time.Second)
	if last := seen[len(seen)-1]; !strings.HasPrefix(last, fmt.Sprintf("STATUS=healthy · kecho 127.0.0.1:%d · ", port2)) {
		t.Errorf("after reload: %q", seen)
	}
	if a := f.k.Addr().(*net.UDPAddr); a.Port != port2 {
		t.Errorf("module on port %d after reload, want %d", a.Port, port2)
	}
	st, _ := state.Read(f.dir)
	if strings.Join(st.ConfigFiles, ",") != cfg+","+dropIn {
		t.Errorf("state config files %q", st.ConfigFiles)
	}

	// SIGHUP with a broken drop-in: rejected, old config kept.
	os.WriteFile(dropIn, []byte("health:\n  intervl: 2s\n"), 0o644)
	f.sigs <- syscall.SIGHUP
	n.WaitFor(t, `^RELOADING=1\n`, 10*time.Second)
	_, seen = n.WaitFor(t, `^READY=1$`, 10*time.Second)
	if last := seen[len(seen)-1]; !strings.Contains(last, " · config rejected: "+dropIn+":2: health.intervl: ") {
		t.Errorf("after rejected reload: %q", seen)
	}
	if a := f.k.Addr().(*net.UDPAddr); a.Port != port2 {
		t.Errorf("module moved by a rejected config")
	}

	f.sigs <- syscall.SIGTERM
	n.WaitFor(t, `^STOPPING=1$`, 10*time.Second)
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("run exited %d: %s", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop on SIGTERM")
	}
	r = kechod(t, nil, "status", "--config", cfg)
	if r.code != StatusNotRunning || !strings.Contains(r.stdout, "Daemon:   stopped: kechod (pid ") {
		t.Errorf("status after stop: %+v", r)
	}
}

func TestRunConfigErrorExits78(t *testing.T) {
	useFakeHost(t)
	n := notifytest.Listen(t, true)
	cfg := writeConfig(t, "module:\n  port: 70000\n")
	r := kechod(t, nil, "run", "--config", cfg)
	if r.code != 78 || !strings.Contains(r.stderr, "module.port") {
		t.Errorf("%+v", r)
	}
	m, _ := n.Next(2 * time.Second)
	if !strings.HasPrefix(m, "STATUS=failed · configuration error: "+cfg+":2: module.port: ") {
		t.Errorf("status %q", m)
	}
	if m, ok := n.Next(100 * time.Millisecond); ok {
		t.Errorf("unexpected %q", m)
	}
}

func TestRunPortInUseExits1(t *testing.T) {
	f := useFakeHost(t)
	n := notifytest.Listen(t, true)
	busy, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).Port
	r := kechod(t, nil, "run", "--config", serviceConfig(t, port, ""))
	reason := fmt.Sprintf("UDP port %d is in use by another program: `ss -ulpn sport = :%d`", port, port)
	if r.code != 1 || !strings.HasSuffix(r.stderr, "kechod: "+reason+"\n") {
		t.Errorf("%+v", r)
	}
	last, msgs := n.WaitFor(t, `^STATUS=failed · `, 5*time.Second)
	if last != "STATUS=failed · "+reason {
		t.Errorf("status %q", last)
	}
	for _, m := range append(msgs, n.Drain()...) {
		if m == "READY=1" {
			t.Error("READY sent for a failed start")
		}
	}
	if f.k.Loaded() {
		t.Error("module loaded")
	}
}

func TestCheck(t *testing.T) {
	f := useFakeHost(t)
	port := udpFreePort(t)
	cfg := serviceConfig(t, port, "")
	want := kmod.Params{Port: uint16(port), BindAddr: "127.0.0.1", LogPackets: true}

	r := kechod(t, nil, "check", "--config", cfg)
	if r.code != CheckCritical || r.stdout != "KECHO CRITICAL - module kecho is not loaded\n" {
		t.Errorf("not loaded: %+v", r)
	}

	f.loadFake(t, want)
	r = kechod(t, nil, "check", "--config", cfg)
	if r.code != CheckOK || !strings.HasPrefix(r.stdout, fmt.Sprintf("KECHO OK - echo from 127.0.0.1:%d in ", port)) {
		t.Errorf("ok: %+v", r)
	}
	if strings.Count(r.stdout, "\n") != 1 || r.stderr != "" {
		t.Errorf("not one line: %+v", r)
	}

	// Same port, other parameters: the echo comes back, but WARNING.
	f.k.RemoveBehindBack()
	other := want
	other.MaxPPS = 50
	f.loadFake(t, other)
	r = kechod(t, nil, "check", "--config", cfg)
	if r.code != CheckWarning || !regexp.MustCompile(`^KECHO WARNING - echo from 127\.0\.0\.1:\d+ in \d+\.\d\d ms; module runs with max_pps=50 \(config: 0\) \| rtt=\d+\.\d\dms\n$`).MatchString(r.stdout) {
		t.Errorf("differing params: %+v", r)
	}

	// Slow: the round trip takes more than half of the timeout (800ms).
	f.k.SetDelay(500 * time.Millisecond)
	r = kechod(t, nil, "check", "--config", cfg)
	if r.code != CheckWarning || !regexp.MustCompile(`^KECHO WARNING - echo from 127\.0\.0\.1:\d+ in [5-7]\d\d\.\d\d ms; module runs with max_pps=50 \(config: 0\); round trip above half the timeout \(800ms\) \| rtt=[5-7]\d\d\.\d\dms\n$`).MatchString(r.stdout) {
		t.Errorf("slow: %+v", r)
	}
	f.k.SetDelay(0)

	// Other port: no echo on the configured one.
	f.k.RemoveBehindBack()
	other = want
	other.Port = uint16(udpFreePort(t))
	f.loadFake(t, other)
	r = kechod(t, nil, "check", "--config", cfg)
	if r.code != CheckCritical || r.stdout != fmt.Sprintf("KECHO CRITICAL - nothing listens on UDP 127.0.0.1:%d (port unreachable); module runs with port=%d (config: %d)\n", port, other.Port, port) {
		t.Errorf("other port: %+v", r)
	}

	// Loaded, but mute.
	f.k.RemoveBehindBack()
	f.loadFake(t, want)
	f.k.Mute()
	r = kechod(t, nil, "check", "--config", cfg)
	if r.code != CheckCritical || r.stdout != fmt.Sprintf("KECHO CRITICAL - no echo from 127.0.0.1:%d within 800ms\n", port) {
		t.Errorf("mute: %+v", r)
	}

	r = kechod(t, nil, "check", "--config", writeConfig(t, "health:\n  intervl: 1s\n  timeout: 1\n"))
	if r.code != CheckUnknown || !strings.HasPrefix(r.stdout, "KECHO UNKNOWN - configuration error: ") ||
		!strings.HasSuffix(r.stdout, " (and 1 more; see kechod config --validate)\n") {
		t.Errorf("config error: %+v", r)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	f := useFakeHost(t)
	port := udpFreePort(t)
	cfg := serviceConfig(t, port, "")
	r := kechod(t, nil, "status", "--config", cfg)
	want := "Module:   kecho not loaded\nDaemon:   not running (no state file " + state.Path(f.dir) + ": kechod is not running)\n"
	if r.code != StatusNotRunning || r.stdout != want {
		t.Errorf("%+v\nwant %q", r, want)
	}

	// A state file left by a process that is gone.
	now := time.Now()
	st := state.State{State: state.Healthy, Status: "healthy · kecho :5555 · rtt 0.21 ms · 5/5 probes ok",
		Since: now, Updated: now, PID: 1 << 30, Version: "1.0.0", ConfigFiles: []string{cfg},
		Probes: state.Probes{Interval: state.Duration(time.Second), OK: 5, Total: 5}}
	if err := state.Write(f.dir, st); err != nil {
		t.Fatal(err)
	}
	r = kechod(t, nil, "status", "--config", cfg)
	if r.code != StatusNotRunning || !strings.Contains(r.stdout, "Daemon:   not running: kechod (pid 1073741824) is not running; the state below is its last, from ") ||
		!strings.Contains(r.stdout, "  Status:   healthy · kecho :5555") {
		t.Errorf("gone: %+v", r)
	}

	// A live pid that stopped updating.
	st.PID = os.Getpid()
	st.Updated = now.Add(-time.Hour)
	state.Write(f.dir, st)
	r = kechod(t, nil, "status", "--json", "--config", cfg)
	var rep statusReport
	json.Unmarshal([]byte(r.stdout), &rep)
	if r.code != StatusNotRunning || rep.Daemon.Running != "stale" || !strings.Contains(rep.Daemon.Note, "may be hung") {
		t.Errorf("stale: %+v", r)
	}

	// Running and fresh, but the module is not loaded: degraded.
	st.Updated = now
	st.State = state.Unhealthy
	state.Write(f.dir, st)
	r = kechod(t, nil, "status", "--config", cfg)
	if r.code != StatusDegraded {
		t.Errorf("degraded: %+v", r)
	}
}
