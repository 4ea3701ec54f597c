//go:build kechoguest

package guestfault

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/guestutil"
)

// userEcho is a user-space UDP echo server in a namespace: another echo
// service on the network that kecho could ping-pong with.
type userEcho struct {
	c    *net.UDPConn
	got  atomic.Int64 // datagrams received from kecho
	stop atomic.Bool
	done chan struct{}
}

func startUserEcho(t *testing.T, ns string, addr *net.UDPAddr) *userEcho {
	t.Helper()
	u := &userEcho{c: udpIn(t, ns, "udp4", addr, false), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		buf := make([]byte, 70000)
		for {
			n, from, err := u.c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if from.Port == echoPort {
				u.got.Add(1)
			}
			if !u.stop.Load() {
				_, _ = u.c.WriteToUDP(buf[:n], from)
			}
		}
	}()
	t.Cleanup(func() { u.c.Close(); <-u.done })
	return u
}

// Forged and real datagrams from another echo service's port never start
// a ping-pong: kecho drops them (drop_loop), the other side never hears
// from kecho. The user-space echo on 5555 in the peer namespace is what a
// second kecho on another host looks like.
func TestNoPingPong(t *testing.T) {
	ns := addNS(t, "rf", 2)
	load(t)
	host := &net.UDPAddr{IP: ns.host4, Port: echoPort}
	raw := openRawLink(t, ns.name, ns.peerIndex)

	for _, port := range append(guardedPorts[1:], echoPort) {
		t.Run(fmt.Sprintf("peer_port_%d", port), func(t *testing.T) {
			u := startUserEcho(t, ns.name, &net.UDPAddr{IP: ns.peer4, Port: port})
			before := guestutil.ReadCounters(t)
			// The other service starts it itself...
			if _, err := u.c.WriteToUDP([]byte("are you an echo?"), host); err != nil {
				t.Fatal(err)
			}
			// ...or an attacker forges it, from the service's own
			// address and from another address on the link.
			for _, src := range []net.IP{ns.peer4, ns.forged4} {
				if err := raw.send(udpSpec{src: src, dst: ns.host4, sport: uint16(port), dport: echoPort, payload: []byte("forged start of a ping-pong")}, ns.hostMAC, 1500); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(3 * time.Second)
			d := settled(t, 300*time.Millisecond).Sub(before)
			if n := u.got.Load(); n != 0 {
				t.Errorf("the echo service on port %d received %d datagrams from kecho in 3s", port, n)
			}
			if d["rx_packets"] != 3 || d["drop_loop"] != 3 || d["tx_packets"] != 0 {
				t.Errorf("want 3 datagrams in, 3 drop_loop, nothing out; counters moved by %v", d)
			}
			conservation(t, "ping-pong", d)
		})
	}
}

// An echo service on a port kecho does not know (here 6000) does loop
// with kecho once a forged datagram starts it: that is inherent to UDP
// echo and what SECURITY.md warns about. max_pps ends such a loop: the
// looping datagram is the one that gets rate-dropped.
func TestLoopEndedByMaxPPS(t *testing.T) {
	ns := addNS(t, "lp", 3)
	load(t, "log_packets=0")
	raw := openRawLink(t, ns.name, ns.peerIndex)
	u := startUserEcho(t, ns.name, &net.UDPAddr{IP: ns.peer4, Port: 6000})
	start := func() {
		t.Helper()
		if err := raw.send(udpSpec{src: ns.peer4, dst: ns.host4, sport: 6000, dport: echoPort, payload: []byte("loop")}, ns.hostMAC, 1500); err != nil {
			t.Fatal(err)
		}
	}

	// Uncapped: measure the loop, then break it on the far side.
	before := guestutil.ReadCounters(t)
	start()
	time.Sleep(2 * time.Second)
	uncapped := u.got.Load()
	u.stop.Store(true)
	d := settled(t, 500*time.Millisecond).Sub(before)
	t.Logf("FIGURE loop: without max_pps one forged datagram bounced %d times in 2s between kecho and an echo on port 6000 (%.0f/s)", uncapped, float64(uncapped)/2)
	if uncapped < 10 {
		t.Errorf("expected a running loop without max_pps (it is what max_pps is for), saw %d exchanges in 2s: was the setup wrong?", uncapped)
	}
	conservation(t, "uncapped loop", d)

	// Capped: the loop dies within one window.
	const maxPPS = 50
	guestutil.SetParam(t, "max_pps", fmt.Sprint(maxPPS))
	u.got.Store(0)
	u.stop.Store(false)
	time.Sleep(1100 * time.Millisecond) // a fresh rate window
	before = guestutil.ReadCounters(t)
	start()
	time.Sleep(3 * time.Second)
	mid := u.got.Load()
	time.Sleep(2 * time.Second)
	end := u.got.Load()
	d = settled(t, 500*time.Millisecond).Sub(before)
	t.Logf("FIGURE loop: with max_pps=%d the same loop stopped after %d exchanges (drop_ratelimit %d)", maxPPS, end, d["drop_ratelimit"])
	if end > maxPPS {
		t.Errorf("with max_pps=%d kecho answered the loop %d times", maxPPS, end)
	}
	if end != mid {
		t.Errorf("the loop was still running 3s after it started (%d then %d exchanges)", mid, end)
	}
	if d["drop_ratelimit"] != 1 {
		t.Errorf("the loop should end with exactly one drop_ratelimit, counters moved by %v", d)
	}
	conservation(t, "capped loop", d)
}

// flood sends small datagrams at about rate per second from senders
// sockets in namespace ns for dur and counts the echoes that come back.
func flood(t *testing.T, ns *netns, senders, rate int, dur time.Duration) (sent, echoed int64) {
	t.Helper()
	var wg sync.WaitGroup
	var s, e atomic.Int64
	dst := &net.UDPAddr{IP: ns.host4, Port: echoPort}
	for i := 0; i < senders; i++ {
		c := udpIn(t, ns.name, "udp4", &net.UDPAddr{IP: ns.peer4}, false)
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := c.ReadFromUDP(buf); err != nil {
					return
				}
				e.Add(1)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 64)
			per := time.Duration(int64(time.Second) * int64(senders) / int64(rate))
			next := time.Now()
			for end := time.Now().Add(dur); time.Now().Before(end); {
				if _, err := c.WriteToUDP(payload, dst); err == nil {
					s.Add(1)
				}
				next = next.Add(per)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second)
	return s.Load(), e.Load()
}

// Under a flood, max_pps bounds the echoes and the CPU spent.
func TestMaxPPSFlood(t *testing.T) {
	ns := addNS(t, "fl", 4)
	load(t, "log_packets=0")
	const (
		rate    = 3000
		dur     = 4 * time.Second
		maxPPS  = 200
		senders = 4
	)
	measure := func(name string) (sent, echoed int64, d guestutil.Counters, busy float64, span time.Duration) {
		b0, t0 := cpuTicks(t)
		before := guestutil.ReadCounters(t)
		start := time.Now()
		sent, echoed = flood(t, ns, senders, rate, dur)
		d = settled(t, 300*time.Millisecond).Sub(before)
		span = time.Since(start)
		b1, t1 := cpuTicks(t)
		busy = float64(b1-b0) / float64(t1-t0)
		t.Logf("FIGURE flood %s: %d datagrams sent in %v, %d echoed back, counters %v, CPU busy %.0f%%", name, sent, dur, echoed, d, busy*100)
		conservation(t, name, d)
		return
	}
	sent0, echoed0, d0, busy0, _ := measure("max_pps=0")
	if d0["tx_packets"] != d0["rx_packets"] || d0["drop_ratelimit"] != 0 {
		t.Errorf("without max_pps every datagram that arrived should be echoed: %v", d0)
	}
	// What the senders' own sockets manage to read back depends on the
	// guest's speed (a debug kernel drops many at the receivers under
	// this flood); kecho's side is the counters above.
	if echoed0 == 0 {
		t.Errorf("without max_pps none of %d echoes came back", sent0)
	}

	guestutil.SetParam(t, "max_pps", fmt.Sprint(maxPPS))
	time.Sleep(1100 * time.Millisecond)
	sent1, echoed1, d1, busy1, span := measure(fmt.Sprintf("max_pps=%d", maxPPS))
	// kecho may still be draining its socket after the senders stop (a
	// slow debug kernel lags by seconds), so the bound counts the
	// one-second windows from the first datagram until the counters
	// settled, not only those of the flood.
	windows := int64(span/time.Second) + 2
	if bound := maxPPS * windows; echoed1 > bound || int64(d1["tx_packets"]) > bound {
		t.Errorf("max_pps=%d over %v (counters settled after %v): %d echoes came back, kecho sent %d; at most %d allowed",
			maxPPS, dur, span.Round(time.Millisecond), echoed1, d1["tx_packets"], bound)
	}
	if d1["drop_ratelimit"] == 0 || int64(d1["drop_ratelimit"]) < sent1/2 {
		t.Errorf("max_pps=%d: drop_ratelimit %d for %d datagrams sent", maxPPS, d1["drop_ratelimit"], sent1)
	}
	// Answers cost CPU (the echo, its transmission and the sender's
	// receive); capped, that cost is gone.
	if busy1 > busy0*1.25+0.05 {
		t.Errorf("CPU busy %.0f%% with max_pps=%d against %.0f%% without: the cap does not bound the CPU spent", busy1*100, maxPPS, busy0*100)
	}
}

// A datagram whose forged source is the subnet's broadcast address (a
// smurf-style reflection: the echo would reach every host on the subnet)
// passes the stack's martian checks with rp_filter off. kecho must not
// answer it and, as dkms/echo.c documents for drop_bcast ("to (or from) a
// broadcast or multicast address"), count it in drop_bcast.
func TestForgedBroadcastSource(t *testing.T) {
	ns := addNS(t, "fb", 5)
	load(t)
	raw := openRawLink(t, ns.name, ns.peerIndex)
	sniff := openSniffer(t, ns.name, ns.peerIndex)
	before := guestutil.ReadCounters(t)
	for _, port := range []uint16{6000, 6001, 6002} {
		if err := raw.send(udpSpec{src: ns.bcast4, dst: ns.host4, sport: port, dport: echoPort, payload: []byte("reflect me to the whole subnet")}, ns.hostMAC, 1500); err != nil {
			t.Fatal(err)
		}
	}
	d := settled(t, 500*time.Millisecond).Sub(before)
	time.Sleep(time.Second)
	for len(sniff.out) > 0 {
		if p := <-sniff.out; p.sport == echoPort {
			t.Errorf("kecho answered a datagram from the broadcast address: %d bytes to %v:%d", len(p.payload), p.dst, p.dport)
		}
	}
	if d["rx_packets"] != 3 || d["tx_packets"] != 0 {
		t.Errorf("want 3 datagrams in and no echo; counters moved by %v", d)
	}
	if d["drop_bcast"] != 3 {
		t.Errorf("datagrams from the subnet broadcast address %v: drop_bcast moved by %d, want 3 (they went to: %v)", ns.bcast4, d["drop_bcast"], d)
	}
	conservation(t, "forged broadcast source", d)
}
