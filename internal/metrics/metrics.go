// Package metrics serves kechod's Prometheus metrics on /metrics: probe
// RTTs and results, the daemon's state, build information, and the kecho
// module's counters, read from sysfs at scrape time. The endpoint is off
// unless metrics.listen is set.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod"
)

// ModuleSource reads the module's state; *kmod.Manager is one.
type ModuleSource interface {
	Loaded() bool
	Params() (kmod.Params, error)
	Stats() (kmod.Stats, error)
}

// Options configure New.
type Options struct {
	// Module returns the module to report on; called at each scrape.
	Module         func() ModuleSource
	Version        string
	Commit         string
	States         []string // every state the daemon can be in
	NoProcessStats bool     // leave out the Go and process collectors (tests)
}

// Metrics are the daemon's metrics.
type Metrics struct {
	reg         *prometheus.Registry
	rtt         prometheus.Histogram
	probes      *prometheus.CounterVec
	state       *prometheus.GaugeVec
	consecutive prometheus.Gauge
	states      []string

	// Resolved once: the daemon updates them after every probe.
	byOutcome map[health.Outcome]prometheus.Counter
	byState   map[string]prometheus.Gauge
	current   string
}

// New registers the metrics.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), states: o.States}
	m.rtt = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kechod_probe_rtt_seconds",
		Help:    "Round-trip time of successful health probes to the kecho module.",
		Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1},
	})
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kechod_probes_total",
		Help: "Health probes sent, by result (ok, timeout, mismatch, refused, error).",
	}, []string{"result"})
	m.byOutcome = map[health.Outcome]prometheus.Counter{}
	for _, o := range health.Outcomes {
		m.byOutcome[o] = m.probes.WithLabelValues(string(o))
	}
	m.state = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kechod_state",
		Help: "The daemon's state: 1 for the current state, 0 for the others.",
	}, []string{"state"})
	m.byState = map[string]prometheus.Gauge{}
	for _, s := range o.States {
		m.byState[s] = m.state.WithLabelValues(s)
	}
	m.consecutive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kechod_probe_consecutive_failures",
		Help: "Failed health probes since the last successful one.",
	})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kechod_build_info",
		Help: "kechod's version, commit and Go version; always 1.",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(o.Version, o.Commit, runtime.Version()).Set(1)
	m.reg.MustRegister(m.rtt, m.probes, m.state, m.consecutive, build, &moduleCollector{src: o.Module})
	if !o.NoProcessStats {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// ObserveProbe records one probe result and the current failure count.
func (m *Metrics) ObserveProbe(r health.Result, consecutive int) {
	c, ok := m.byOutcome[r.Outcome]
	if !ok {
		c = m.probes.WithLabelValues(string(r.Outcome))
	}
	c.Inc()
	if r.OK() {
		m.rtt.Observe(r.RTT.Seconds())
	}
	m.consecutive.Set(float64(consecutive))
}

// SetState makes s the current state. It is not safe for concurrent use
// (the daemon's loop calls it).
func (m *Metrics) SetState(s string) {
	if s == m.current {
		return
	}
	if g, ok := m.byState[m.current]; ok {
		g.Set(0)
	}
	if g, ok := m.byState[s]; ok { // a state not in Options.States has no series
		g.Set(1)
	}
	m.current = s
}

// Registry is the registry the metrics are in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "kechod: metrics are at /metrics")
	})
	return mux
}

var counterHelp = map[string]string{
	"rx_packets":     "Datagrams received by the kecho module.",
	"rx_bytes":       "Bytes received by the kecho module.",
	"tx_packets":     "Datagrams echoed by the kecho module.",
	"tx_bytes":       "Bytes echoed by the kecho module.",
	"drop_loop":      "Datagrams kecho dropped to avoid echo loops (source port 0, its own port, small-service ports).",
	"drop_bcast":     "Datagrams kecho dropped because they were sent to a broadcast or multicast address.",
	"drop_ratelimit": "Datagrams kecho dropped because of max_pps.",
	"tx_errors":      "Echoes kecho failed to send.",
	"rx_errors":      "Datagrams kecho failed to receive.",
	"drop_csum":      "Datagrams kecho dropped because of a bad UDP checksum.",
}

type moduleCollector struct{ src func() ModuleSource }

var (
	loadedDesc = prometheus.NewDesc("kecho_module_loaded", "Whether the kecho module is loaded (1) or not (0).", nil, nil)
	infoDesc   = prometheus.NewDesc("kecho_module_info", "The loaded kecho module's parameters; always 1.",
		[]string{"port", "bind_addr", "log_packets", "max_pps"}, nil)
)

// Describe sends nothing: the module's counters are only known at scrape
// time, which makes this an unchecked collector.
func (c *moduleCollector) Describe(chan<- *prometheus.Desc) {}

func (c *moduleCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	src := c.src()
	if src == nil || !src.Loaded() {
		ch <- prometheus.MustNewConstMetric(loadedDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(loadedDesc, prometheus.GaugeValue, 1)
	if p, err := src.Params(); err == nil {
		ll := "N"
		if p.LogPackets {
			ll = "Y"
		}
		ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1,
			strconv.Itoa(int(p.Port)), p.BindAddr, ll, strconv.FormatUint(uint64(p.MaxPPS), 10))
	}
	st, err := src.Stats()
	if err != nil {
		return
	}
	for _, name := range st.Names() {
		help := counterHelp[name]
		if help == "" {
			help = "kecho module counter " + name + " (/sys/module/kecho/stats/" + name + ")."
		}
		d := prometheus.NewDesc("kecho_"+name+"_total", help, nil, nil)
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(st[name]))
	}
}

// IsLoopback reports whether listen (host:port) only accepts connections
// from this host.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Server is a running metrics endpoint.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen binds listen and serves h on it in the background. It warns when
// the address is not loopback-only.
func Listen(listen string, h http.Handler, log *slog.Logger) (*Server, error) {
	if !IsLoopback(listen) {
		log.Warn("metrics listener is not on a loopback address: anyone who can reach it can read the metrics",
			"listen", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	s := &Server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "listen", listen, "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, waiting briefly for scrapes in progress.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
