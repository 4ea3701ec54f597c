//go:build kechoguest && kechodaemon

// The daemon's in-guest tests: the real kechod binary (installed at
// /usr/bin/kechod by test/vm's TestDaemonInGuest) against the real kernel,
// the real kecho and the real modprobe. They carry the extra build tag
// "kechodaemon" so that TestModuleInGuest, whose guest has no kechod,
// does not build them. Run them with:
//
//	go test -v -run TestDaemonInGuest ./test/vm
package guest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/notify/notifytest"

	"github.com/kecho-dev/kecho/test/guestutil"
)

const kechodBin = "/usr/bin/kechod"

// daemonConfig writes a kechod.yaml (and an empty conf.d) and returns its
// path.
func daemonConfig(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	p := filepath.Join(dir, "kechod.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const baseConfig = `module:
  port: %d
  unload_on_stop: true
health:
  interval: 1s
  timeout: 500ms
  failure_threshold: 2
metrics:
  listen: 127.0.0.1:9555
log:
  level: debug
`

// kechodRun is a `kechod run` under a notification socket.
type kechodRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	n      *notifytest.Listener
	stderr *guestutil.SyncBuffer
	done   chan struct{}
	err    error
}

func startKechod(t *testing.T, cfg string) *kechodRun {
	t.Helper()
	if _, err := os.Stat(kechodBin); err != nil {
		t.Fatalf("%s is missing: these tests run from TestDaemonInGuest, which installs it", kechodBin)
	}
	guestutil.Unload(t)
	n, err := notifytest.ListenAt(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	k := &kechodRun{t: t, n: n, stderr: &guestutil.SyncBuffer{}, done: make(chan struct{})}
	k.cmd = exec.Command(kechodBin, "run", "--config", cfg)
	k.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.Path, "WATCHDOG_USEC=4000000")
	k.cmd.Stderr = k.stderr
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.err = k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		select {
		case <-k.done:
		default:
			k.cmd.Process.Kill()
			<-k.done
		}
		if t.Failed() {
			t.Logf("kechod's log:\n%s", k.stderr.String())
		}
		guestutil.Unload(t)
	})
	return k
}

// waitFor waits for a notification matching re and returns the ones
// before it.
func (k *kechodRun) waitFor(re string, timeout time.Duration) (string, []string) {
	k.t.Helper()
	return k.n.WaitFor(k.t, re, timeout)
}

// exit waits for kechod to exit and returns its status.
func (k *kechodRun) exit(timeout time.Duration) int {
	k.t.Helper()
	select {
	case <-k.done:
	case <-time.After(timeout):
		k.t.Fatalf("kechod did not exit within %v", timeout)
	}
	if ee, ok := k.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if k.err != nil {
		k.t.Fatal(k.err)
	}
	return 0
}

func (k *kechodRun) signal(s syscall.Signal) {
	k.t.Helper()
	if err := k.cmd.Process.Signal(s); err != nil {
		k.t.Fatal(err)
	}
}

// kechod runs a kechod tool command and returns its output and status.
func kechod(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kechodBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("kechod %v: %v", args, err)
	}
	return string(out), 0
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s missing", name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

var healthyRe = `^STATUS=healthy · kecho :%d · rtt \d+\.\d\d ms · %s probes ok$`

// kechod run loads the module, says READY only after the first good
// probe, and the tools work against it.
func TestDaemonLifecycle(t *testing.T) {
	cfg := daemonConfig(t, fmt.Sprintf(baseConfig, echoPort))
	k := startKechod(t, cfg)
	_, before := k.waitFor(`^READY=1$`, 60*time.Second)
	if len(before) != 3 || before[0] != "STATUS=starting…" || before[1] != "STATUS=loading module" ||
		!regexp.MustCompile(fmt.Sprintf(healthyRe, echoPort, "1/1")).MatchString(before[2]) {
		t.Fatalf("notifications before READY: %q", before)
	}
	if !guestutil.Loaded() {
		t.Fatal("READY without the module loaded")
	}
	for name, want := range map[string]string{"port": "5555", "bind_addr": "0.0.0.0", "log_packets": "Y", "max_pps": "0"} {
		if got := guestutil.Param(t, name); got != want {
			t.Errorf("parameter %s = %q, want %q", name, got, want)
		}
	}
	// The first probe reached the module: it counted it.
	if c := guestutil.ReadCounters(t); c["rx_packets"] < 1 || c["tx_packets"] < 1 {
		t.Errorf("counters after READY: %v", c)
	}
	k.waitFor(fmt.Sprintf(healthyRe, echoPort, "2/2"), 30*time.Second)
	k.waitFor(`^WATCHDOG=1$`, 30*time.Second)

	out, code := kechod(t, "ping", "--config", cfg, "-c", "3", "-i", "0.2", "127.0.0.1", "hello world")
	if code != 0 || !strings.Contains(out, "hello world") {
		t.Errorf("kechod ping: exit %d\n%s", code, out)
	}
	t.Logf("kechod ping:\n%s", out)

	out, code = kechod(t, "check", "--config", cfg)
	if code != 0 || !regexp.MustCompile(`^KECHO OK - echo from 127\.0\.0\.1:5555 in \d+\.\d\d ms \| rtt=\d+\.\d\dms\n$`).MatchString(out) {
		t.Errorf("kechod check: exit %d: %q", code, out)
	}
	t.Logf("kechod check: %s", out)

	out, code = kechod(t, "status", "--config", cfg)
	for _, w := range []string{"Module:   kecho loaded\n", "  Params:   port=5555 bind_addr=0.0.0.0 log_packets=Y max_pps=0\n",
		"  Counters: drop_bcast=", "Daemon:   running (pid ", "  Status:   healthy · kecho :5555 · rtt ", "  Config:   " + cfg} {
		if !strings.Contains(out, w) {
			t.Errorf("kechod status lacks %q", w)
		}
	}
	if code != 0 {
		t.Errorf("kechod status exit %d", code)
	}
	t.Logf("kechod status:\n%s", out)
	out, code = kechod(t, "status", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(out, `"running": "running"`) || !strings.Contains(out, `"rx_packets": `) {
		t.Errorf("kechod status --json: exit %d\n%s", code, out)
	}

	body := scrape(t, "http://127.0.0.1:9555/metrics")
	if v := metricValue(t, body, "kecho_rx_packets_total"); v < 5 { // 2 probes, 3 pings, 1 check
		t.Errorf("kecho_rx_packets_total = %v", v)
	}
	if v := metricValue(t, body, `kechod_state{state="healthy"}`); v != 1 {
		t.Errorf("state gauge healthy = %v", v)
	}
	if v := metricValue(t, body, `kechod_probes_total{result="ok"}`); v < 2 {
		t.Errorf("ok probes = %v", v)
	}
	if v := metricValue(t, body, "kecho_module_loaded"); v != 1 {
		t.Errorf("kecho_module_loaded = %v", v)
	}
	if !strings.Contains(body, "kechod_probe_rtt_seconds_bucket") || !strings.Contains(body, `kecho_module_info{bind_addr="0.0.0.0",log_packets="Y",max_pps="0",port="5555"} 1`) {
		t.Error("metrics lack the RTT histogram or the module info")
	}

	k.signal(syscall.SIGTERM)
	k.waitFor(`^STOPPING=1$`, 30*time.Second)
	if code := k.exit(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if guestutil.Loaded() {
		t.Error("module still loaded after stop with unload_on_stop")
	}
}

// SIGHUP with a changed port reloads the module on the new port.
func TestDaemonReloadPort(t *testing.T) {
	cfg := daemonConfig(t, fmt.Sprintf(baseConfig, echoPort))
	k := startKechod(t, cfg)
	k.waitFor(`^READY=1$`, 60*time.Second)
	dropIn := filepath.Join(filepath.Dir(cfg), "conf.d", "10-port.yaml")
	if err := os.WriteFile(dropIn, []byte("module:\n  port: 5556\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k.signal(syscall.SIGHUP)
	k.waitFor(`^RELOADING=1\nMONOTONIC_USEC=\d+$`, 30*time.Second)
	_, seen := k.waitFor(`^READY=1$`, 60*time.Second)
	if len(seen) == 0 || !regexp.MustCompile(fmt.Sprintf(healthyRe, 5556, `\d+/\d+`)).MatchString(seen[len(seen)-1]) {
		t.Fatalf("after reload: %q", seen)
	}
	if p := guestutil.Param(t, "port"); p != "5556" {
		t.Errorf("module port %s after reload, want 5556", p)
	}
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	if got := echo(t, c, udpAddr("127.0.0.1", 5556), []byte("new port"), 5*time.Second); string(got) != "new port" {
		t.Errorf("echo %q", got)
	}
	expectNoReply(t, c, udpAddr("127.0.0.1", echoPort), []byte("old port"), 500*time.Millisecond)

	// A broken drop-in is rejected; the module stays as it is.
	os.WriteFile(dropIn, []byte("module:\n  port: 5557\nhealth:\n  intervl: 2s\n"), 0o644)
	k.signal(syscall.SIGHUP)
	k.waitFor(`^RELOADING=1\n`, 30*time.Second)
	_, seen = k.waitFor(`^READY=1$`, 60*time.Second)
	if last := seen[len(seen)-1]; !strings.Contains(last, "healthy · kecho :5556") || !strings.Contains(last, " · config rejected: "+dropIn+":4: health.intervl: ") {
		t.Errorf("after a rejected reload: %q", seen)
	}
	if p := guestutil.Param(t, "port"); p != "5556" {
		t.Errorf("module port %s after a rejected reload", p)
	}
	k.signal(syscall.SIGTERM)
	if code := k.exit(30 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// rmmod behind kechod's back is noticed and the module loaded again.
func TestDaemonRecoversFromRmmod(t *testing.T) {
	cfg := daemonConfig(t, fmt.Sprintf(baseConfig, echoPort))
	k := startKechod(t, cfg)
	k.waitFor(`^READY=1$`, 60*time.Second)
	guestutil.MustRun(t, "rmmod", guestutil.Module)
	k.waitFor(`^STATUS=recovering · module kecho is not loaded \(removed behind kechod's back\)$`, 30*time.Second)
	k.waitFor(`^STATUS=healthy · `, 30*time.Second)
	if !guestutil.Loaded() || guestutil.Param(t, "port") != "5555" {
		t.Fatal("module not loaded again with its parameters")
	}
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	if got := echo(t, c, udpAddr("127.0.0.1", echoPort), []byte("back"), 5*time.Second); string(got) != "back" {
		t.Errorf("echo %q", got)
	}

	// Loaded again by someone else with other parameters: kechod puts
	// its own back.
	guestutil.MustRun(t, "rmmod", guestutil.Module)
	guestutil.MustRun(t, "modprobe", guestutil.Module, "port=5555", "max_pps=7")
	k.waitFor(`^STATUS=recovering · module kecho runs with max_pps=7 \(config: 0\)$|^STATUS=recovering · module kecho is not loaded`, 30*time.Second)
	k.waitFor(`^STATUS=healthy · `, 30*time.Second)
	if p := guestutil.Param(t, "max_pps"); p != "0" {
		t.Errorf("max_pps %s after recovery, want 0", p)
	}
	k.signal(syscall.SIGTERM)
	if code := k.exit(30 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// A port taken before start: no READY, a clear STATUS, exit 1, nothing
// left loaded.
func TestDaemonPortTaken(t *testing.T) {
	listenUDP(t, "udp4", udpAddr("0.0.0.0", echoPort))
	cfg := daemonConfig(t, fmt.Sprintf(baseConfig, echoPort))
	k := startKechod(t, cfg)
	code := k.exit(60 * time.Second)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	want := "STATUS=failed · UDP port 5555 is in use by another program: `ss -ulpn sport = :5555`"
	last, msgs := k.waitFor(`^STATUS=failed · `, 10*time.Second)
	if last != want {
		t.Errorf("status %q, want %q", last, want)
	}
	for _, m := range append(msgs, k.n.Drain()...) {
		if m == "READY=1" {
			t.Error("READY=1 sent")
		}
	}
	if guestutil.Loaded() {
		t.Error("a failed load left the module loaded")
	}
	if !strings.Contains(k.stderr.String(), "could not insert 'kecho': Address already in use") {
		t.Errorf("log lacks modprobe's message:\n%s", k.stderr.String())
	}
	out, c := kechod(t, "check", "--config", cfg)
	if c != 2 || out != "KECHO CRITICAL - module kecho is not loaded\n" {
		t.Errorf("check without the module: %d %q", c, out)
	}
}

// An invalid configuration exits 78 and names the key.
func TestDaemonInvalidConfig(t *testing.T) {
	cfg := daemonConfig(t, "module:\n  port: 70000\nhealth:\n  interval: 5\n")
	k := startKechod(t, cfg)
	if code := k.exit(30 * time.Second); code != 78 {
		t.Errorf("exit status %d, want 78", code)
	}
	log := k.stderr.String()
	if !strings.Contains(log, "module.port") || !strings.Contains(log, "health.interval") {
		t.Errorf("stderr does not name the keys:\n%s", log)
	}
	if guestutil.Loaded() {
		t.Error("module loaded despite the invalid configuration")
	}
}
