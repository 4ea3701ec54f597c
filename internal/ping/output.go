package ping

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// quoteMax is how much of an echo is shown.
const quoteMax = 64

// Quote shows the first bytes of a datagram as a Go-quoted string, with
// "..." when it is longer.
func Quote(b []byte) string {
	if len(b) > quoteMax {
		return strconv.Quote(string(b[:quoteMax])) + "..."
	}
	return strconv.Quote(string(b))
}

// diff says how got differs from want.
func diff(want, got []byte) string {
	for i := 0; i < len(want) && i < len(got); i++ {
		if want[i] != got[i] {
			if len(want) != len(got) {
				return fmt.Sprintf("%d bytes, want %d; first difference at byte %d", len(got), len(want), i)
			}
			return fmt.Sprintf("byte %d is 0x%02x, want 0x%02x", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
}

// ms formats a duration as milliseconds with three decimals.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + " ms"
}

// RTT is min/avg/max/mdev of the round-trip times of the intact echoes.
func (s Stats) RTT() (minimum, avg, maximum, mdev time.Duration) {
	a := s.rtt
	if a.n == 0 {
		return
	}
	n := float64(a.n)
	mean := a.sum / n
	return a.minimum, time.Duration(mean), a.maximum, time.Duration(math.Sqrt(math.Max(0, a.sumSquares/n-mean*mean)))
}

// LossPercent is the share of datagrams sent that got no echo at all.
func (s Stats) LossPercent() int {
	if s.Sent == 0 {
		return 0
	}
	return s.Lost * 100 / s.Sent
}

func (r *runner) summary() {
	st := r.st
	fmt.Fprintf(r.out, "--- %s kecho ping statistics ---\n", r.opts.Target)
	fmt.Fprintf(r.out, "%d sent, %d received, %d%% loss, %d corrupt", st.Sent, st.Received, st.LossPercent(), st.Corrupt+st.Unmatched)
	if st.Late > 0 {
		fmt.Fprintf(r.out, ", %d late", st.Late)
	}
	if st.Duplicate > 0 {
		fmt.Fprintf(r.out, ", %d duplicate", st.Duplicate)
	}
	fmt.Fprintln(r.out)
	if st.rtt.n > 0 {
		a, b, c, d := st.RTT()
		f := func(d time.Duration) string {
			return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
		}
		fmt.Fprintf(r.out, "rtt min/avg/max/mdev = %s/%s/%s/%s ms\n", f(a), f(b), f(c), f(d))
	}
}
