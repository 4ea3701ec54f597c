package daemon_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/daemon"
	"github.com/kecho-dev/kecho/internal/kmod/kmodtest"
	"github.com/kecho-dev/kecho/internal/logging"
	"github.com/kecho-dev/kecho/internal/notify/notifytest"
)

// BenchmarkLoop runs the whole service loop (daemon.Run with the real
// clock and tickers, WATCHDOG_USEC set) against a module that is already
// loaded in a fake sysfs tree and a plain UDP echo on loopback, with the
// state file on tmpfs like /run/kechod, and reports per probe: the
// process's CPU time (cpu-ns/probe) and its context switches
// (switches/probe, the wake-ups of all its threads, the echo and the
// notification reader included).
//
//	go test -run '^$' -bench 'Loop/interval=(100ms|10ms)' -benchtime 100x ./internal/daemon
//	go test -run '^$' -bench 'Loop/interval=1s' -benchtime 10x ./internal/daemon
func BenchmarkLoop(b *testing.B) {
	for _, iv := range []time.Duration{time.Second, 100 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("interval="+iv.String(), func(b *testing.B) { benchLoop(b, iv) })
	}
}

func benchLoop(b *testing.B, interval time.Duration) {
	echo := kmodtest.Echo(b)
	probes := make(chan struct{}, 1024)
	notifytest.Serve(b, func(msg []byte) {
		if bytes.HasSuffix(msg, []byte(" probes ok")) {
			probes <- struct{}{}
		}
	})
	b.Setenv("WATCHDOG_USEC", "30000000")
	b.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	stateDir, err := os.MkdirTemp("/dev/shm", "kechod-bench")
	if err != nil {
		stateDir = b.TempDir()
	} else {
		defer os.RemoveAll(stateDir)
	}

	c := config.Defaults()
	c.Module.Port = echo.Port
	c.Module.BindAddress = "127.0.0.1"
	c.Health.Interval = interval
	// A timeout shorter than the interval, as by default (1 s, 5 s): a
	// timer left armed by a probe would wake the process between probes.
	c.Health.Timeout = max(interval/2, 20*time.Millisecond)
	sysfs := b.TempDir()
	kmodtest.WriteModule(b, sysfs, "kecho", daemon.Params(c))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{
			Config:    &config.Loaded{Config: c, Files: []string{"/etc/kechod/kechod.yaml"}},
			Runner:    &kmodtest.Script{T: b}, // the module runs with the configured parameters: no modprobe
			SysfsRoot: sysfs, StateDir: stateDir, Signals: make(chan os.Signal),
			Logger: logging.New(io.Discard, config.Log{Level: config.LevelInfo, Format: config.FormatText}),
		})
	}()
	wait := func() {
		select {
		case <-probes:
		case err := <-done:
			b.Fatalf("daemon stopped: %v", err)
		case <-time.After(10 * time.Second):
			b.Fatal("no probe within 10 s")
		}
	}
	for range 3 {
		wait()
	}
	cpu0, sw0 := usage()
	b.ResetTimer()
	for range b.N {
		wait()
	}
	b.StopTimer()
	cpu1, sw1 := usage()
	b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/probe")
	b.ReportMetric(float64(sw1-sw0)/float64(b.N), "switches/probe")
	b.ReportMetric(0, "ns/op")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func usage() (cpu time.Duration, switches int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}
