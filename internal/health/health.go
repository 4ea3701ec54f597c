// Package health probes the kecho module over UDP and counts failures.
//
// A probe is one datagram of a configured size filled with a fresh random
// nonce (crypto/rand), sent from a connected UDP socket to the module. It
// succeeds only when a byte-identical copy comes back within the timeout.
// Late echoes of earlier probes are recognised and ignored, and so is any
// other datagram; neither counts as success. A Tracker turns the stream of
// results into a consecutive-failure count against a threshold.
package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Clock tells the time; tests inject a fake one.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// RealClock is the system clock.
var RealClock Clock = realClock{}

// Limits of the payload size: at least MinPayload bytes of nonce, at most
// the largest UDP payload over IPv4.
const (
	MinPayload = 16
	MaxPayload = 65507
)

// recentProbes is how many earlier payloads are remembered to recognise
// their late echoes.
const recentProbes = 16

// Verdict is what a received datagram is, relative to the current probe.
type Verdict int

// Verdicts of Verify.
const (
	Match   Verdict = iota // byte-identical echo of the current probe
	Stale                  // echo of an earlier probe
	Foreign                // anything else
)

func (v Verdict) String() string { return [...]string{"match", "stale", "foreign"}[v] }

// Verify classifies reply against the probe payload sent and the payloads of
// earlier probes. Only a byte-identical copy of sent is a Match.
func Verify(sent, reply []byte, earlier [][]byte) Verdict {
	if len(sent) > 0 && bytes.Equal(sent, reply) {
		return Match
	}
	for _, e := range earlier {
		if len(e) > 0 && bytes.Equal(e, reply) {
			return Stale
		}
	}
	return Foreign
}

// Outcome is how a probe ended.
type Outcome string

// Outcomes, also the values of the "result" label in metrics.
const (
	OK       Outcome = "ok"       // a byte-identical echo came back
	Timeout  Outcome = "timeout"  // nothing (valid) came back in time
	Mismatch Outcome = "mismatch" // only datagrams that were not the echo came back
	Refused  Outcome = "refused"  // ICMP port unreachable: nothing listens
	Error    Outcome = "error"    // the probe could not be sent
)

// Outcomes lists every Outcome, for metrics.
var Outcomes = []Outcome{OK, Timeout, Mismatch, Refused, Error}

// Result is one probe's result.
type Result struct {
	Outcome Outcome
	Target  netip.AddrPort
	At      time.Time     // when the probe was sent
	RTT     time.Duration // for OK
	Timeout time.Duration
	Size    int
	// Stale and Mismatched count ignored datagrams (late echoes of earlier
	// probes, and others).
	Stale, Mismatched int
	Err               error // for Error and Refused
}

// OK reports whether the probe succeeded.
func (r Result) OK() bool { return r.Outcome == OK }

// Reason says in one line why the probe failed; empty for OK.
func (r Result) Reason() string {
	switch r.Outcome {
	case OK:
		return ""
	case Timeout:
		return fmt.Sprintf("no echo from %s within %s", r.Target, r.Timeout)
	case Mismatch:
		return fmt.Sprintf("echo from %s differs from the probe", r.Target)
	case Refused:
		return fmt.Sprintf("nothing listens on UDP %s (port unreachable)", r.Target)
	}
	if r.Err != nil {
		return fmt.Sprintf("probe to %s failed: %v", r.Target, r.Err)
	}
	return fmt.Sprintf("probe to %s failed", r.Target)
}

// Config configures a Prober.
type Config struct {
	Target      netip.AddrPort
	Timeout     time.Duration
	PayloadSize int
	Clock       Clock     // nil: RealClock
	Rand        io.Reader // nil: crypto/rand
}

// Prober sends probes to one target from one socket. It is not safe for
// concurrent use.
type Prober struct {
	cfg     Config
	conn    *net.UDPConn
	earlier [][]byte
	spare   []byte // the payload buffer that fell out of earlier, for reuse
	buf     []byte
}

// NewProber checks cfg and opens the probe socket.
func NewProber(cfg Config) (*Prober, error) {
	if !cfg.Target.IsValid() || cfg.Target.Port() == 0 {
		return nil, fmt.Errorf("probe target %q is not an address and port", cfg.Target)
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("probe timeout %s is not positive", cfg.Timeout)
	}
	if cfg.PayloadSize < MinPayload || cfg.PayloadSize > MaxPayload {
		return nil, fmt.Errorf("probe payload size %d is outside %d-%d", cfg.PayloadSize, MinPayload, MaxPayload)
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(cfg.Target))
	if err != nil {
		return nil, fmt.Errorf("open probe socket to %s: %w", cfg.Target, err)
	}
	return &Prober{cfg: cfg, conn: conn, buf: make([]byte, MaxPayload+1)}, nil
}

// Target is where probes go.
func (p *Prober) Target() netip.AddrPort { return p.cfg.Target }

// Close closes the probe socket.
func (p *Prober) Close() error { return p.conn.Close() }

// Probe sends one probe and waits for its echo until the timeout or ctx
// ends.
func (p *Prober) Probe(ctx context.Context) Result {
	r := Result{Target: p.cfg.Target, Timeout: p.cfg.Timeout, Size: p.cfg.PayloadSize}
	payload := p.spare
	p.spare = nil
	if len(payload) != p.cfg.PayloadSize {
		payload = make([]byte, p.cfg.PayloadSize)
	}
	if _, err := io.ReadFull(p.cfg.Rand, payload); err != nil {
		r.Outcome, r.Err = Error, fmt.Errorf("random nonce: %w", err)
		return r
	}
	defer p.remember(payload)

	deadline := time.Now().Add(p.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		r.Outcome, r.Err = Error, err
		return r
	}
	// Disarm the deadline's timer once the probe is over, so that it does
	// not wake the process up between probes.
	defer p.conn.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { p.conn.SetReadDeadline(time.Now()) })
	defer stop()

	r.At = p.cfg.Clock.Now()
	if _, err := p.conn.Write(payload); err != nil {
		r.Outcome, r.Err = classifyErr(err)
		return r
	}
	for {
		n, err := p.conn.Read(p.buf)
		if err != nil {
			if isTimeout(err) {
				r.Outcome = Timeout
				if r.Mismatched > 0 {
					r.Outcome = Mismatch
				}
				if ctx.Err() != nil {
					r.Outcome, r.Err = Error, ctx.Err()
				}
				return r
			}
			r.Outcome, r.Err = classifyErr(err)
			return r
		}
		switch Verify(payload, p.buf[:n], p.earlier) {
		case Match:
			r.RTT = p.cfg.Clock.Now().Sub(r.At)
			r.Outcome = OK
			return r
		case Stale:
			r.Stale++
		default:
			r.Mismatched++
		}
	}
}

func (p *Prober) remember(payload []byte) {
	if len(p.earlier) >= recentProbes {
		p.spare = p.earlier[0]
		copy(p.earlier, p.earlier[1:])
		p.earlier = p.earlier[:recentProbes-1]
	}
	p.earlier = append(p.earlier, payload)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func classifyErr(err error) (Outcome, error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Refused, err
	}
	return Error, err
}

// Tracker counts probe results against a failure threshold.
type Tracker struct {
	Threshold int // consecutive failures that make the module unhealthy

	OK, Total   uint64 // probes that succeeded, all probes
	Consecutive int    // failures since the last success
	Last        Result // the latest result
	LastOK      Result // the latest successful result
}

// Observe records r and reports whether this result made the failure count
// reach the threshold (exactly once per run of failures).
func (t *Tracker) Observe(r Result) (crossed bool) {
	t.Total++
	t.Last = r
	if r.OK() {
		t.OK++
		t.Consecutive = 0
		t.LastOK = r
		return false
	}
	t.Consecutive++
	return t.Consecutive == t.threshold()
}

// Failing reports whether the failure count has reached the threshold.
func (t *Tracker) Failing() bool { return t.Consecutive >= t.threshold() }

func (t *Tracker) threshold() int {
	if t.Threshold < 1 {
		return 1
	}
	return t.Threshold
}
