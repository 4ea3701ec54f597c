package ping

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeClock is advanced only by fakeNet.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

// delivery is a datagram the fake network hands to Read at a time.
type delivery struct {
	at   time.Time
	data []byte
	err  error
}

// fakeNet is a simulated echo server: for the n-th datagram written
// (1-based) answer decides what comes back and after how long. Read jumps
// the clock to the next delivery or to the deadline.
type fakeNet struct {
	t        *testing.T
	clk      *fakeClock
	answer   func(n int, p []byte) []reply
	queue    []delivery
	deadline time.Time
	writes   [][]byte
}

type reply struct {
	after time.Duration
	data  []byte
	err   error
}

func newFakeNet(t *testing.T, answer func(n int, p []byte) []reply) *fakeNet {
	return &fakeNet{t: t, clk: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, answer: answer}
}

func (f *fakeNet) Write(b []byte) (int, error) {
	p := append([]byte(nil), b...)
	f.writes = append(f.writes, p)
	for _, r := range f.answer(len(f.writes), p) {
		f.queue = append(f.queue, delivery{at: f.clk.t.Add(r.after), data: r.data, err: r.err})
	}
	sort.SliceStable(f.queue, func(i, j int) bool { return f.queue[i].at.Before(f.queue[j].at) })
	return len(b), nil
}

func (f *fakeNet) SetReadDeadline(t time.Time) error {
	if t.Before(f.clk.t) && t.Year() > 2000 {
		f.t.Errorf("deadline %v set in the past (now %v)", t, f.clk.t)
	}
	f.deadline = t
	return nil
}

func (f *fakeNet) Read(b []byte) (int, error) {
	if len(f.queue) > 0 && !f.queue[0].at.After(f.deadline) {
		d := f.queue[0]
		f.queue = f.queue[1:]
		if d.at.After(f.clk.t) {
			f.clk.t = d.at
		}
		if d.err != nil {
			return 0, d.err
		}
		return copy(b, d.data), nil
	}
	if f.deadline.After(f.clk.t) {
		f.clk.t = f.deadline
	}
	return 0, os.ErrDeadlineExceeded
}

func echo(after time.Duration) func(int, []byte) []reply {
	return func(_ int, p []byte) []reply { return []reply{{after: after, data: p}} }
}

func run(t *testing.T, f *fakeNet, o Options) (Stats, string) {
	t.Helper()
	if o.Target == "" {
		o.Target = "127.0.0.1:5555"
	}
	if o.Message == nil {
		o.Message = []byte("hello world")
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	o.Clock = f.clk
	var out bytes.Buffer
	st, err := Run(context.Background(), f, o, &out)
	if err != nil {
		t.Fatal(err)
	}
	return st, out.String()
}

func TestPayload(t *testing.T) {
	msg := []byte("hello world")
	for _, tc := range []struct {
		size, seq int
		want      string
	}{
		{0, 1, "hello world"},
		{0, 2, "hello world #2"},
		{0, 10, "hello world #10"},
		{11, 1, "hello world"},
		{11, 5, "hello world"},
		{16, 1, "hello world....."},
		{16, 2, "hello world.. #2"},
		{14, 2, "hello world #2"},
		{13, 2, "hello world.."},
		{20, 123, "hello world.... #123"},
	} {
		got := string(Payload(msg, tc.size, tc.seq))
		if got != tc.want {
			t.Errorf("Payload(size %d, seq %d) = %q, want %q", tc.size, tc.seq, got, tc.want)
		}
		if tc.size > 0 && len(got) != tc.size {
			t.Errorf("Payload(size %d, seq %d) has %d bytes", tc.size, tc.seq, len(got))
		}
	}
	// Distinct payloads per seq without a size and with room for the tag.
	for _, size := range []int{0, 40} {
		seen := map[string]int{}
		for seq := 1; seq <= 2000; seq++ {
			p := string(Payload(msg, size, seq))
			if prev, dup := seen[p]; dup {
				t.Fatalf("size %d: seq %d and %d have the same payload %q", size, prev, seq, p)
			}
			seen[p] = seq
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	ok := Options{Message: []byte("hello world"), Interval: time.Second, Timeout: time.Second, Count: 1}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Options){
		"size below message": func(o *Options) { o.Size = 5 },
		"size too big":       func(o *Options) { o.Size = MaxSize + 1 },
		"negative size":      func(o *Options) { o.Size = -1 },
		"message too big":    func(o *Options) { o.Message = make([]byte, MaxSize+1) },
		"negative count":     func(o *Options) { o.Count = -1 },
		"negative interval":  func(o *Options) { o.Interval = -time.Second },
		"zero timeout":       func(o *Options) { o.Timeout = 0 },
	} {
		o := ok
		mod(&o)
		if err := o.Check(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

var rttLine = regexp.MustCompile(`rtt min/avg/max/mdev = [0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+ ms`)

func TestAllEchoed(t *testing.T) {
	f := newFakeNet(t, echo(213*time.Microsecond))
	st, out := run(t, f, Options{Count: 3})
	want := []string{
		"ECHO 127.0.0.1:5555: 11 bytes",
		`11 bytes from 127.0.0.1:5555: seq=1 time=0.213 ms "hello world"`,
		`14 bytes from 127.0.0.1:5555: seq=2 time=0.213 ms "hello world #2"`,
		`14 bytes from 127.0.0.1:5555: seq=3 time=0.213 ms "hello world #3"`,
		"--- 127.0.0.1:5555 kecho ping statistics ---",
		"3 sent, 3 received, 0% loss, 0 corrupt",
		"rtt min/avg/max/mdev = 0.213/0.213/0.213/0.000 ms",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if !st.OK() || st.Sent != 3 || st.Received != 3 {
		t.Errorf("stats %+v", st)
	}
	if string(f.writes[0]) != "hello world" {
		t.Errorf("first datagram %q, want exactly the message", f.writes[0])
	}
	// Sends are Interval apart: the clock ran 2 intervals plus one RTT.
	if el := f.clk.t.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); el != 2*time.Second+213*time.Microsecond {
		t.Errorf("elapsed %v", el)
	}
}

func TestLossAndLate(t *testing.T) {
	// Datagram 2's echo comes after 1.5 s, past the 1 s timeout.
	f := newFakeNet(t, func(n int, p []byte) []reply {
		if n == 2 {
			return []reply{{after: 1500 * time.Millisecond, data: p}}
		}
		return []reply{{after: time.Millisecond, data: p}}
	})
	st, out := run(t, f, Options{Count: 3, Interval: 2 * time.Second})
	for _, w := range []string{
		"no echo for seq=2 within 1s\n",
		"14 bytes from 127.0.0.1:5555: seq=2 late, time=1500.000 ms (after the 1s timeout)\n",
		"3 sent, 2 received, 33% loss, 0 corrupt, 1 late\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if st.OK() || st.Lost != 1 || st.Late != 1 || st.Corrupt != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLateEchoOfIdenticalPayloadIsNotCorrupt(t *testing.T) {
	// With -s equal to the message length all datagrams are identical; a
	// late echo then counts for the newest datagram, never as corrupt.
	f := newFakeNet(t, func(n int, p []byte) []reply {
		if n == 1 {
			return []reply{{after: 1200 * time.Millisecond, data: p}}
		}
		return nil
	})
	st, _ := run(t, f, Options{Count: 2, Size: 11, Interval: 1100 * time.Millisecond})
	if st.Corrupt != 0 || st.Unmatched != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCorrupt(t *testing.T) {
	f := newFakeNet(t, func(n int, p []byte) []reply {
		q := append([]byte(nil), p...)
		switch n {
		case 1:
			q[3] = 0
		case 2:
			q = q[:5]
		case 3:
			// intact
		}
		return []reply{{after: time.Millisecond, data: q}}
	})
	st, out := run(t, f, Options{Count: 3})
	for _, w := range []string{
		`11 bytes from 127.0.0.1:5555: seq=1 corrupt: byte 3 is 0x00, want 0x6c "hel\x00o world"`,
		`5 bytes from 127.0.0.1:5555: seq=2 corrupt: 5 bytes, want 14 "hello"`,
		`seq=3 time=1.000 ms "hello world #3"`,
		"3 sent, 1 received, 0% loss, 2 corrupt\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if st.OK() || st.Corrupt != 2 || st.Received != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestDuplicateAndStray(t *testing.T) {
	f := newFakeNet(t, func(n int, p []byte) []reply {
		return []reply{
			{after: time.Millisecond, data: p},
			{after: 2 * time.Millisecond, data: p},
			{after: 3 * time.Millisecond, data: []byte("garbage")},
		}
	})
	st, out := run(t, f, Options{Count: 2})
	if st.Duplicate != 1 || st.Unmatched != 1 || st.Received != 2 || st.OK() {
		t.Errorf("stats %+v\n%s", st, out)
	}
	if !strings.Contains(out, "seq=1 duplicate") || !strings.Contains(out, "corrupt: matches no recent datagram (after seq=1)") {
		t.Errorf("output:\n%s", out)
	}
}

func TestConnectionRefused(t *testing.T) {
	refused := &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvfrom", syscall.ECONNREFUSED)}
	f := newFakeNet(t, func(int, []byte) []reply { return []reply{{after: 0, err: refused}} })
	st, out := run(t, f, Options{Count: 2})
	if st.Lost != 2 || st.OK() || !strings.Contains(out, "no echo for seq=1: connection refused (ICMP port unreachable: nothing serves this port)\n") {
		t.Errorf("stats %+v\n%s", st, out)
	}
	if el := f.clk.t.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); el < time.Second {
		t.Errorf("did not wait out the interval after an error: %v", el)
	}
}

func TestRTTStats(t *testing.T) {
	var s Stats
	for _, d := range []time.Duration{2 * time.Millisecond, time.Millisecond, 3 * time.Millisecond} {
		s.rtt.add(d)
	}
	a, b, c, d := s.RTT()
	if a != time.Millisecond || b != 2*time.Millisecond || c != 3*time.Millisecond {
		t.Errorf("%v %v %v", a, b, c)
	}
	if d < 816*time.Microsecond || d > 817*time.Microsecond { // sqrt(2/3) ms
		t.Errorf("mdev %v", d)
	}
}

// udpEcho serves UDP echo on loopback until the test ends; drop decides
// per datagram (1-based) whether to answer.
func udpEcho(t *testing.T, network, addr string, drop func(n int) bool) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		t.Skipf("no %s loopback here (%v); the IPv4 tests cover the logic", network, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for n := 1; ; n++ {
			k, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if drop != nil && drop(n) {
				continue
			}
			_, _ = pc.WriteToUDP(buf[:k], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc
}

func TestLoopbackUDP(t *testing.T) {
	for _, tc := range []struct{ network, addr, host string }{
		{"udp4", "127.0.0.1", "127.0.0.1"},
		{"udp6", "::1", "::1"},
		{"udp4", "127.0.0.1", "localhost"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			srv := udpEcho(t, tc.network, tc.addr, nil)
			port := srv.LocalAddr().(*net.UDPAddr).Port
			c, target, err := Dial(context.Background(), nil, tc.host, port)
			if err != nil {
				if tc.host == "localhost" {
					t.Skipf("localhost does not resolve here: %v", err)
				}
				t.Fatal(err)
			}
			defer c.Close()
			if tc.host == "localhost" && !strings.HasPrefix(target, "localhost (") {
				t.Errorf("target %q", target)
			}
			if tc.host == "localhost" && !strings.Contains(target, tc.addr) {
				t.Skipf("localhost resolves to %s first, not served here", target)
			}
			var out bytes.Buffer
			st, err := Run(context.Background(), c, Options{Target: target, Message: []byte("hello world"),
				Count: 3, Size: 100, Interval: 10 * time.Millisecond, Timeout: time.Second}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if !st.OK() || st.Received != 3 || !rttLine.MatchString(out.String()) {
				t.Errorf("stats %+v\n%s", st, out.String())
			}
			if !strings.Contains(out.String(), "100 bytes from "+target+": seq=1 time=") {
				t.Errorf("output:\n%s", out.String())
			}
		})
	}
}

func TestLoopbackLossAndInterrupt(t *testing.T) {
	srv := udpEcho(t, "udp4", "127.0.0.1", func(n int) bool { return n == 2 || n >= 4 })
	c, target, err := Dial(context.Background(), nil, "127.0.0.1", srv.LocalAddr().(*net.UDPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan Stats)
	go func() {
		st, _ := Run(ctx, c, Options{Target: target, Message: []byte("x"), Count: 0,
			Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond}, &out)
		done <- st
	}()
	// Wait until the 4th datagram (never answered) is being waited for.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "seq=3 time=") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond)
	start := time.Now()
	cancel()
	var st Stats
	select {
	case st = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v to stop", d)
	}
	s := out.String()
	if !strings.Contains(s, "no echo for seq=2 within 100ms") || !strings.Contains(s, "--- "+target+" kecho ping statistics ---") {
		t.Errorf("output:\n%s", s)
	}
	if st.Received != 2 || st.Lost < 1 || st.OK() {
		t.Errorf("stats %+v\n%s", st, s)
	}
}

func TestDialErrors(t *testing.T) {
	_, _, err := Dial(context.Background(), nil, "no-such-host.invalid", 5555)
	var re *ResolveError
	if !errors.As(err, &re) {
		t.Errorf("err = %v, want a *ResolveError", err)
	}
	c, target, err := Dial(context.Background(), nil, "[::1]", 5555)
	if err == nil {
		defer c.Close()
		if target != "[::1]:5555" {
			t.Errorf("target %q", target)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMatchWindow(t *testing.T) {
	// Datagram 1's echo comes back after 68.2 s: 5 s late is still
	// recognised, 68 datagrams later it is outside the window and matches
	// nothing remembered.
	for _, tc := range []struct {
		after           time.Duration
		late, unmatched int
	}{
		{5200 * time.Millisecond, 1, 0},
		{68200 * time.Millisecond, 0, 1},
	} {
		f := newFakeNet(t, func(n int, p []byte) []reply {
			if n == 1 {
				return []reply{{after: tc.after, data: p}}
			}
			return []reply{{after: time.Millisecond, data: p}}
		})
		st, out := run(t, f, Options{Count: 70, Timeout: 500 * time.Millisecond})
		if st.Late != tc.late || st.Unmatched != tc.unmatched || st.Received != 69 || st.Lost != 1 {
			t.Errorf("after %v: stats %+v\n%s", tc.after, st, out)
		}
	}
}

func TestLoopbackNothingListens(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	c, target, err := Dial(context.Background(), nil, "127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out bytes.Buffer
	start := time.Now()
	st, err := Run(context.Background(), c, Options{Target: target, Message: []byte("x"), Count: 2,
		Interval: 50 * time.Millisecond, Timeout: 5 * time.Second}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 2 || st.Lost != 2 || st.OK() || !strings.Contains(out.String(), "no echo for seq=1: connection refused") {
		t.Errorf("stats %+v\n%s", st, out.String())
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("waited %v: a refused datagram should not wait for its timeout", d)
	}
}
