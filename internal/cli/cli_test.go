package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/version"
)

type result struct {
	code           int
	stdout, stderr string
}

// kechod runs the command line with an injected environment.
func kechod(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	environ := func() []string {
		var l []string
		for k, v := range env {
			l = append(l, k+"="+v)
		}
		return l
	}
	code := execute(context.Background(), newApp(&out, &errb, lookup, environ), args)
	return result{code, out.String(), errb.String()}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kechod.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	r := kechod(t, nil, "version")
	want := "kechod " + version.Version + " (commit " + version.Commit + ", " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Errorf("%+v, want stdout %q", r, want)
	}
	if r := kechod(t, nil, "version", "extra"); r.code != ExitUsage || !strings.HasPrefix(r.stderr, "kechod: unknown command \"extra\" for \"kechod version\"\n") {
		t.Errorf("%+v", r)
	}
}

func TestConfigPrint(t *testing.T) {
	p := writeConfig(t, "module:\n  port: 7777\n")
	r := kechod(t, map[string]string{"KECHOD_HEALTH_INTERVAL": "2s"}, "--config", p, "--log-format", "json", "config")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	for _, w := range []string{"  port: 7777\n", "  interval: 2s\n", "  format: json\n", "  level: info\n"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
	// The output is a valid configuration that loads as the same.
	q := writeConfig(t, r.stdout)
	r2 := kechod(t, nil, "--config", q, "config")
	if r2.code != 0 || r2.stdout != r.stdout {
		t.Errorf("reloaded output differs:\n%s\n%+v", r.stdout, r2)
	}
	r = kechod(t, map[string]string{"KECHOD_CONFIG": p}, "config", "--sources")
	if r.code != 0 || !strings.Contains(r.stdout, "port: 7777 # "+p+":2\n") || !strings.Contains(r.stdout, "name: kecho # default\n") {
		t.Errorf("%+v", r)
	}
}

func TestConfigValidate(t *testing.T) {
	good := writeConfig(t, "health:\n  interval: 2s\n")
	r := kechod(t, nil, "config", "--validate", "--config", good)
	if r.code != 0 || r.stdout != "ok: "+good+"\n" || r.stderr != "" {
		t.Errorf("valid: %+v", r)
	}

	bad := writeConfig(t, "health:\n  intervall: 2s\n  timeout: 5\nmodule:\n  port: 70000\n")
	r = kechod(t, map[string]string{"KECHOD_LOG_LEVEL": "loud"}, "config", "--validate", "--config", bad)
	want := "kechod: " + bad + ":2: health.intervall: unknown key; did you mean health.interval?\n" +
		"kechod: " + bad + ":3: health.timeout: \"5\" has no unit; write e.g. 5s (units: ms, s, m, h)\n" +
		"kechod: " + bad + ":5: module.port: want an integer 1-65535, got 70000\n" +
		"kechod: env KECHOD_LOG_LEVEL: log.level: want one of debug, info, warn, error, got \"loud\"\n"
	if r.code != ExitConfig || r.stdout != "" || r.stderr != want {
		t.Errorf("invalid: code %d stdout %q stderr:\n%s\nwant:\n%s", r.code, r.stdout, r.stderr, want)
	}
	// Printing a bad configuration fails the same way.
	if r := kechod(t, nil, "config", "--config", bad); r.code != ExitConfig || r.stdout != "" {
		t.Errorf("print invalid: %+v", r)
	}
	// A bad flag value is a configuration error too, naming the flag.
	r = kechod(t, nil, "config", "--validate", "--config", good, "--log-level", "verbose")
	if r.code != ExitConfig || r.stderr != "kechod: flag --log-level: log.level: want one of debug, info, warn, error, got \"verbose\"\n" {
		t.Errorf("bad flag: %+v", r)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	r = kechod(t, nil, "config", "--validate", "--config", missing)
	if r.code != ExitConfig || r.stderr != "kechod: "+missing+": does not exist (named by --config)\n" {
		t.Errorf("missing: %+v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bogus"},
		{"--bogus"},
		{"ping", "--bogus"},
		{"ping", "-c", "x"},
		{"ping", "-W", "soon"},
		{"config", "--validate", "--sources"},
		{"config", "extra"},
	} {
		r := kechod(t, nil, args...)
		if r.code != ExitUsage || !strings.HasPrefix(r.stderr, "kechod: ") || !strings.Contains(r.stderr, "--help' for usage.\n") || r.stdout != "" {
			t.Errorf("%v: %+v", args, r)
		}
	}
}

// Every command has help that says what it does and shows examples.
func TestHelp(t *testing.T) {
	root := New()
	var walk func(c *cobra.Command)
	seen := map[string]bool{}
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		seen[c.Name()] = true
		if c.Short == "" || len(c.Long) < 80 || c.Example == "" {
			t.Errorf("%s: Short %q, Long %d chars, Example %q", c.CommandPath(), c.Short, len(c.Long), c.Example)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	for _, n := range []string{"kechod", "ping", "config", "version"} {
		if !seen[n] {
			t.Errorf("no command %s", n)
		}
	}
	r := kechod(t, nil, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Tools:\n") || !strings.Contains(r.stdout, "--config file") {
		t.Errorf("%+v", r)
	}
	r = kechod(t, nil, "ping", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "-W, --timeout duration") {
		t.Errorf("%+v", r)
	}
}

// echoServer answers UDP on 127.0.0.1 until the test ends; answer decides
// per datagram (1-based) what goes back (nil: nothing).
func echoServer(t *testing.T, answer func(n int, p []byte) []byte) int {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for n := 1; ; n++ {
			k, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p := buf[:k]
			if answer != nil {
				p = answer(n, append([]byte(nil), p...))
			}
			if p != nil {
				_, _ = pc.WriteToUDP(p, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func TestPing(t *testing.T) {
	port := strconv.Itoa(echoServer(t, nil))
	cfg := map[string]string{"KECHOD_CONFIG": writeConfig(t, "")}
	r := kechod(t, cfg, "ping", "-p", port, "127.0.0.1", "hello", "world")
	lines := strings.Split(r.stdout, "\n")
	if r.code != 0 || len(lines) != 6 || lines[0] != "ECHO 127.0.0.1:"+port+": 11 bytes" ||
		!strings.HasPrefix(lines[1], "11 bytes from 127.0.0.1:"+port+": seq=1 time=") || !strings.HasSuffix(lines[1], ` ms "hello world"`) ||
		lines[2] != "--- 127.0.0.1:"+port+" kecho ping statistics ---" || lines[3] != "1 sent, 1 received, 0% loss, 0 corrupt" ||
		!strings.HasPrefix(lines[4], "rtt min/avg/max/mdev = ") {
		t.Errorf("%+v", r)
	}
	r = kechod(t, cfg, "ping", "-p", port, "-c", "3", "-i", "0.01", "-s", "64", "127.0.0.1")
	if r.code != 0 || !strings.Contains(r.stdout, "64 bytes from 127.0.0.1:"+port+": seq=3 time=") {
		t.Errorf("%+v", r)
	}
}

func TestPingDefaultsFromConfig(t *testing.T) {
	port := echoServer(t, nil)
	cfg := writeConfig(t, "module:\n  port: "+strconv.Itoa(port)+"\n")
	r := kechod(t, nil, "--config", cfg, "ping")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ECHO 127.0.0.1:"+strconv.Itoa(port)+": 11 bytes\n") {
		t.Errorf("%+v", r)
	}
	// A broken configuration: ping still works, on 5555, and says so.
	bad := writeConfig(t, "module:\n  port: x\n")
	r = kechod(t, nil, "--config", bad, "ping", "-W", "0.05")
	if !strings.Contains(r.stderr, "kechod: warning: the configuration has errors") || !strings.HasPrefix(r.stdout, "ECHO 127.0.0.1:5555: ") {
		t.Errorf("%+v", r)
	}
}

func TestPingFailures(t *testing.T) {
	cfg := map[string]string{"KECHOD_CONFIG": writeConfig(t, "")}
	lossy := strconv.Itoa(echoServer(t, func(n int, p []byte) []byte {
		if n == 2 {
			return nil
		}
		return p
	}))
	r := kechod(t, cfg, "ping", "-p", lossy, "-c", "3", "-i", "0", "-W", "100ms", "127.0.0.1")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "no echo for seq=2 within 100ms\n") ||
		!strings.Contains(r.stdout, "3 sent, 2 received, 33% loss, 0 corrupt\n") || r.stderr != "" {
		t.Errorf("lossy: %+v", r)
	}
	corrupting := strconv.Itoa(echoServer(t, func(_ int, p []byte) []byte { return append(p, '!') }))
	r = kechod(t, cfg, "ping", "-p", corrupting, "127.0.0.1")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "seq=1 corrupt: 12 bytes, want 11") || !strings.Contains(r.stdout, "1 sent, 0 received, 0% loss, 1 corrupt\n") {
		t.Errorf("corrupting: %+v", r)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ping", "-s", "5", "127.0.0.1"}, "kechod: size 5 is smaller than the message (11 bytes)\n"},
		{[]string{"ping", "-s", "0", "127.0.0.1"}, "kechod: -s 0 is smaller than MESSAGE (11 bytes)\n"},
		{[]string{"ping", "-s", "70000", "127.0.0.1"}, "kechod: size 70000: want 0-65507 bytes\n"},
		{[]string{"ping", "-p", "0", "127.0.0.1"}, "kechod: -p 0: want a port 1-65535\n"},
		{[]string{"ping", "-W", "0", "127.0.0.1"}, "kechod: timeout 0s: want > 0\n"},
		{[]string{"ping", "-c", "-1", "127.0.0.1"}, "kechod: count -1: want >= 0 (0 = until interrupted)\n"},
		{[]string{"ping", "-p", "5555", "no-such-host.invalid"}, "kechod: cannot resolve no-such-host.invalid: "},
	} {
		r := kechod(t, cfg, tc.args...)
		if r.code != ExitUsage || !strings.HasPrefix(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("%v: %+v, want stderr %q", tc.args, r, tc.want)
		}
	}
}

func TestSecondsFlag(t *testing.T) {
	var d time.Duration
	s := seconds{&d}
	for in, want := range map[string]string{"2": "2s", "0.2": "200ms", "500ms": "500ms", "1m": "1m0s", "0": "0s"} {
		if err := s.Set(in); err != nil || s.String() != want {
			t.Errorf("%q: %v %s, want %s", in, err, s, want)
		}
	}
	for _, in := range []string{"-1", "soon", "NaN", "1e300"} {
		if err := s.Set(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
