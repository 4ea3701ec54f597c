package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/daemon"
	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod/kmodtest"
	"github.com/kecho-dev/kecho/internal/notify/notifytest"
)

// fakeClock is a manual clock: tickers fire only on Advance. Each Now
// reading moves time on by step, which makes every probe's RTT exactly
// step.
type fakeClock struct {
	mu      sync.Mutex
	base    time.Time
	drift   time.Duration
	step    time.Duration
	tickers []*fakeTicker
}

type fakeTicker struct {
	c      *fakeClock
	ch     chan time.Time
	period time.Duration
	next   time.Time
	dead   bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{base: time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC), step: 210 * time.Microsecond}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drift += c.step
	return c.base.Add(c.drift)
}

func (c *fakeClock) NewTicker(d time.Duration) daemon.Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{c: c, ch: make(chan time.Time, 1), period: d, next: c.base.Add(d)}
	c.tickers = append(c.tickers, t)
	return t
}

// Advance moves time on by d and fires the tickers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = c.base.Add(d)
	for _, t := range c.tickers {
		for !t.dead && !t.next.After(c.base) {
			select {
			case t.ch <- t.next:
			default:
			}
			t.next = t.next.Add(t.period)
		}
	}
}

func (t *fakeTicker) C() <-chan time.Time { return t.ch }
func (t *fakeTicker) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.period, t.next = d, t.c.base.Add(d)
}
func (t *fakeTicker) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.dead = true
}

// freePort returns a UDP port on 127.0.0.1 that nothing uses right now.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// testConfig is the default configuration on a free loopback port with
// short timeouts.
func testConfig(t *testing.T) config.Config {
	c := config.Defaults()
	c.Module.Port = freePort(t)
	c.Module.BindAddress = "127.0.0.1"
	c.Health.Timeout = 1500 * time.Millisecond // room for a loaded machine under -race
	c.Health.Interval = 5 * time.Second
	return c
}

func loaded(c config.Config) *config.Loaded {
	return &config.Loaded{Config: c, Files: []string{"/etc/kechod/kechod.yaml"}}
}

// rig runs the daemon against a fake kernel, a manual clock and a real
// notification socket.
type rig struct {
	t      *testing.T
	k      *kmodtest.Kernel
	clk    *fakeClock
	n      *notifytest.Listener
	sigs   chan os.Signal
	opts   daemon.Options
	done   chan error
	cancel context.CancelFunc
	cfg    config.Config
	port   string
}

func newRig(t *testing.T, c config.Config) *rig {
	t.Setenv("WATCHDOG_USEC", "")
	r := &rig{t: t, k: kmodtest.NewKernel(t), clk: newFakeClock(), n: notifytest.Listen(t, true),
		sigs: make(chan os.Signal, 4), cfg: c, port: strconv.Itoa(c.Module.Port)}
	r.opts = daemon.Options{
		Config:    loaded(c),
		Runner:    r.k,
		SysfsRoot: r.k.SysfsRoot,
		Signals:   r.sigs,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:     r.clk,
		Version:   "1.2.3-test",
	}
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- daemon.Run(ctx, r.opts) }()
	r.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			r.t.Error("daemon did not stop")
		}
	})
}

// expect reads the next notifications and compares them exactly.
func (r *rig) expect(want ...string) {
	r.t.Helper()
	for i, w := range want {
		m, ok := r.n.Next(15 * time.Second)
		if !ok {
			r.t.Fatalf("notification %d missing, want %q", i, w)
		}
		if m != w {
			r.t.Fatalf("notification %d = %q, want %q", i, m, w)
		}
	}
}

// quiet checks that no notification arrives for d.
func (r *rig) quiet(d time.Duration) {
	r.t.Helper()
	if m, ok := r.n.Next(d); ok {
		r.t.Fatalf("unexpected notification %q", m)
	}
}

func (r *rig) wait() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for Cleanup
		return err
	case <-time.After(30 * time.Second):
		r.t.Fatal("daemon did not return")
		return nil
	}
}

func (r *rig) signal(s syscall.Signal) { r.sigs <- s }

// gate blocks probes while closed: Close makes the next probes wait
// (each signals entered first) until Open.
type gate struct {
	mu      sync.Mutex
	ch      chan struct{}
	entered chan struct{}
}

func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan struct{}, 16)}
	t.Cleanup(g.Open)
	return g
}

func (g *gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
}

func (g *gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

func (g *gate) wrap(p daemon.Prober) daemon.Prober { return gatedProber{p, g} }

type gatedProber struct {
	daemon.Prober
	g *gate
}

func (b gatedProber) Probe(ctx context.Context) health.Result {
	b.g.mu.Lock()
	ch := b.g.ch
	b.g.mu.Unlock()
	if ch != nil {
		b.g.entered <- struct{}{}
		<-ch
	}
	return b.Prober.Probe(ctx)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

var _ io.Writer = testWriter{}
