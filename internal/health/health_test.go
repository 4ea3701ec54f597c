package health_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/health"
)

// stepClock advances by step on every reading.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// server answers each datagram with whatever reply returns (nil: no answer).
func server(t *testing.T, network, addr string, reply func(n int, in []byte) [][]byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 70000)
		for i := 0; ; i++ {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range reply(i, append([]byte(nil), buf[:n]...)) {
				c.WriteTo(r, from)
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func echo(_ int, in []byte) [][]byte { return [][]byte{in} }

func newProber(t *testing.T, target netip.AddrPort, timeout time.Duration, size int, clk health.Clock) *health.Prober {
	t.Helper()
	p, err := health.NewProber(health.Config{Target: target, Timeout: timeout, PayloadSize: size, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestProbeOK(t *testing.T) {
	target := server(t, "udp4", "127.0.0.1:0", echo)
	clk := &stepClock{t: time.Unix(0, 0), step: 210 * time.Microsecond}
	p := newProber(t, target, time.Second, 32, clk)
	for i := 0; i < 3; i++ {
		r := p.Probe(context.Background())
		if !r.OK() {
			t.Fatalf("probe %d: %s (%v)", i, r.Outcome, r.Reason())
		}
		if r.RTT != 210*time.Microsecond {
			t.Errorf("RTT = %v, want 210µs from the injected clock", r.RTT)
		}
		if r.Size != 32 || r.Target != target || r.Reason() != "" {
			t.Errorf("result %+v", r)
		}
	}
}

func TestProbeLargePayloadAndIPv6(t *testing.T) {
	target := server(t, "udp6", "[::1]:0", echo)
	p := newProber(t, target, time.Second, 9000, nil)
	if r := p.Probe(context.Background()); !r.OK() {
		t.Fatalf("probe: %s", r.Reason())
	}
}

func TestNoncesDiffer(t *testing.T) {
	var mu sync.Mutex
	var seen [][]byte
	target := server(t, "udp4", "127.0.0.1:0", func(_ int, in []byte) [][]byte {
		mu.Lock()
		seen = append(seen, in)
		mu.Unlock()
		return [][]byte{in}
	})
	p := newProber(t, target, time.Second, 16, nil)
	p.Probe(context.Background())
	p.Probe(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || len(seen[0]) != 16 || bytes.Equal(seen[0], seen[1]) {
		t.Fatalf("payloads %x: want two different 16-byte nonces", seen)
	}
}

func TestStaleEchoIgnored(t *testing.T) {
	var mu sync.Mutex
	var first []byte
	// The first probe is not answered in time; the second gets the first's
	// late echo, then its own.
	target := server(t, "udp4", "127.0.0.1:0", func(i int, in []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		if i == 0 {
			first = in
			return nil
		}
		return [][]byte{first, in}
	})
	p := newProber(t, target, 200*time.Millisecond, 32, nil)
	if r := p.Probe(context.Background()); r.Outcome != health.Timeout {
		t.Fatalf("first probe: %s, want timeout", r.Outcome)
	}
	r := p.Probe(context.Background())
	if !r.OK() || r.Stale != 1 || r.Mismatched != 0 {
		t.Fatalf("second probe: %+v, want ok with one stale echo ignored", r)
	}
}

func TestAlteredEchoDoesNotCount(t *testing.T) {
	for name, alter := range map[string]func([]byte) []byte{
		"flipped bit": func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"truncated":   func(b []byte) []byte { return b[:len(b)-1] },
		"extended":    func(b []byte) []byte { return append(b, 0) },
		"empty":       func(b []byte) []byte { return b[:0] },
	} {
		t.Run(name, func(t *testing.T) {
			target := server(t, "udp4", "127.0.0.1:0", func(_ int, in []byte) [][]byte { return [][]byte{alter(in)} })
			p := newProber(t, target, 150*time.Millisecond, 32, nil)
			r := p.Probe(context.Background())
			if r.Outcome != health.Mismatch || r.Mismatched != 1 {
				t.Fatalf("%+v, want mismatch", r)
			}
			if r.Reason() != "echo from "+target.String()+" differs from the probe" {
				t.Errorf("reason %q", r.Reason())
			}
		})
	}
}

func TestTimeoutAndRefused(t *testing.T) {
	silent := server(t, "udp4", "127.0.0.1:0", func(int, []byte) [][]byte { return nil })
	p := newProber(t, silent, 150*time.Millisecond, 32, nil)
	start := time.Now()
	r := p.Probe(context.Background())
	if r.Outcome != health.Timeout {
		t.Fatalf("%+v, want timeout", r)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Errorf("timeout after %v", el)
	}
	if r.Reason() != "no echo from "+silent.String()+" within 150ms" {
		t.Errorf("reason %q", r.Reason())
	}

	// A port nobody listens on: ICMP port unreachable.
	c, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	closed := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	p = newProber(t, closed, time.Second, 32, nil)
	r = p.Probe(context.Background())
	if r.Outcome != health.Refused {
		t.Fatalf("%+v, want refused", r)
	}
	if r.Reason() != "nothing listens on UDP "+closed.String()+" (port unreachable)" {
		t.Errorf("reason %q", r.Reason())
	}
}

func TestProbeHonoursContext(t *testing.T) {
	silent := server(t, "udp4", "127.0.0.1:0", func(int, []byte) [][]byte { return nil })
	p := newProber(t, silent, 10*time.Second, 32, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	r := p.Probe(ctx)
	if r.Outcome != health.Error || time.Since(start) > 2*time.Second {
		t.Fatalf("%+v after %v, want error soon after cancel", r, time.Since(start))
	}
}

func TestNewProberChecks(t *testing.T) {
	ok := netip.MustParseAddrPort("127.0.0.1:5555")
	for _, c := range []health.Config{
		{Target: netip.AddrPort{}, Timeout: time.Second, PayloadSize: 32},
		{Target: netip.MustParseAddrPort("127.0.0.1:0"), Timeout: time.Second, PayloadSize: 32},
		{Target: ok, Timeout: 0, PayloadSize: 32},
		{Target: ok, Timeout: time.Second, PayloadSize: 15},
		{Target: ok, Timeout: time.Second, PayloadSize: 65508},
	} {
		if p, err := health.NewProber(c); err == nil {
			p.Close()
			t.Errorf("NewProber(%+v) accepted", c)
		}
	}
}

func TestTracker(t *testing.T) {
	tr := health.Tracker{Threshold: 3}
	fail := health.Result{Outcome: health.Timeout}
	okr := health.Result{Outcome: health.OK, RTT: time.Millisecond}
	var crossings []int
	seq := []health.Result{okr, fail, fail, okr, fail, fail, fail, fail, fail, fail, okr}
	for i, r := range seq {
		if tr.Observe(r) {
			crossings = append(crossings, i)
		}
	}
	if len(crossings) != 1 || crossings[0] != 6 {
		t.Errorf("threshold crossed at %v, want [6]", crossings)
	}
	if tr.OK != 3 || tr.Total != 11 || tr.Consecutive != 0 || tr.Failing() {
		t.Errorf("tracker %+v", tr)
	}
	tr.Observe(fail)
	if tr.Failing() {
		t.Error("failing after one failure with threshold 3")
	}
}

func TestVerify(t *testing.T) {
	a, b, c := []byte("aaaaaaaaaaaaaaaa"), []byte("bbbbbbbbbbbbbbbb"), []byte("cccccccccccccccc")
	for _, tc := range []struct {
		reply []byte
		want  health.Verdict
	}{
		{a, health.Match},
		{b, health.Stale},
		{c, health.Foreign},
		{a[:15], health.Foreign},
		{nil, health.Foreign},
	} {
		if got := health.Verify(a, tc.reply, [][]byte{b}); got != tc.want {
			t.Errorf("Verify(%q) = %v, want %v", tc.reply, got, tc.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), []byte("0123456789abcdef"), []byte("x"))
	f.Add([]byte("0123456789abcdef"), []byte("0123456789abcdeg"), []byte("0123456789abcdeg"))
	f.Add([]byte("0123456789abcdef"), []byte("0123456789abcde"), []byte{})
	f.Fuzz(func(t *testing.T, sent, reply, earlier []byte) {
		v := health.Verify(sent, reply, [][]byte{earlier})
		identical := len(sent) > 0 && bytes.Equal(sent, reply)
		if (v == health.Match) != identical {
			t.Fatalf("Verify(%x, %x) = %v; identical = %v", sent, reply, v, identical)
		}
		if v == health.Stale && !bytes.Equal(reply, earlier) {
			t.Fatalf("stale verdict for a reply that is no earlier payload")
		}
		if v == health.Foreign && len(earlier) > 0 && bytes.Equal(reply, earlier) {
			t.Fatalf("an earlier payload's echo not recognised")
		}
	})
}
