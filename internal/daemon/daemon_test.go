package daemon_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/daemon"
	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/state"
)

func healthy(r *rig, ok, total int) string {
	return fmt.Sprintf("STATUS=healthy · kecho 127.0.0.1:%s · rtt 0.21 ms · %d/%d probes ok", r.port, ok, total)
}

func TestStartupReadyAfterFirstProbeThenStop(t *testing.T) {
	r := newRig(t, testConfig(t))
	r.start()
	r.expect(
		"STATUS=starting…",
		"STATUS=loading module",
		healthy(r, 1, 1),
		"READY=1",
	)
	if got := r.k.Loads(); len(got) != 1 || got[0] != (kmod.Params{Port: uint16(r.cfg.Module.Port), BindAddr: "127.0.0.1", LogPackets: true}) {
		t.Fatalf("loads %+v", got)
	}
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 2, 2))
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 3, 3))
	r.signal(syscall.SIGTERM)
	r.expect("STOPPING=1", "STATUS=stopping…")
	if err := r.wait(); err != nil {
		t.Fatalf("Run = %v, want nil after SIGTERM", err)
	}
	r.quiet(100 * time.Millisecond)
	if !r.k.Loaded() || r.k.Unloads() != 0 {
		t.Error("module unloaded on stop without unload_on_stop")
	}
}

func TestUnloadOnStopOnlyWhenKechodLoadedIt(t *testing.T) {
	for _, preloaded := range []bool{false, true} {
		t.Run(fmt.Sprintf("preloaded=%v", preloaded), func(t *testing.T) {
			c := testConfig(t)
			c.Module.UnloadOnStop = true
			r := newRig(t, c)
			if preloaded {
				if out, err := r.k.Run(t.Context(), "modprobe", append([]string{"kecho"}, daemon.Params(c).Args()...)...); err != nil {
					t.Fatalf("preload: %v %s", err, out)
				}
			}
			r.start()
			r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
			r.signal(syscall.SIGINT)
			r.expect("STOPPING=1", "STATUS=stopping…")
			if err := r.wait(); err != nil {
				t.Fatal(err)
			}
			if preloaded == !r.k.Loaded() {
				t.Errorf("preloaded=%v: loaded after stop = %v", preloaded, r.k.Loaded())
			}
			if !preloaded && r.k.Unloads() != 1 {
				t.Errorf("unloads = %d", r.k.Unloads())
			}
		})
	}
}

func TestReloadsModuleLoadedWithOtherParams(t *testing.T) {
	c := testConfig(t)
	r := newRig(t, c)
	other := daemon.Params(c)
	other.MaxPPS = 10
	if _, err := r.k.Run(t.Context(), "modprobe", append([]string{"kecho"}, other.Args()...)...); err != nil {
		t.Fatal(err)
	}
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	want := []string{
		"modprobe kecho " + other.String(),
		"modprobe -r kecho",
		"modprobe kecho " + daemon.Params(c).String(),
	}
	if got := r.k.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWatchdogFromMainLoop(t *testing.T) {
	c := testConfig(t)
	r := newRig(t, c)
	t.Setenv("WATCHDOG_USEC", "4000000") // WatchdogSec=4s: ping every 2s
	g := newGate(t)
	r.opts.NewProber = func(hc health.Config) (daemon.Prober, error) {
		p, err := health.NewProber(hc)
		if err != nil {
			return nil, err
		}
		return g.wrap(p), nil
	}
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.clk.Advance(1999 * time.Millisecond)
	r.quiet(50 * time.Millisecond)
	r.clk.Advance(time.Millisecond) // t=2s
	r.expect("WATCHDOG=1")
	r.clk.Advance(2 * time.Second) // t=4s
	r.expect("WATCHDOG=1")

	// The probe at t=5s blocks the main loop: no pings at 6s and 8s.
	g.Close()
	r.clk.Advance(time.Second)
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("probe did not start")
	}
	r.clk.Advance(time.Second)
	r.quiet(200 * time.Millisecond)
	r.clk.Advance(2 * time.Second)
	r.quiet(200 * time.Millisecond)
	g.Open()
	// The loop resumes: the probe's status, then the pending ping.
	r.expect(healthy(r, 2, 2), "WATCHDOG=1")
	r.quiet(100 * time.Millisecond)
}

func TestSIGHUPChangesPort(t *testing.T) {
	c := testConfig(t)
	r := newRig(t, c)
	next := c
	next.Module.Port = freePort(t)
	var files []string
	r.opts.Reload = func() (*config.Loaded, error) {
		l := loaded(next)
		l.Files = append(l.Files, "/etc/kechod/conf.d/10-port.yaml")
		files = l.Files
		return l, nil
	}
	dir := t.TempDir()
	r.opts.StateDir = dir
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.signal(syscall.SIGHUP)
	m, _ := r.n.Next(5 * time.Second)
	if !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=\d+$`).MatchString(m) {
		t.Fatalf("first reload message %q", m)
	}
	r.port = strconv.Itoa(next.Module.Port)
	r.expect("STATUS=reloading…", healthy(r, 2, 2), "READY=1")
	addr := r.k.Addr().(*net.UDPAddr)
	if addr.Port != next.Module.Port {
		t.Errorf("module serves port %d, want %d", addr.Port, next.Module.Port)
	}
	cmds := r.k.Commands()
	if want := "modprobe -r kecho"; cmds[1] != want {
		t.Errorf("commands %q", cmds)
	}
	if want := "port=" + r.port; !strings.Contains(cmds[2], want) {
		t.Errorf("commands %q", cmds)
	}
	// Later probes go to the new port.
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 3, 3))
	st, err := state.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Module.Params["port"] != r.port || strings.Join(st.ConfigFiles, ",") != strings.Join(files, ",") {
		t.Errorf("state after reload %+v", st)
	}
}

func TestSIGHUPRejectedConfigKeepsOld(t *testing.T) {
	c := testConfig(t)
	r := newRig(t, c)
	r.opts.Reload = func() (*config.Loaded, error) {
		return nil, &config.Error{Problems: []config.Problem{
			{Source: "/etc/kechod/conf.d/20-x.yaml", Line: 3, Key: "health.intervl", Msg: `unknown key (did you mean "interval"?)`},
			{Source: "/etc/kechod/conf.d/20-x.yaml", Line: 4, Key: "module.port", Msg: "99999 is out of range 1-65535"},
		}}
	}
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.signal(syscall.SIGHUP)
	m, _ := r.n.Next(5 * time.Second)
	if !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("%q", m)
	}
	why := ` · config rejected: /etc/kechod/conf.d/20-x.yaml:3: health.intervl: unknown key (did you mean "interval"?); /etc/kechod/conf.d/20-x.yaml:4: module.port: 99999 is out of range 1-65535`
	r.expect("STATUS=reloading…", healthy(r, 1, 1)+why, "READY=1")
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 2, 2) + why)
	if n := len(r.k.Commands()); n != 1 {
		t.Errorf("module touched by a rejected reload: %q", r.k.Commands())
	}

	// A good config later clears the note.
	r.opts.Reload = nil
}

func TestSIGHUPNewPortInUseRestoresOld(t *testing.T) {
	c := testConfig(t)
	r := newRig(t, c)
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	next := c
	next.Module.Port = busy.LocalAddr().(*net.UDPAddr).Port
	r.opts.Reload = func() (*config.Loaded, error) { return loaded(next), nil }
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.signal(syscall.SIGHUP)
	r.n.Next(5 * time.Second) // RELOADING=1
	why := fmt.Sprintf(" · config rejected: UDP port %d is in use by another program: `ss -ulpn sport = :%d`", next.Module.Port, next.Module.Port)
	r.expect("STATUS=reloading…", healthy(r, 2, 2)+why, "READY=1")
	if addr := r.k.Addr().(*net.UDPAddr); addr.Port != c.Module.Port {
		t.Errorf("module serves %d after the failed reload, want the old %d", addr.Port, c.Module.Port)
	}
}

func TestStartupPortInUse(t *testing.T) {
	c := testConfig(t)
	busy, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(c.Module.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	r := newRig(t, c)
	dir := t.TempDir()
	r.opts.StateDir = dir
	r.start()
	reason := fmt.Sprintf("UDP port %d is in use by another program: `ss -ulpn sport = :%d`", c.Module.Port, c.Module.Port)
	r.expect("STATUS=starting…", "STATUS=loading module", "STATUS=failed · "+reason)
	err = r.wait()
	var se *daemon.StartupError
	if !errors.As(err, &se) || se.Reason != reason || !errors.Is(err, kmod.ErrPortInUse) {
		t.Fatalf("Run = %v, want StartupError for the busy port", err)
	}
	r.quiet(100 * time.Millisecond) // no READY
	st, err := state.Read(dir)
	if err != nil || st.State != state.Failed || st.Reason != reason {
		t.Errorf("state %+v, %v", st, err)
	}
}

func TestStartupNoEcho(t *testing.T) {
	for _, unload := range []bool{false, true} {
		t.Run(fmt.Sprintf("unload_on_stop=%v", unload), func(t *testing.T) {
			c := testConfig(t)
			c.Module.UnloadOnStop = unload
			r := newRig(t, c)
			r.k.Silent = true
			r.start()
			reason := fmt.Sprintf("no echo at start: no echo from 127.0.0.1:%d within 1.5s", c.Module.Port)
			r.expect("STATUS=starting…", "STATUS=loading module", "STATUS=failed · "+reason)
			var se *daemon.StartupError
			if err := r.wait(); !errors.As(err, &se) {
				t.Fatalf("Run = %v", err)
			}
			r.quiet(100 * time.Millisecond)
			if r.k.Loaded() == unload {
				t.Errorf("module loaded after failed start = %v with unload_on_stop %v", r.k.Loaded(), unload)
			}
		})
	}
}

func TestModuleRemovedBehindBack(t *testing.T) {
	r := newRig(t, testConfig(t))
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.k.RemoveBehindBack()
	r.clk.Advance(5 * time.Second)
	r.expect(
		"STATUS=recovering · module kecho is not loaded (removed behind kechod's back)",
		healthy(r, 2, 2),
	)
	if n := len(r.k.Loads()); n != 2 || !r.k.Loaded() {
		t.Errorf("loads %d, loaded %v", n, r.k.Loaded())
	}
}

func TestModuleRemovedRecoveryNone(t *testing.T) {
	c := testConfig(t)
	c.Health.Recovery = config.RecoveryNone
	r := newRig(t, c)
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.k.RemoveBehindBack()
	r.clk.Advance(5 * time.Second)
	r.expect("STATUS=unhealthy · module kecho is not loaded (removed behind kechod's back) · 1/1 probes ok")
	if len(r.k.Loads()) != 1 {
		t.Error("module loaded again with recovery: none")
	}
}

func TestParamsChangedBehindBack(t *testing.T) {
	c := testConfig(t)
	r := newRig(t, c)
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.k.RemoveBehindBack()
	other := daemon.Params(c)
	other.LogPackets = false
	if _, err := r.k.Run(t.Context(), "modprobe", append([]string{"kecho"}, other.Args()...)...); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(5 * time.Second)
	r.expect("STATUS=recovering · module kecho runs with log_packets=N (config: Y)", healthy(r, 2, 2))
	if l := r.k.Loads(); len(l) != 3 || l[2] != daemon.Params(c) {
		t.Errorf("loads %+v", l)
	}
}

func TestUnhealthyThenRecovery(t *testing.T) {
	c := testConfig(t)
	c.Health.FailureThreshold = 3
	r := newRig(t, c)
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.k.Mute() // the module hangs: no echo until it is reloaded
	noEcho := fmt.Sprintf("no echo from 127.0.0.1:%s within 1.5s", r.port)
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 1, 2)) // one failure: still healthy
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 1, 3))
	r.clk.Advance(5 * time.Second)
	r.expect(
		"STATUS=unhealthy · "+noEcho+" · 1/4 probes ok",
		"STATUS=recovering · "+noEcho,
		healthy(r, 2, 5),
	)
	if r.k.Unloads() != 1 || len(r.k.Loads()) != 2 {
		t.Errorf("unloads %d loads %d", r.k.Unloads(), len(r.k.Loads()))
	}
}

func TestUnhealthyRecoveryNone(t *testing.T) {
	c := testConfig(t)
	c.Health.FailureThreshold = 1
	c.Health.Recovery = config.RecoveryNone
	r := newRig(t, c)
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.k.Mute()
	noEcho := fmt.Sprintf("no echo from 127.0.0.1:%s within 1.5s", r.port)
	r.clk.Advance(5 * time.Second)
	r.expect("STATUS=unhealthy · " + noEcho + " · 1/2 probes ok")
	r.clk.Advance(5 * time.Second)
	r.expect("STATUS=unhealthy · " + noEcho + " · 1/3 probes ok")
	r.k.Unmute()
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 2, 4))
	if r.k.Unloads() != 0 {
		t.Error("module reloaded with recovery: none")
	}
}

func TestNoNotifySocket(t *testing.T) {
	r := newRig(t, testConfig(t))
	t.Setenv("NOTIFY_SOCKET", "")
	dir := t.TempDir()
	r.opts.StateDir = dir
	r.start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := state.Read(dir)
		if err == nil && st.State == state.Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy: %+v %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.signal(syscall.SIGTERM)
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	r.quiet(50 * time.Millisecond)
	st, _ := state.Read(dir)
	if st.State != state.Stopped {
		t.Errorf("state after stop %q", st.State)
	}
}

func TestStateFileAndMetrics(t *testing.T) {
	c := testConfig(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	c.Metrics.Listen = ln.Addr().String()
	ln.Close()
	r := newRig(t, c)
	dir := t.TempDir()
	r.opts.StateDir = dir
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	r.clk.Advance(5 * time.Second)
	r.expect(healthy(r, 2, 2))
	st, err := state.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != state.Healthy || st.Status != strings.TrimPrefix(healthy(r, 2, 2), "STATUS=") ||
		st.Probes.OK != 2 || st.Probes.Total != 2 || time.Duration(st.Probes.LastRTT) != 210*time.Microsecond ||
		st.Version != "1.2.3-test" || st.PID == 0 || !st.Module.Loaded || !st.Module.ByKechod ||
		st.Module.Params["port"] != r.port || st.Module.Params["log_packets"] != "Y" ||
		st.Probes.Target != "127.0.0.1:"+r.port || st.ConfigFiles[0] != "/etc/kechod/kechod.yaml" {
		t.Errorf("state %+v", st)
	}
	resp, err := http.Get("http://" + c.Metrics.Listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`kechod_probes_total{result="ok"} 2`,
		`kechod_state{state="healthy"} 1`,
		`kechod_state{state="unhealthy"} 0`,
		`kecho_module_loaded 1`,
		`kecho_rx_packets_total 2`,
		`kechod_build_info{commit="",goversion="go`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	r.signal(syscall.SIGTERM)
	r.wait()
	if _, err := http.Get("http://" + c.Metrics.Listen + "/metrics"); err == nil {
		t.Error("metrics still served after stop")
	}
}

// The real clock and tickers, short interval.
func TestRealClock(t *testing.T) {
	c := testConfig(t)
	c.Health.Interval = 50 * time.Millisecond
	c.Health.Timeout = time.Second
	r := newRig(t, c)
	r.opts.Clock = nil
	r.start()
	r.n.WaitFor(t, `^READY=1$`, 5*time.Second)
	m, _ := r.n.WaitFor(t, `probes ok$`, 5*time.Second)
	m, _ = r.n.WaitFor(t, ` 5/5 probes ok$`, 5*time.Second)
	if !regexp.MustCompile(`^STATUS=healthy · kecho 127\.0\.0\.1:\d+ · rtt \d+\.\d\d ms · 5/5 probes ok$`).MatchString(m) {
		t.Errorf("status %q", m)
	}
	r.signal(syscall.SIGTERM)
	r.n.WaitFor(t, `^STOPPING=1$`, 5*time.Second)
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
}

// At probe intervals under 1 s the state file is rewritten after every
// second's worth of probes, and at once on a state change; STATUS still
// follows every probe.
func TestStateFileCadenceAtShortInterval(t *testing.T) {
	c := testConfig(t)
	c.Health.Interval = 200 * time.Millisecond
	r := newRig(t, c)
	dir := t.TempDir()
	r.opts.StateDir = dir
	r.start()
	r.expect("STATUS=starting…", "STATUS=loading module", healthy(r, 1, 1), "READY=1")
	total := func() uint64 {
		t.Helper()
		st, err := state.Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		return st.Probes.Total
	}
	first, _ := state.Read(dir)
	for i := 2; i <= 5; i++ {
		r.clk.Advance(c.Health.Interval)
		r.expect(healthy(r, i, i))
		if got := total(); got != 1 {
			t.Fatalf("after probe %d the state file has %d probes, want 1 (written every 5 probes)", i, got)
		}
	}
	r.clk.Advance(c.Health.Interval)
	r.expect(healthy(r, 6, 6))
	st, _ := state.Read(dir)
	if st.Probes.Total != 6 || st.Status != strings.TrimPrefix(healthy(r, 6, 6), "STATUS=") || !st.Updated.After(first.Updated) {
		t.Errorf("after 1 s of probes: state %+v", st)
	}
	r.k.RemoveBehindBack()
	r.clk.Advance(c.Health.Interval)
	r.n.WaitFor(t, `^STATUS=healthy · .* 7/7 probes ok$`, 5*time.Second)
	if st, _ := state.Read(dir); st.State != state.Healthy || st.Probes.Total != 7 || st.Module.Params["port"] != r.port {
		t.Errorf("after a recovery the state file is %+v, want it written at once", st)
	}
}
