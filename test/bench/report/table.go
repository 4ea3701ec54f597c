package report

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Servers is the order servers appear in tables and the chart.
var Servers = []string{Kecho, CEcho, GoEcho, Sink}

// ServerLabel is how a server is named for readers.
var ServerLabel = map[string]string{
	Kecho:  "kecho (in kernel)",
	CEcho:  "C recvmmsg/sendmmsg echo",
	GoEcho: "Go net.UDPConn echo",
	Sink:   "one-way sink (ceiling)",
}

// Targets of the performance issue.
const (
	TargetVsGo      = 2.0  // kecho 64 B echoes/s ≥ 2× the Go echo
	TargetVsC       = 1.3  // ≥ 1.3× the C echo
	TargetRSSMiB    = 20.0 // kechod resident memory
	TargetCPUPct    = 0.1  // kechod CPU share of a core at the default interval
	DefaultFootName = "default"
)

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func us(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "–"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v != 0 && v < 0.001 {
		return fmt.Sprintf("%.3f%%", 100*v)
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func mbps(bps float64) string {
	if bps == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", bps/1e6)
}

func get(sum map[[2]string]*Summary, server, wl string) *Summary {
	if s := sum[[2]string{server, wl}]; s != nil {
		return s
	}
	return &Summary{Server: server, Workload: wl}
}

// Verdict of one target.
type Verdict struct {
	Target   string
	Measured string
	Met      bool
}

// Verdicts checks the targets against the results.
func Verdicts(res *Results) []Verdict {
	sum := Summarize(res.Runs)
	k64, c64, g64 := get(sum, Kecho, Sat64), get(sum, CEcho, Sat64), get(sum, GoEcho, Sat64)
	krtt, crtt := get(sum, Kecho, RTT64), get(sum, CEcho, RTT64)
	vGo, vC := Ratio(k64.Rate, g64.Rate), Ratio(k64.Rate, c64.Rate)
	v := []Verdict{
		{fmt.Sprintf("kecho ≥ %.1f× Go echo, 64 B echoes/s", TargetVsGo), ratio(vGo), vGo >= TargetVsGo},
		{fmt.Sprintf("kecho ≥ %.1f× C echo, 64 B echoes/s", TargetVsC), ratio(vC), vC >= TargetVsC},
		{"kecho p99 RTT ≤ C echo's", fmt.Sprintf("%s µs vs %s µs", us(krtt.P99), us(crtt.P99)),
			krtt.P99 > 0 && crtt.P99 > 0 && krtt.P99 <= crtt.P99},
	}
	for _, f := range res.Footprints {
		if f.Name != DefaultFootName {
			continue
		}
		rss := float64(f.MaxRSSKiB) / 1024
		v = append(v,
			Verdict{fmt.Sprintf("kechod < %.0f MiB resident", TargetRSSMiB), fmt.Sprintf("%.1f MiB", rss), f.Error == "" && f.MaxRSSKiB > 0 && rss < TargetRSSMiB},
			Verdict{fmt.Sprintf("kechod < %.1f%% of a core at the default interval", TargetCPUPct), fmt.Sprintf("%.3f%%", f.CPUPercent()), f.Error == "" && f.Period > 0 && f.CPUPercent() < TargetCPUPct})
	}
	return v
}

// Markdown renders the results: the comparison table, ratios against each
// peer, the targets, the load generator's own numbers, kechod's
// footprint and, if measured, the module variants.
func Markdown(res *Results) string {
	var b strings.Builder
	sum := Summarize(res.Runs)
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	w("# kecho benchmark\n\n")
	w("Kernel %s in qemu (%s, %d vCPUs), commit %s, %s. Host load average before/after: %s / %s (%d host CPUs). ",
		res.Kernel, res.Accel, res.GuestCPUs, res.Commit, res.Started.UTC().Format("2006-01-02 15:04 UTC"),
		res.HostLoad[0], res.HostLoad[1], res.HostCPUs)
	w("Medians of %d rounds; saturation %v per run with %d flows × %d outstanding datagrams; latency %v per run. ",
		res.Config.Rounds, res.Config.Duration, res.Config.Flows, res.Config.Window, res.Config.RTTDuration)
	w("Absolute numbers are emulated-CPU numbers (TCG), not hardware numbers; compare the ratios.\n\n")

	w("## Servers side by side\n\n")
	w("| server | RTT p50 µs | p99 µs | p99.9 µs | 64 B echoes/s | 64 B MB/s | 64 B loss | 64 B CPU µs/echo | 1400 B echoes/s | 1400 B MB/s | 1400 B loss | 1400 B CPU µs/echo |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, s := range measured(sum) {
		r, a, c := get(sum, s, RTT64), get(sum, s, Sat64), get(sum, s, Sat1400)
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", ServerLabel[s],
			us(r.P50), us(r.P99), us(r.P999),
			num(a.Rate), mbps(a.BytesPerSec), pct(a.Loss), us(a.CPUPerEcho),
			num(c.Rate), mbps(c.BytesPerSec), pct(c.Loss), us(c.CPUPerEcho))
	}
	w("\nCPU µs/echo is the guest's busy time on all CPUs (server, load generator and the stack's softirqs) from /proc/stat, divided by the echoes; for the sink it is per datagram delivered.\n\n")

	w("## kecho against each peer\n\n")
	w("Throughput: kecho ÷ peer (more is better for kecho). Latency and CPU: kecho ÷ peer (less is better for kecho).\n\n")
	w("| peer | 64 B echoes/s | 1400 B echoes/s | RTT p50 | RTT p99 | RTT p99.9 | CPU/echo 64 B | CPU/echo 1400 B |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|\n")
	kr, k64, k1400 := get(sum, Kecho, RTT64), get(sum, Kecho, Sat64), get(sum, Kecho, Sat1400)
	for _, s := range measured(sum) {
		if s == Kecho {
			continue
		}
		r, a, c := get(sum, s, RTT64), get(sum, s, Sat64), get(sum, s, Sat1400)
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", ServerLabel[s],
			ratio(Ratio(k64.Rate, a.Rate)), ratio(Ratio(k1400.Rate, c.Rate)),
			ratio(Ratio(kr.P50, r.P50)), ratio(Ratio(kr.P99, r.P99)), ratio(Ratio(kr.P999, r.P999)),
			ratio(Ratio(k64.CPUPerEcho, a.CPUPerEcho)), ratio(Ratio(k1400.CPUPerEcho, c.CPUPerEcho)))
	}

	w("\n## Spread over the rounds\n\nMin–max of the per-round values; where ranges of two servers overlap, their difference is within the noise of this run.\n\n")
	w("| server | 64 B echoes/s | 1400 B echoes/s | RTT p99 µs |\n|---|--:|--:|--:|\n")
	for _, s := range measured(sum) {
		r, a, c := get(sum, s, RTT64), get(sum, s, Sat64), get(sum, s, Sat1400)
		w("| %s | %s–%s | %s–%s | %s–%s |\n", ServerLabel[s], num(a.RateMin), num(a.RateMax),
			num(c.RateMin), num(c.RateMax), us(r.P99Min), us(r.P99Max))
	}
	w("\n## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, v := range Verdicts(res) {
		m := "no"
		if v.Met {
			m = "yes"
		}
		w("| %s | %s | %s |\n", v.Target, v.Measured, m)
	}

	w("\n## The load generator is not the bottleneck\n\n")
	w("| run | generator sent/s | replies/s | generator CPU (share of one core) | guest CPU busy |\n|---|--:|--:|--:|--:|\n")
	for _, s := range Servers {
		for _, wl := range []string{Sat64, Sat1400} {
			x := get(sum, s, wl)
			if x.Rounds == 0 {
				continue
			}
			w("| %s %s | %s | %s | %s | %s |\n", s, wl, num(x.SendRate), num(x.Rate), pct(x.GenShare), pct(x.CPUBusy))
		}
	}
	w("\nAgainst the sink the generator only sends; that rate is what it can offer, and every echo server's reply rate stays below it.\n")

	if len(res.Footprints) > 0 {
		w("\n## kechod footprint\n\n| probe interval | period | start → READY | RSS at end | max RSS | CPU (share of one core) | last STATUS |\n|---|--:|--:|--:|--:|--:|---|\n")
		for _, f := range res.Footprints {
			if f.Error != "" {
				w("| %v | %v | error: %s | | | | |\n", f.Interval, f.Period, f.Error)
				continue
			}
			iv := f.Interval.String()
			switch f.Name {
			case DefaultFootName:
				iv += " (default)"
			case "control":
				iv += " (control: minimal Go prober, not kechod)"
			}
			w("| %s | %v | %v | %.1f MiB | %.1f MiB | %.3f%% | %s |\n", iv, f.Period.Round(100*time.Millisecond),
				f.Ready.Round(timeRound(f.Ready)), float64(f.RSSKiB)/1024, float64(f.MaxRSSKiB)/1024,
				f.CPUPercent(), strings.ReplaceAll(f.LastStatus, "|", "/"))
		}
	}

	if len(res.Variants) > 0 {
		vs := Summarize(res.VariantRun)
		base := get(vs, "baseline", Sat64)
		baseRTT := get(vs, "baseline", RTT64)
		w("\n## Module variants\n\nMedians over the variant rounds (interleaved: every variant once per round); ratios against the baseline build measured in the same rounds.\n\n")
		w("| variant | change | 64 B echoes/s | min–max | vs baseline | CPU µs/echo | RTT p50 µs | p99 µs | p99 vs baseline | rounds |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, v := range res.Variants {
			a, r := get(vs, v.Name, Sat64), get(vs, v.Name, RTT64)
			w("| %s | %s | %s | %s–%s | %s | %s | %s | %s | %s | %d |\n", v.Name, strings.ReplaceAll(v.Desc, "|", "\\|"), num(a.Rate),
				num(a.RateMin), num(a.RateMax), ratio(Ratio(a.Rate, base.Rate)), us(a.CPUPerEcho), us(r.P50), us(r.P99),
				ratio(Ratio(r.P99, baseRTT.P99)), a.Rounds)
		}
	}

	var errs []string
	for _, r := range append(append([]Run{}, res.Runs...), res.VariantRun...) {
		if r.Error != "" {
			errs = append(errs, fmt.Sprintf("- %s %s round %d: %s", r.Server, r.Workload, r.Round, r.Error))
		}
		if r.Load.Corrupt > 0 {
			errs = append(errs, fmt.Sprintf("- %s %s round %d: %d corrupt replies", r.Server, r.Workload, r.Round, r.Load.Corrupt))
		}
	}
	if len(errs) > 0 {
		w("\n## Problems\n\n%s\n", strings.Join(errs, "\n"))
	}
	return b.String()
}

// measured lists the servers with at least one run, in Servers order.
func measured(sum map[[2]string]*Summary) []string {
	var out []string
	for _, s := range Servers {
		for _, wl := range []string{RTT64, Sat64, Sat1400} {
			if x := sum[[2]string{s, wl}]; x != nil {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func timeRound(d time.Duration) time.Duration {
	if d.Milliseconds() >= 100 {
		return time.Duration(1e6) // 1 ms
	}
	return time.Duration(1e4) // 10 µs
}
