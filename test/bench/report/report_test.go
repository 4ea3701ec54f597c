package report

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentilesOf(t *testing.T) {
	var s []uint64
	for i := 1000; i >= 1; i-- { // 1..1000, reversed: PercentilesOf sorts
		s = append(s, uint64(i))
	}
	p := PercentilesOf(s)
	want := Percentiles{N: 1000, Min: 1, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000, Mean: 500.5}
	if p != want {
		t.Fatalf("PercentilesOf(1..1000) = %+v, want %+v", p, want)
	}
	if got := PercentilesOf([]uint64{7}); got.P50 != 7 || got.P999 != 7 || got.N != 1 {
		t.Errorf("one sample: %+v", got)
	}
	if got := PercentilesOf(nil); got.N != 0 {
		t.Errorf("no samples: %+v", got)
	}
}

func satRun(server, wl string, round int, size int, recvInWindow, sent uint64, busyTicks uint64) Run {
	return Run{Server: server, Workload: wl, Round: round,
		Load: Load{Size: size, Sent: sent, Received: recvInWindow, ReceivedInWindow: recvInWindow,
			WindowNS: 2e9, DurationNS: 2e9, CPUUserNS: 1e8, CPUSysNS: 9e8},
		CPU: CPU{User: busyTicks / 2, System: busyTicks / 2, Idle: 400 - busyTicks, Hz: 100, CPUs: 2}}
}

func TestRunMetrics(t *testing.T) {
	r := satRun(Kecho, Sat64, 1, 64, 20000, 25000, 200)
	if got := r.Rate(); got != 10000 {
		t.Errorf("Rate = %v, want 10000 (20000 echoes in 2 s)", got)
	}
	if got := r.BytesPerSec(); got != 640000 {
		t.Errorf("BytesPerSec = %v", got)
	}
	if got := r.Loss(); got != 0.2 {
		t.Errorf("Loss = %v, want 0.2", got)
	}
	// 200 ticks at 100 Hz = 2 s CPU over 20000 echoes = 100 µs each.
	if got := r.CPUPerEcho(); math.Abs(got-100) > 1e-9 {
		t.Errorf("CPUPerEcho = %v, want 100", got)
	}
	if got := r.GenShare(); got != 0.5 {
		t.Errorf("GenShare = %v, want 0.5", got)
	}
	if got := r.CPUBusy(); got != 0.5 {
		t.Errorf("CPUBusy = %v, want 0.5", got)
	}
	sink := Run{Server: Sink, Workload: Sat64, Load: Load{Size: 64, Sent: 30000},
		Stats: ServerStats{Rx: 24000, FirstNS: 1e9, LastNS: 3e9}}
	if got := sink.Rate(); got != 12000 {
		t.Errorf("sink Rate = %v, want 12000", got)
	}
	if got := sink.Loss(); got != 0.2 {
		t.Errorf("sink Loss = %v, want 0.2", got)
	}
}

func TestSummarizeMedians(t *testing.T) {
	runs := []Run{
		satRun(Kecho, Sat64, 1, 64, 10000, 10000, 100),
		satRun(Kecho, Sat64, 2, 64, 30000, 30000, 100),
		satRun(Kecho, Sat64, 3, 64, 20000, 20000, 100),
		{Server: Kecho, Workload: Sat64, Round: 4, Error: "boom"},
	}
	s := Summarize(runs)[[2]string{Kecho, Sat64}]
	if s.Rounds != 3 || s.Rate != 10000 || len(s.Errors) != 1 {
		t.Fatalf("summary = %+v, want 3 rounds, median rate 10000 (of 5k/15k/10k), 1 error", s)
	}
}

func sampleResults() *Results {
	res := &Results{Kernel: "6.1.0-test", GuestCPUs: 2, Accel: "TCG", Config: Config{Rounds: 1, Duration: 2 * time.Second, Flows: 4, Window: 32}}
	add := func(server string, r64, r1400 uint64, p99 uint64) {
		res.Runs = append(res.Runs,
			satRun(server, Sat64, 1, 64, r64, r64, 100),
			satRun(server, Sat1400, 1, 1400, r1400, r1400, 100))
		if server == Sink {
			res.Runs[len(res.Runs)-2].Stats = ServerStats{Rx: r64, FirstNS: 1e9, LastNS: 3e9}
			res.Runs[len(res.Runs)-1].Stats = ServerStats{Rx: r1400, FirstNS: 1e9, LastNS: 3e9}
		} else {
			res.Runs = append(res.Runs, Run{Server: server, Workload: RTT64, Round: 1,
				RTT: &Percentiles{N: 100, P50: p99 / 2, P99: p99, P999: p99 * 2}})
		}
	}
	add(Kecho, 30000, 20000, 40000)
	add(CEcho, 20000, 16000, 50000)
	add(GoEcho, 10000, 8000, 90000)
	add(Sink, 40000, 30000, 0)
	res.Footprints = []Footprint{{Name: DefaultFootName, Interval: 5 * time.Second, Period: time.Minute,
		Ready: 300 * time.Millisecond, RSSKiB: 12 << 10, MaxRSSKiB: 13 << 10, CPUNS: uint64(30 * time.Millisecond)}}
	return res
}

func TestMarkdownRatiosAndTargets(t *testing.T) {
	res := sampleResults()
	md := Markdown(res)
	for _, want := range []string{
		"| kecho (in kernel) | 20.0 | 40.0 | 80.0 | 15.0k | 1.0 | 0.0% |",
		// kecho 15k/s against C 10k/s and Go 5k/s at 64 B; p99 40 vs 50 µs.
		"| C recvmmsg/sendmmsg echo | 1.50× | 1.25× | 0.80× | 0.80× | 0.80× |",
		"| Go net.UDPConn echo | 3.00× | 2.50× |",
		"| kecho ≥ 2.0× Go echo, 64 B echoes/s | 3.00× | yes |",
		"| kecho ≥ 1.3× C echo, 64 B echoes/s | 1.50× | yes |",
		"| kecho p99 RTT ≤ C echo's | 40.0 µs vs 50.0 µs | yes |",
		"| kechod < 20 MiB resident | 13.0 MiB | yes |",
		"| kechod < 0.1% of a core at the default interval | 0.050% | yes |",
		"| 5s (default) | 1m0s | 300ms |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q\n%s", want, md)
		}
	}
	// A miss is reported as one.
	res.Runs[0].Load.ReceivedInWindow = 10000 // kecho 64 B: 5k/s
	for _, v := range Verdicts(res)[:2] {
		if v.Met {
			t.Errorf("verdict %q met with kecho at 5k/s against Go 5k/s and C 10k/s", v.Target)
		}
	}
}

func TestChart(t *testing.T) {
	res := sampleResults()
	var buf bytes.Buffer
	if err := WriteChart(&buf, res); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != ChartWidth || b.Dy() != ChartHeight {
		t.Fatalf("chart is %v", b)
	}
	// Each server's colour is on the chart (bars and legend), and the
	// tallest bar (the sink at 64 B) is taller than kecho's there.
	count := map[int]int{}
	for y := 0; y < ChartHeight; y++ {
		for x := 0; x < ChartWidth; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for i, c := range barColors {
				if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(b>>8) == c.B {
					count[i]++
				}
			}
		}
	}
	for i, s := range Servers {
		if count[i] < 500 {
			t.Errorf("%s: only %d pixels of its colour", s, count[i])
		}
	}
	if count[3] <= count[2] {
		t.Errorf("sink bars (%d px) not larger than Go's (%d px) though its rates are 4× higher", count[3], count[2])
	}
	g := ChartData(res)
	if len(g) != 2 || g[0].Values[0] != 15000 || g[1].Values[3] != 15000 {
		t.Errorf("ChartData = %+v", g)
	}
}

func TestShortNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 950: "950", 12500: "12.5k", 10000: "10k", 1250000: "1.25M", 2e6: "2M"} {
		if got := shortNum(in); got != want {
			t.Errorf("shortNum(%v) = %q, want %q", in, got, want)
		}
	}
	if got := niceStep(43000, 5); got != 10000 {
		t.Errorf("niceStep(43000, 5) = %v, want 10000", got)
	}
}
