// Package ping is the client side of `kechod ping`: it sends UDP datagrams
// to an echo server (the kecho module), matches each echo byte for byte to
// the datagram it answers, prints ping-style lines and a summary, and keeps
// the statistics the command's exit status is derived from.
//
// Datagrams are sent one after another: datagram n+1 leaves Interval after
// datagram n, but never before n's echo came back or its Timeout ran out.
// Every datagram has its own content so that each echo is matched to its
// sequence number by content alone (kecho echoes raw bytes, there is no
// header): datagram 1 is exactly the message, datagram n > 1 is the message
// followed by " #n". With a size, the message is padded with '.' to that
// many bytes and the " #n" tag ends the padding where it fits.
package ping

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// MaxSize is the largest datagram payload: the largest UDP payload over IPv4.
const MaxSize = 65507

// Conn is a connected datagram socket (a *net.UDPConn from DialUDP).
type Conn interface {
	Write(b []byte) (int, error)
	Read(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// Clock tells the time; deadlines given to Conn are in its time.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options describe one run.
type Options struct {
	// Target names the destination in the output, e.g. "127.0.0.1:5555"
	// or "localhost (127.0.0.1:5555)".
	Target string
	// Message is the content of the first datagram.
	Message []byte
	// Size pads every datagram to this many bytes; 0 = no padding.
	// Size must be at least len(Message).
	Size int
	// Count datagrams are sent; 0 = until ctx is done.
	Count int
	// Interval between sends.
	Interval time.Duration
	// Timeout for one echo.
	Timeout time.Duration
	// Clock; nil = the system clock.
	Clock Clock
}

// Stats summarise a run. Sent = Received + Corrupt + Lost.
type Stats struct {
	Sent      int // datagrams whose outcome is known
	Received  int // echoes that came back intact and in time
	Corrupt   int // datagrams whose echo differed from what was sent
	Unmatched int // damaged echoes that came when no datagram was waiting
	Lost      int // datagrams without an echo within Timeout
	Late      int // echoes that came back after their Timeout (still Lost)
	Duplicate int // extra echoes of a datagram already answered
	rtt       rttStats
}

// rttStats aggregates round-trip times without keeping them all.
type rttStats struct {
	n                int
	minimum, maximum time.Duration
	sum, sumSquares  float64
}

func (a *rttStats) add(d time.Duration) {
	if a.n == 0 || d < a.minimum {
		a.minimum = d
	}
	if a.n == 0 || d > a.maximum {
		a.maximum = d
	}
	a.n++
	a.sum += float64(d)
	a.sumSquares += float64(d) * float64(d)
}

// OK reports whether every datagram sent came back intact.
func (s Stats) OK() bool { return s.Sent > 0 && s.Received == s.Sent && s.Unmatched == 0 }

// Payload returns the content of datagram seq (1-based) for a message and
// a size (0 = no padding; otherwise at least len(msg)). Without a size,
// datagram 1 is msg and datagram n > 1 is msg + " #n". With a size, msg is
// padded with '.' to size bytes and " #n" ends the padding when it fits;
// when it does not (size too close to len(msg)), datagrams repeat and an
// echo is matched to the newest datagram with that content.
func Payload(msg []byte, size, seq int) []byte {
	p := append([]byte(nil), msg...)
	tag := ""
	if seq > 1 {
		tag = " #" + strconv.Itoa(seq)
	}
	if size == 0 {
		return append(p, tag...)
	}
	for len(p) < size {
		p = append(p, '.')
	}
	if len(tag) <= size-len(msg) {
		copy(p[size-len(tag):], tag)
	}
	return p
}

// Check validates opts before a run.
func (o Options) Check() error {
	switch {
	case len(o.Message) > MaxSize:
		return fmt.Errorf("message is %d bytes; at most %d fit in a datagram", len(o.Message), MaxSize)
	case o.Size < 0 || o.Size > MaxSize:
		return fmt.Errorf("size %d: want 0-%d bytes", o.Size, MaxSize)
	case o.Size != 0 && o.Size < len(o.Message):
		return fmt.Errorf("size %d is smaller than the message (%d bytes)", o.Size, len(o.Message))
	case o.Count < 0:
		return fmt.Errorf("count %d: want >= 0 (0 = until interrupted)", o.Count)
	case o.Interval < 0:
		return fmt.Errorf("interval %s: want >= 0", o.Interval)
	case o.Timeout <= 0:
		return fmt.Errorf("timeout %s: want > 0", o.Timeout)
	}
	return nil
}

// window is how many recent datagrams an echo is matched against; an echo
// of an older one counts as matching nothing sent.
const window = 64

// sent is what is known about one datagram.
type sent struct {
	payload []byte
	at      time.Time
	done    bool // outcome decided: echoed, corrupt or timed out
	echoed  bool // an intact echo was seen (in time or late)
}

// Run pings over conn until Count datagrams are done or ctx ends, writing
// lines to out, and returns the statistics; the summary is printed in
// either case. A datagram still waiting for its echo when ctx ends is not
// counted. The error is non-nil only for a failed Check.
func Run(ctx context.Context, conn Conn, opts Options, out io.Writer) (Stats, error) {
	var st Stats
	if err := opts.Check(); err != nil {
		return st, err
	}
	clk := opts.Clock
	if clk == nil {
		clk = realClock{}
	}
	r := &runner{conn: conn, opts: opts, clk: clk, out: out, st: &st}

	// Unblock a pending Read when ctx ends; the loop checks ctx after
	// every deadline it sets.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			_ = conn.SetReadDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()

	size := len(Payload(opts.Message, opts.Size, 1))
	fmt.Fprintf(out, "ECHO %s: %d bytes\n", opts.Target, size)
	r.loop(ctx)
	close(stop)
	wg.Wait()
	r.summary()
	return st, nil
}

type runner struct {
	conn Conn
	opts Options
	clk  Clock
	out  io.Writer
	st   *Stats
	seqs map[int]*sent // the last window datagrams, by seq
	last int           // the latest seq sent
	buf  []byte
}

func (r *runner) loop(ctx context.Context) {
	r.buf = make([]byte, MaxSize+1)
	r.seqs = map[int]*sent{}
	for seq := 1; r.opts.Count == 0 || seq <= r.opts.Count; seq++ {
		if ctx.Err() != nil {
			return
		}
		r.last = seq
		p := Payload(r.opts.Message, r.opts.Size, seq)
		s := &sent{payload: p, at: r.clk.Now()}
		r.seqs[seq] = s
		delete(r.seqs, seq-window)
		if _, err := r.conn.Write(p); err != nil {
			fmt.Fprintf(r.out, "seq=%d: send: %v\n", seq, err)
			s.done = true
			r.st.Sent++
			r.st.Lost++
		}
		replyBy := s.at.Add(r.opts.Timeout)
		nextAt := s.at.Add(r.opts.Interval)
		if r.opts.Count != 0 && seq == r.opts.Count {
			nextAt = s.at // the last one: done as soon as its outcome is known
		}
		for {
			now := r.clk.Now()
			if !s.done && !now.Before(replyBy) {
				fmt.Fprintf(r.out, "no echo for seq=%d within %s\n", seq, r.opts.Timeout)
				s.done = true
				r.st.Sent++
				r.st.Lost++
			}
			if s.done && !now.Before(nextAt) {
				break
			}
			deadline := nextAt
			if !s.done {
				deadline = replyBy
			}
			if err := r.conn.SetReadDeadline(deadline); err != nil {
				fmt.Fprintf(r.out, "seq=%d: %v\n", seq, err)
				return
			}
			if ctx.Err() != nil {
				return
			}
			n, err := r.conn.Read(r.buf)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				// e.g. ECONNREFUSED from an ICMP port unreachable (reported
				// once per ICMP error): the current datagram gets no echo.
				// The loop then waits out the interval as after an echo.
				if !s.done {
					fmt.Fprintf(r.out, "no echo for seq=%d: %s\n", seq, readError(err))
					s.done = true
					r.st.Sent++
					r.st.Lost++
				}
				continue
			}
			r.handle(seq, r.buf[:n], r.clk.Now())
		}
	}
}

// handle classifies one datagram received while seq is the latest sent.
func (r *runner) handle(seq int, got []byte, now time.Time) {
	cur := r.seqs[seq]
	// Newest first: the current datagram is the likeliest match.
	for i := seq; i > seq-window && i >= 1; i-- {
		s := r.seqs[i]
		if !bytes.Equal(got, s.payload) {
			continue
		}
		rtt := now.Sub(s.at)
		switch {
		case s.echoed:
			r.st.Duplicate++
			fmt.Fprintf(r.out, "%d bytes from %s: seq=%d duplicate\n", len(got), r.opts.Target, i)
		case s.done:
			s.echoed = true
			r.st.Late++
			fmt.Fprintf(r.out, "%d bytes from %s: seq=%d late, time=%s (after the %s timeout)\n",
				len(got), r.opts.Target, i, ms(rtt), r.opts.Timeout)
		default:
			s.echoed, s.done = true, true
			r.st.Sent++
			r.st.Received++
			r.st.rtt.add(rtt)
			fmt.Fprintf(r.out, "%d bytes from %s: seq=%d time=%s %s\n", len(got), r.opts.Target, i, ms(rtt), Quote(got))
		}
		return
	}
	// Matches nothing sent: a damaged echo, attributed to the datagram
	// being waited for.
	if cur.done {
		r.st.Unmatched++
		fmt.Fprintf(r.out, "%d bytes from %s: corrupt: matches no recent datagram (after seq=%d) %s\n", len(got), r.opts.Target, seq, Quote(got))
		return
	}
	cur.done = true
	r.st.Sent++
	r.st.Corrupt++
	fmt.Fprintf(r.out, "%d bytes from %s: seq=%d corrupt: %s %s\n", len(got), r.opts.Target, seq, diff(cur.payload, got), Quote(got))
}

// readError says why a read failed, shortly.
func readError(err error) string {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "connection refused (ICMP port unreachable: nothing serves this port)"
	}
	return err.Error()
}
