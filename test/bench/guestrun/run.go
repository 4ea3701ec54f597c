package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kecho-dev/kecho/test/bench/report"
)

// Guest paths (the host driver installs the programs there).
const (
	BinDir   = "/usr/lib/kecho-bench"
	Kechod   = "/usr/bin/kechod"
	rttFile  = "/tmp/bench-rtt.bin"
	hz       = 100 // USER_HZ on x86
	sockBufs = 8 << 20
)

var ports = map[string]int{report.Kecho: 5555, report.CEcho: 5556, report.GoEcho: 5557, report.Sink: 5558}

type options struct {
	duration, rttDuration, footprint time.Duration
	rounds, flows, window            int
	variantRounds                    int
	servers                          string
	variantsList                     string
}

func secs(d time.Duration) string { return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) }

func run(cfg options) (*report.Results, error) {
	res := &report.Results{
		Started:   time.Now(),
		GuestCPUs: runtime.NumCPU(),
		Config: report.Config{Duration: cfg.duration, RTTDuration: cfg.rttDuration, Rounds: cfg.rounds,
			Flows: cfg.flows, Window: cfg.window, Footprint: cfg.footprint},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		res.Kernel = strings.TrimSpace(string(b))
	}
	// Every server asks for the same socket buffers as kecho (2 MiB);
	// let user space have them.
	for _, f := range []string{"/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"} {
		if err := os.WriteFile(f, []byte(strconv.Itoa(sockBufs)), 0o644); err != nil {
			return res, fmt.Errorf("raise %s: %w", f, err)
		}
	}
	servers := strings.Split(cfg.servers, ",")
	for round := 1; round <= cfg.rounds; round++ {
		for _, s := range servers {
			slog.Info("round", "round", round, "server", s)
			res.Runs = append(res.Runs, serverRound(cfg, s, round)...)
		}
	}
	if cfg.footprint > 0 {
		res.Footprints = append(res.Footprints,
			footprint(report.DefaultFootName, 0, 0, cfg.footprint),
			footprint("10/s", 100*time.Millisecond, 50*time.Millisecond, cfg.footprint),
			controlFootprint(100*time.Millisecond, cfg.footprint))
	}
	if cfg.variantsList != "" {
		var vs []variant
		b, err := os.ReadFile(cfg.variantsList)
		if err == nil {
			err = json.Unmarshal(b, &vs)
		}
		if err != nil {
			return res, fmt.Errorf("variants list %s: %w", cfg.variantsList, err)
		}
		for _, v := range vs {
			res.Variants = append(res.Variants, report.Variant{Name: v.Name, Desc: v.Desc})
		}
		for round := 1; round <= cfg.variantRounds; round++ {
			for _, v := range vs {
				slog.Info("variant", "round", round, "variant", v.Name)
				res.VariantRun = append(res.VariantRun, variantRound(cfg, v, round)...)
			}
		}
	}
	return res, nil
}

// variant is one module build (or parameter set) to measure.
type variant struct {
	Name   string `json:"name"`
	Desc   string `json:"desc"`
	File   string `json:"file"`   // guest path of the .ko
	Params string `json:"params"` // extra insmod parameters
}

// server is a running echo server.
type server interface {
	stats() (report.ServerStats, error) // counters so far (kecho) or at exit
	stop() (report.ServerStats, error)
}

// serverRound starts s, runs its workloads and stops it.
func serverRound(cfg options, s string, round int) []report.Run {
	port := ports[s]
	fail := func(wl string, err error) report.Run {
		slog.Error("run failed", "server", s, "workload", wl, "err", err)
		return report.Run{Server: s, Workload: wl, Round: round, Error: err.Error()}
	}
	var runs []report.Run
	if s == report.Sink {
		// A fresh sink for each run: its own first/last times.
		for _, size := range []int{64, 1400} {
			wl := fmt.Sprintf("sat%d", size)
			srv, err := startProc(s, port)
			if err != nil {
				runs = append(runs, fail(wl, err))
				continue
			}
			r := measure(s, wl, round, srv, []string{"-m", "blast", "-p", strconv.Itoa(port),
				"-s", strconv.Itoa(size), "-f", strconv.Itoa(cfg.flows), "-d", secs(cfg.duration)}, true)
			runs = append(runs, r)
		}
		return runs
	}
	var srv server
	var err error
	if s == report.Kecho {
		srv, err = startKecho(filepath.Join("/lib/modules", kernelRelease(), "updates", "kecho.ko"), "")
	} else {
		srv, err = startProc(s, port)
	}
	if err != nil {
		return []report.Run{fail(report.RTT64, err), fail(report.Sat64, err), fail(report.Sat1400, err)}
	}
	runs = append(runs, workloads(cfg, s, round, srv, port, true)...)
	if st, err := srv.stop(); err != nil {
		slog.Error("stop server", "server", s, "err", err)
	} else if s != report.Kecho {
		// The user-space servers report once, at exit: attach to the last run.
		runs[len(runs)-1].Stats = st
	}
	return runs
}

// workloads runs the latency and saturation workloads against a server.
func workloads(cfg options, s string, round int, srv server, port int, with1400 bool) []report.Run {
	p := strconv.Itoa(port)
	runs := []report.Run{
		measure(s, report.RTT64, round, srv, []string{"-m", "rtt", "-p", p, "-s", "64", "-d", secs(cfg.rttDuration), "-o", rttFile}, false),
		measure(s, report.Sat64, round, srv, []string{"-m", "window", "-p", p, "-s", "64", "-f", strconv.Itoa(cfg.flows),
			"-w", strconv.Itoa(cfg.window), "-d", secs(cfg.duration), "-t", "50"}, false),
	}
	if with1400 {
		runs = append(runs, measure(s, report.Sat1400, round, srv, []string{"-m", "window", "-p", p, "-s", "1400",
			"-f", strconv.Itoa(cfg.flows), "-w", strconv.Itoa(cfg.window), "-d", secs(cfg.duration), "-t", "50"}, false))
	}
	return runs
}

// measure runs the load generator once, with /proc/stat and the server's
// counters around it. stopAfter stops the server after the run and
// attaches its exit report (the sink).
func measure(s, wl string, round int, srv server, args []string, stopAfter bool) report.Run {
	r := report.Run{Server: s, Workload: wl, Round: round}
	before, _ := srv.stats()
	c0, err := readCPU()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	out, err := exec.Command(filepath.Join(BinDir, "loadgen"), args...).Output()
	c1, _ := readCPU()
	r.CPU = c1.sub(c0)
	if err != nil {
		var ee *exec.ExitError
		msg := err.Error()
		if errors.As(err, &ee) {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		r.Error = "loadgen " + strings.Join(args, " ") + ": " + msg
		if stopAfter {
			_, _ = srv.stop()
		}
		return r
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &r.Load); err != nil {
		r.Error = fmt.Sprintf("loadgen output %q: %v", out, err)
	}
	if wl == report.RTT64 {
		if p, err := readSamples(rttFile); err != nil {
			r.Error = err.Error()
		} else {
			pc := report.PercentilesOf(p)
			r.RTT = &pc
		}
	}
	if stopAfter {
		st, err := srv.stop()
		if err != nil && r.Error == "" {
			r.Error = err.Error()
		}
		r.Stats = st
	} else if after, err := srv.stats(); err == nil && after.Counters != nil {
		r.Stats = after
		for k, v := range after.Counters {
			r.Stats.Counters[k] = v - before.Counters[k]
		}
	}
	slog.Info("run", "server", s, "workload", wl, "round", round,
		"rate", fmt.Sprintf("%.0f", r.Rate()), "loss", fmt.Sprintf("%.4f", r.Loss()),
		"cpu_us_per_echo", fmt.Sprintf("%.1f", r.CPUPerEcho()), "gen_share", fmt.Sprintf("%.2f", r.GenShare()))
	if r.RTT != nil {
		slog.Info("rtt", "server", s, "p50_us", r.RTT.P50/1000, "p99_us", r.RTT.P99/1000, "p999_us", r.RTT.P999/1000, "n", r.RTT.N)
	}
	return r
}

func readSamples(path string) ([]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rtt samples: %w", err)
	}
	os.Remove(path)
	s := make([]uint64, len(b)/8)
	for i := range s {
		s[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return s, nil
}

// cpuSnap is the aggregate "cpu" line of /proc/stat.
type cpuSnap [8]uint64

func readCPU() (cpuSnap, error) {
	var c cpuSnap
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return c, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i := range c {
		c[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	return c, nil
}

func (c cpuSnap) sub(o cpuSnap) report.CPU {
	d := func(i int) uint64 { return c[i] - o[i] }
	return report.CPU{User: d(0), Nice: d(1), System: d(2), Idle: d(3), IOWait: d(4), IRQ: d(5), SoftIRQ: d(6), Steal: d(7),
		Hz: hz, CPUs: runtime.NumCPU()}
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// udpSocket reports whether something listens on the UDP port and its
// socket's receive drops (/proc/net/udp).
func udpSocket(port int) (bool, uint64) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return false, 0
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || !strings.HasSuffix(fs[1], want) || fs[2] != "00000000:0000" {
			continue
		}
		drops, _ := strconv.ParseUint(fs[len(fs)-1], 10, 64)
		return true, drops
	}
	return false, 0
}

func waitPort(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok, _ := udpSocket(port); ok {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on UDP port %d after %v", port, timeout)
}

// proc is a user-space server process.
type proc struct {
	name string
	port int
	cmd  *exec.Cmd
	out  bytes.Buffer
	errb bytes.Buffer
}

func startProc(name string, port int) (*proc, error) {
	p := &proc{name: name, port: port}
	p.cmd = exec.Command(filepath.Join(BinDir, name), "-p", strconv.Itoa(port))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := waitPort(port, 10*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		return nil, fmt.Errorf("%s: %w: %s", name, err, p.errb.String())
	}
	return p, nil
}

func (p *proc) stats() (report.ServerStats, error) { return report.ServerStats{}, nil }

func (p *proc) stop() (report.ServerStats, error) {
	var st report.ServerStats
	_, st.SocketDrops = udpSocket(p.port)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return st, fmt.Errorf("%s exited: %w: %s", p.name, err, p.errb.String())
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		return st, fmt.Errorf("%s did not exit on SIGTERM", p.name)
	}
	drops := st.SocketDrops
	if err := json.Unmarshal(bytes.TrimSpace(p.out.Bytes()), &st); err != nil {
		return st, fmt.Errorf("%s report %q: %w", p.name, p.out.String(), err)
	}
	st.SocketDrops = drops
	return st, nil
}

// kmod is kecho loaded with insmod.
type kmod struct{}

func run1(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func startKecho(ko, params string) (*kmod, error) {
	_ = exec.Command("/sbin/rmmod", "kecho").Run()
	args := []string{ko}
	args = append(args, strings.Fields(params)...)
	if err := run1("/sbin/insmod", args...); err != nil {
		return nil, err
	}
	if err := waitPort(ports[report.Kecho], 10*time.Second); err != nil {
		return nil, err
	}
	return &kmod{}, nil
}

func (kmod) stats() (report.ServerStats, error) {
	st := report.ServerStats{Counters: map[string]uint64{}}
	ents, err := os.ReadDir("/sys/module/kecho/stats")
	if err != nil {
		return st, err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/module/kecho/stats", e.Name()))
		if err != nil {
			return st, err
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		st.Counters[e.Name()] = v
	}
	st.Rx, st.Tx, st.RxBytes, st.TxErrors = st.Counters["rx_packets"], st.Counters["tx_packets"], st.Counters["rx_bytes"], st.Counters["tx_errors"]
	_, st.SocketDrops = udpSocket(ports[report.Kecho])
	return st, nil
}

func (k kmod) stop() (report.ServerStats, error) {
	st, _ := k.stats()
	return st, run1("/sbin/rmmod", "kecho")
}

// variantRound measures one module variant: latency and 64-byte
// saturation.
func variantRound(cfg options, v variant, round int) []report.Run {
	srv, err := startKecho(v.File, v.Params)
	if err != nil {
		slog.Error("variant failed to load", "variant", v.Name, "err", err)
		return []report.Run{{Server: v.Name, Workload: report.RTT64, Round: round, Error: err.Error()},
			{Server: v.Name, Workload: report.Sat64, Round: round, Error: err.Error()}}
	}
	runs := workloads(cfg, v.Name, round, srv, ports[report.Kecho], false)
	if _, err := srv.stop(); err != nil {
		slog.Error("variant failed to unload", "variant", v.Name, "err", err)
	}
	return runs
}
