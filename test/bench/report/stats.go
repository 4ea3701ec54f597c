package report

import (
	"math"
	"slices"
	"sort"
)

// PercentilesOf computes nearest-rank percentiles of RTT samples (ns).
// It sorts samples in place.
func PercentilesOf(samples []uint64) Percentiles {
	if len(samples) == 0 {
		return Percentiles{}
	}
	slices.Sort(samples)
	var sum float64
	for _, s := range samples {
		sum += float64(s)
	}
	rank := func(q float64) uint64 {
		i := int(math.Ceil(q*float64(len(samples)))) - 1
		i = max(0, min(i, len(samples)-1))
		return samples[i]
	}
	return Percentiles{
		N: len(samples), Min: samples[0], Max: samples[len(samples)-1],
		P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), P999: rank(0.999),
		Mean: sum / float64(len(samples)),
	}
}

// Echoes is how many replies (or, for the sink, deliveries) the run got.
func (r Run) Echoes() uint64 {
	if r.Server == Sink {
		return r.Stats.Rx
	}
	return r.Load.Received
}

// Rate is echoes per second: replies received during the send phase over
// its length; for the sink, deliveries between its first and last
// datagram.
func (r Run) Rate() float64 {
	if r.Server == Sink {
		if r.Stats.LastNS <= r.Stats.FirstNS {
			return 0
		}
		return float64(r.Stats.Rx) / (float64(r.Stats.LastNS-r.Stats.FirstNS) / 1e9)
	}
	if r.Load.WindowNS == 0 {
		return 0
	}
	return float64(r.Load.ReceivedInWindow) / (float64(r.Load.WindowNS) / 1e9)
}

// BytesPerSec is payload bytes echoed per second.
func (r Run) BytesPerSec() float64 { return r.Rate() * float64(r.Load.Size) }

// Loss is the share of datagrams sent that never came back (for the sink:
// that were not delivered).
func (r Run) Loss() float64 {
	if r.Load.Sent == 0 {
		return 0
	}
	got := r.Echoes()
	if got >= r.Load.Sent {
		return 0
	}
	return float64(r.Load.Sent-got) / float64(r.Load.Sent)
}

// CPUPerEcho is the guest's busy CPU time (all CPUs: server, load
// generator, softirqs) per echo, in microseconds.
func (r Run) CPUPerEcho() float64 {
	e := r.Echoes()
	if e == 0 || r.CPU.Hz == 0 {
		return 0
	}
	return float64(r.CPU.Busy()) * 1e6 / float64(r.CPU.Hz) / float64(e)
}

// CPUBusy is the guest's busy share of all its CPUs during the run (0-1).
func (r Run) CPUBusy() float64 {
	if r.CPU.Total() == 0 {
		return 0
	}
	return float64(r.CPU.Busy()) / float64(r.CPU.Total())
}

// GenShare is the load generator's own CPU time over the run's length, as
// a share of one core (0-1).
func (r Run) GenShare() float64 {
	if r.Load.DurationNS == 0 {
		return 0
	}
	return float64(r.Load.CPUUserNS+r.Load.CPUSysNS) / float64(r.Load.DurationNS)
}

// Summary is the median over rounds of one server's workload.
type Summary struct {
	Server, Workload string
	Rounds           int
	Rate             float64 // echoes/s
	RateMin, RateMax float64 // over the rounds
	P99Min, P99Max   float64 // µs, over the rounds
	BytesPerSec      float64
	Loss             float64 // 0-1
	CPUPerEcho       float64 // µs
	CPUBusy          float64 // 0-1
	GenShare         float64 // 0-1 of a core
	SendRate         float64 // datagrams/s the generator sent
	P50, P99, P999   float64 // µs (latency workloads)
	Corrupt          uint64
	Errors           []string
}

// median of xs (0 for none); xs is sorted in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func minMax(xs []float64) (lo, hi float64) {
	for i, x := range xs {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// Summarize groups runs by server and workload and takes the median of
// every metric over the rounds. Runs with an error count in Errors only.
func Summarize(runs []Run) map[[2]string]*Summary {
	type acc struct {
		rate, bps, loss, cpu, busy, gen, send, p50, p99, p999 []float64
	}
	accs := map[[2]string]*acc{}
	out := map[[2]string]*Summary{}
	for _, r := range runs {
		k := [2]string{r.Server, r.Workload}
		s := out[k]
		if s == nil {
			s = &Summary{Server: r.Server, Workload: r.Workload}
			out[k] = s
			accs[k] = &acc{}
		}
		if r.Error != "" {
			s.Errors = append(s.Errors, r.Error)
			continue
		}
		a := accs[k]
		s.Rounds++
		s.Corrupt += r.Load.Corrupt
		a.rate = append(a.rate, r.Rate())
		a.bps = append(a.bps, r.BytesPerSec())
		a.loss = append(a.loss, r.Loss())
		a.cpu = append(a.cpu, r.CPUPerEcho())
		a.busy = append(a.busy, r.CPUBusy())
		a.gen = append(a.gen, r.GenShare())
		if r.Load.DurationNS > 0 {
			a.send = append(a.send, float64(r.Load.Sent)/(float64(r.Load.DurationNS)/1e9))
		}
		if r.RTT != nil && r.RTT.N > 0 {
			a.p50 = append(a.p50, float64(r.RTT.P50)/1e3)
			a.p99 = append(a.p99, float64(r.RTT.P99)/1e3)
			a.p999 = append(a.p999, float64(r.RTT.P999)/1e3)
		}
	}
	for k, s := range out {
		a := accs[k]
		s.RateMin, s.RateMax = minMax(a.rate)
		s.P99Min, s.P99Max = minMax(a.p99)
		s.Rate, s.BytesPerSec, s.Loss = median(a.rate), median(a.bps), median(a.loss)
		s.CPUPerEcho, s.CPUBusy, s.GenShare = median(a.cpu), median(a.busy), median(a.gen)
		s.SendRate = median(a.send)
		s.P50, s.P99, s.P999 = median(a.p50), median(a.p99), median(a.p999)
	}
	return out
}

// Ratio is a/b, or NaN when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}
