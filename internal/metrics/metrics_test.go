package metrics_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/metrics"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

func TestScrape(t *testing.T) {
	mod := &kmod.Manager{Name: "kecho", SysfsRoot: "../kmod/testdata/sys"}
	m := metrics.New(metrics.Options{
		Module:  func() metrics.ModuleSource { return mod },
		Version: "1.2.3", Commit: "abc",
		States: []string{"starting", "healthy", "unhealthy"},
	})
	m.SetState("healthy")
	m.ObserveProbe(health.Result{Outcome: health.OK, RTT: 210 * time.Microsecond}, 0)
	m.ObserveProbe(health.Result{Outcome: health.Timeout}, 1)

	var logs bytes.Buffer
	srv, err := metrics.Listen("127.0.0.1:0", m.Handler(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	body := scrape(t, "http://"+srv.Addr().String()+"/metrics")
	for _, want := range []string{
		`kechod_probes_total{result="ok"} 1`,
		`kechod_probes_total{result="timeout"} 1`,
		`kechod_probes_total{result="mismatch"} 0`,
		`kechod_probe_rtt_seconds_bucket{le="0.00025"} 1`,
		`kechod_probe_rtt_seconds_count 1`,
		`kechod_probe_consecutive_failures 1`,
		`kechod_state{state="healthy"} 1`,
		`kechod_state{state="starting"} 0`,
		`kechod_build_info{commit="abc",goversion="go`,
		`kecho_module_loaded 1`,
		`kecho_module_info{bind_addr="0.0.0.0",log_packets="Y",max_pps="0",port="5555"} 1`,
		`kecho_rx_packets_total 1200`,
		`kecho_tx_bytes_total 38336`,
		`kecho_drop_loop_total 1`,
		"# TYPE kecho_rx_packets_total counter",
		"go_goroutines",
		"process_open_fds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(logs.String(), "not on a loopback") {
		t.Error("warned about a loopback listener")
	}

	// Counters are read at scrape time: the module goes away.
	mod.SysfsRoot = "../kmod/testdata/sys-empty"
	body = scrape(t, "http://"+srv.Addr().String()+"/metrics")
	if !strings.Contains(body, "kecho_module_loaded 0") || strings.Contains(body, "kecho_rx_packets_total") {
		t.Errorf("after unload:\n%s", body)
	}
}

func TestNonLoopbackWarns(t *testing.T) {
	var logs bytes.Buffer
	m := metrics.New(metrics.Options{NoProcessStats: true})
	srv, err := metrics.Listen(":0", m.Handler(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if !strings.Contains(logs.String(), "metrics listener is not on a loopback address") {
		t.Errorf("no warning for :0; log:\n%s", logs.String())
	}
}

func TestListenError(t *testing.T) {
	m := metrics.New(metrics.Options{NoProcessStats: true})
	a, err := metrics.Listen("127.0.0.1:0", m.Handler(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := metrics.Listen(a.Addr().String(), m.Handler(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("second listener on the same port succeeded")
	}
}

func TestIsLoopback(t *testing.T) {
	for in, want := range map[string]bool{
		"127.0.0.1:9555": true, "[::1]:9555": true, "localhost:9555": true, "127.1.2.3:1": true,
		":9555": false, "0.0.0.0:9555": false, "[::]:9555": false, "192.0.2.1:9555": false, "example.com:1": false, "bad": false,
	} {
		if got := metrics.IsLoopback(in); got != want {
			t.Errorf("IsLoopback(%q) = %v", in, got)
		}
	}
}
