package daemon

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod/kmodtest"
	"github.com/kecho-dev/kecho/internal/logging"
	"github.com/kecho-dev/kecho/internal/metrics"
	"github.com/kecho-dev/kecho/internal/notify"
	"github.com/kecho-dev/kecho/internal/notify/notifytest"
	"github.com/kecho-dev/kecho/internal/state"
)

// tickRig is a daemon that is up and healthy, ready for check (one tick
// of the health loop) to be called directly: a fake sysfs tree with a live
// module, a real UDP echo on loopback, a real notification socket that is
// drained, the state file in stateDir and the production logger at info.
type tickRig struct {
	d   *daemon
	clk *stepClock
}

// stepClock is the real clock whose Now can be moved forward by skew, so
// that a benchmark can make probe intervals pass without sleeping.
type stepClock struct{ skew time.Duration }

func (c *stepClock) Now() time.Time                   { return time.Now().Add(c.skew) }
func (c *stepClock) NewTicker(d time.Duration) Ticker { return RealClock.NewTicker(d) }

func newTickRig(tb testing.TB, stateDir string, interval time.Duration) *tickRig {
	tb.Helper()
	echo := kmodtest.Echo(tb)
	notifytest.Serve(tb, func([]byte) {})

	c := config.Defaults()
	c.Module.Port = echo.Port
	c.Module.BindAddress = "127.0.0.1"
	c.Health.Interval = interval
	c.Health.Timeout = time.Second
	sysfs := tb.TempDir()
	kmodtest.WriteModule(tb, sysfs, "kecho", Params(c))

	clk := &stepClock{}
	log := logging.New(io.Discard, config.Log{Level: config.LevelInfo, Format: config.FormatText})
	d := &daemon{
		o: Options{
			Runner:    &kmodtest.Script{T: tb}, // a healthy tick runs no command
			SysfsRoot: sysfs, StateDir: stateDir, Logger: log, Clock: clk, Version: "bench",
		},
		log: log, clk: clk, pid: os.Getpid(),
	}
	d.n = notify.New(log)
	d.met = metrics.New(metrics.Options{
		Module:  func() metrics.ModuleSource { return d.mod.Load() },
		Version: "bench", States: States,
	})
	d.take(&config.Loaded{Config: c, Files: []string{"/etc/kechod/kechod.yaml"}})
	d.o.NewProber = func(c health.Config) (Prober, error) { return health.NewProber(c) }
	if err := d.openProber(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.prober.Close() })
	d.probeTick = nopTicker{}
	d.setState(state.Healthy, "")
	return &tickRig{d: d, clk: clk}
}

// tick runs one health-loop tick, a probe interval after the previous one.
func (r *tickRig) tick(tb testing.TB, ctx context.Context) {
	r.clk.skew += r.d.cfg.Health.Interval
	r.d.check(ctx)
	if r.d.st != state.Healthy || r.d.track.OK != r.d.track.Total {
		tb.Fatalf("tick: state %q, %d/%d probes ok (%s)", r.d.st, r.d.track.OK, r.d.track.Total, r.d.reason)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick measures one tick of the health loop of a healthy daemon:
// module checks in sysfs, the probe over loopback UDP, STATUS, metrics and
// the state file. cpu-ns/op is the process's CPU time (user+system, all
// threads, the echo server included) per tick, which is what the footprint
// measurements charge to kechod.
//
//	go test -run '^$' -bench Tick -benchmem ./internal/daemon
//	go test -run '^$' -bench 'Tick/tmpfs' -cpuprofile cpu.out ./internal/daemon
func BenchmarkTick(b *testing.B) {
	dirs := map[string]func(b *testing.B) string{
		"nostate": func(*testing.B) string { return "" },
		"tmpfs": func(b *testing.B) string {
			d, err := os.MkdirTemp("/dev/shm", "kechod-bench")
			if err != nil {
				b.Skip("no /dev/shm to put the state file on tmpfs like /run: ", err)
			}
			b.Cleanup(func() { os.RemoveAll(d) })
			return d
		},
		"disk": func(b *testing.B) string { return b.TempDir() },
	}
	for _, name := range []string{"nostate", "tmpfs", "disk"} {
		for _, iv := range []time.Duration{5 * time.Second, 100 * time.Millisecond} {
			b.Run(name+"/interval="+iv.String(), func(b *testing.B) {
				r := newTickRig(b, dirs[name](b), iv)
				ctx := context.Background()
				r.tick(b, ctx)
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					r.tick(b, ctx)
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// A healthy tick allocates little: it must not grow again unnoticed.
func TestTickAllocs(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "kechod-test")
	if errors.Is(err, os.ErrNotExist) {
		dir = t.TempDir()
	} else if err != nil {
		t.Fatal(err)
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	r := newTickRig(t, dir, 100*time.Millisecond)
	ctx := context.Background()
	r.tick(t, ctx)
	got := testing.AllocsPerRun(200, func() { r.tick(t, ctx) })
	t.Logf("allocations per tick: %.1f", got)
	if got > maxTickAllocs {
		t.Errorf("a healthy tick makes %.1f allocations, want at most %d", got, maxTickAllocs)
	}
}

// maxTickAllocs bounds the allocations of one healthy tick.
const maxTickAllocs = 50
