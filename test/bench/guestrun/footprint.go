package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/test/bench/report"
)

// footprint starts `kechod run` under a notification socket, times it to
// READY=1, then samples its resident memory each second over period and
// takes its CPU time (all threads) over the same period. A zero interval
// keeps the configured default.
func footprint(name string, interval, timeout, period time.Duration) report.Footprint {
	f := report.Footprint{Name: name, Interval: interval, Period: period}
	if interval == 0 {
		f.Interval = config.Defaults().Health.Interval
	}
	if err := footprintRun(&f, interval, timeout, period); err != nil {
		f.Error = err.Error()
		slog.Error("kechod footprint", "name", name, "err", err)
	} else {
		slog.Info("kechod footprint", "name", name, "ready", f.Ready, "rss_kib", f.RSSKiB, "max_rss_kib", f.MaxRSSKiB,
			"cpu_pct", fmt.Sprintf("%.4f", f.CPUPercent()), "status", f.LastStatus)
	}
	_ = exec.Command("/sbin/rmmod", "kecho").Run()
	return f
}

func footprintRun(f *report.Footprint, interval, timeout, period time.Duration) error {
	_ = exec.Command("/sbin/rmmod", "kecho").Run()
	dir := "/tmp/kechod-bench"
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "kechod.yaml")
	yaml := "module:\n  port: 5555\n"
	if interval > 0 {
		yaml += fmt.Sprintf("health:\n  interval: %s\n  timeout: %s\n", interval, timeout)
	}
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return err
	}
	sockPath := "/run/kechod-bench-notify.sock"
	os.Remove(sockPath)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer conn.Close()

	var mu sync.Mutex
	var lastStatus string
	ready := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				switch {
				case l == "READY=1":
					select {
					case ready <- now:
					default:
					}
				case strings.HasPrefix(l, "STATUS="):
					mu.Lock()
					lastStatus = strings.TrimPrefix(l, "STATUS=")
					mu.Unlock()
				}
			}
		}
	}()

	var stderr bytes.Buffer
	cmd := exec.Command(Kechod, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", Kechod, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("kechod did not exit on SIGTERM")
		}
	}
	select {
	case t := <-ready:
		f.Ready = t.Sub(start)
	case err := <-exited:
		return fmt.Errorf("kechod exited before READY: %v: %s", err, lastLines(stderr.String(), 5))
	case <-time.After(60 * time.Second):
		_ = stop()
		return fmt.Errorf("no READY=1 within 60s: %s", lastLines(stderr.String(), 5))
	}
	if err := sample(cmd.Process.Pid, period, f); err != nil {
		_ = stop()
		return fmt.Errorf("kechod: %w: %s", err, lastLines(stderr.String(), 5))
	}
	mu.Lock()
	f.LastStatus = lastStatus
	mu.Unlock()
	f.Log = lastLines(stderr.String(), 20)
	if err := stop(); err != nil {
		return fmt.Errorf("kechod stop: %w: %s", err, lastLines(stderr.String(), 5))
	}
	return nil
}

// sample measures pid over period into f: its resident memory once a
// second (the last figure, and the highest including VmHWM), its CPU time
// over the period, and the period as it was.
func sample(pid int, period time.Duration, f *report.Footprint) error {
	cpu0, err := procCPU(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for time.Since(t0) < period {
		time.Sleep(min(time.Second, period-time.Since(t0)))
		rss, hwm, err := procRSS(pid)
		if err != nil {
			return fmt.Errorf("gone during the footprint: %w", err)
		}
		f.RSSKiB = rss
		f.MaxRSSKiB = max(f.MaxRSSKiB, rss, hwm)
	}
	cpu1, err := procCPU(pid)
	f.Period = time.Since(t0)
	if err != nil {
		return err
	}
	f.CPUNS = cpu1 - cpu0
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// procRSS returns VmRSS and VmHWM of pid in KiB.
func procRSS(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, nil
}

// procCPU is the CPU time of pid in ns: the sum of its threads' run time
// from /proc/<pid>/task/*/schedstat (ns resolution), or, when that is
// missing, utime+stime from /proc/<pid>/stat (USER_HZ ticks).
func procCPU(pid int) (uint64, error) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum uint64
	ok := false
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		fs := strings.Fields(string(b))
		if len(fs) > 0 {
			v, err := strconv.ParseUint(fs[0], 10, 64)
			if err == nil {
				sum += v
				ok = true
			}
		}
	}
	if ok {
		return sum, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	fs := strings.Fields(s[i+1:])
	if len(fs) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseUint(fs[11], 10, 64)
	st, _ := strconv.ParseUint(fs[12], 10, 64)
	return (ut + st) * (1e9 / hz), nil
}

// controlFootprint measures the minimal Go prober (goecho -probe) like
// kechod: RSS and CPU over period at the given interval, against kecho.
func controlFootprint(interval, period time.Duration) report.Footprint {
	f := report.Footprint{Name: "control", Interval: interval, Period: period}
	err := func() error {
		if _, err := startKecho(filepath.Join("/lib/modules", kernelRelease(), "updates", "kecho.ko"), ""); err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(BinDir, "goecho"), "-probe", "127.0.0.1:5555", "-interval", interval.String())
		var out bytes.Buffer
		cmd.Stdout = &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		f.Ready = time.Since(start)
		err := sample(cmd.Process.Pid, period, &f)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if err != nil {
			return err
		}
		f.LastStatus = "minimal Go prober: " + strings.TrimSpace(out.String())
		return nil
	}()
	if err != nil {
		f.Error = err.Error()
	}
	slog.Info("control footprint", "interval", interval, "rss_kib", f.RSSKiB, "cpu_pct", fmt.Sprintf("%.4f", f.CPUPercent()), "status", f.LastStatus, "err", f.Error)
	_ = exec.Command("/sbin/rmmod", "kecho").Run()
	return f
}
