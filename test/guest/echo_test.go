//go:build kechoguest

package guest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/guestutil"
)

var kechoV4 = udpAddr("127.0.0.1", echoPort)

// The original demo: "hello world" comes back, and the kernel log shows
// who sent it, how long it was and what it said.
func TestHelloWorld(t *testing.T) {
	log := openKmsg(t)
	load(t)
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	got := echo(t, c, kechoV4, []byte("hello world"), 5*time.Second)
	if string(got) != "hello world" {
		t.Fatalf("echo = %q, want %q", got, "hello world")
	}
	src := c.LocalAddr().(*net.UDPAddr)
	want := fmt.Sprintf(`kecho: 127.0.0.1:%d len 11 "hello world"`, src.Port)
	line, seen := log.waitFor(5*time.Second, func(m string) bool { return strings.HasPrefix(m, want) })
	if line == "" {
		t.Fatalf("kernel log has no line starting %q; kecho logged:\n%s", want, strings.Join(seen, "\n"))
	}
	t.Logf("kernel log: %s", line)
	got2 := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["tx_packets"] >= 1 })
	expectCounters(t, "after one echo", got2, map[string]uint64{
		"rx_packets": 1, "rx_bytes": 11, "tx_packets": 1, "tx_bytes": 11,
		"drop_loop": 0, "drop_bcast": 0, "drop_ratelimit": 0, "tx_errors": 0,
	})
}

// echoSizes lists 0 bytes, the IPv4 maximum, and sizes around the
// boundaries in between (fragmentation, page sizes, powers of two).
var echoSizes = []int{
	0, 1, 2, 3, 7, 8, 63, 64, 65, 100, 127, 128, 255, 256, 511, 512, 1000, 1023, 1024,
	1400, 1471, 1472, 1473, 1500, 2048, 4095, 4096, 4097, 8192, 9000, 16384, 32767,
	32768, 50000, 65000, 65506, 65507,
}

// Every size from 0 to 65507 bytes comes back byte-identical.
func TestEchoSizes(t *testing.T) {
	load(t, "log_packets=N")
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	before := guestutil.ReadCounters(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var total uint64
	for _, n := range echoSizes {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		got := echo(t, c, kechoV4, payload, 5*time.Second)
		if !bytes.Equal(got, payload) {
			t.Errorf("size %d: echo differs (got %d bytes)", n, len(got))
		}
		total += uint64(n)
	}
	want := uint64(len(echoSizes))
	d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["tx_packets"]-before["tx_packets"] >= want }).Sub(before)
	expectCounters(t, "after the size sweep", d, map[string]uint64{
		"rx_packets": want, "tx_packets": want, "rx_bytes": total, "tx_bytes": total, "tx_errors": 0,
	})
}

// A datagram too big for IPv4 cannot be sent at all: the 65507 limit is
// the stack's, not kecho's.
func TestEchoOversizeRejectedBySender(t *testing.T) {
	load(t)
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	if _, err := c.WriteToUDP(make([]byte, 65508), kechoV4); err == nil {
		t.Fatal("sending 65508 bytes over IPv4 succeeded; the test's premise is wrong")
	}
}

// Several senders at a moderate rate: every datagram is echoed exactly
// once, and the counters equal what was sent.
func TestConcurrentSenders(t *testing.T) {
	load(t, "log_packets=N")
	const (
		senders = 4
		perSend = 500
		window  = 16 // datagrams in flight per sender
	)
	before := guestutil.ReadCounters(t)
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	var totalBytes [senders]uint64
	for s := 0; s < senders; s++ {
		c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
		wg.Add(1)
		go func(s int, c *net.UDPConn) {
			defer wg.Done()
			errs <- sendWindowed(c, kechoV4, uint32(s), perSend, window, &totalBytes[s])
		}(s, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var sum uint64
	for _, b := range totalBytes {
		sum += b
	}
	want := uint64(senders * perSend)
	d := waitCounter(t, 3*time.Second, func(c guestutil.Counters) bool { return c["tx_packets"]-before["tx_packets"] >= want }).Sub(before)
	expectCounters(t, "after the burst", d, map[string]uint64{
		"rx_packets": want, "tx_packets": want, "rx_bytes": sum, "tx_bytes": sum,
		"drop_loop": 0, "drop_bcast": 0, "drop_ratelimit": 0, "tx_errors": 0,
	})
}

// sendWindowed sends n sequence-numbered datagrams (sender id, sequence,
// padding of varying length) keeping at most window unanswered, and
// checks each comes back exactly once and intact.
func sendWindowed(c *net.UDPConn, dst *net.UDPAddr, id uint32, n, window int, bytesSent *uint64) error {
	seen := make([]int, n)
	mk := func(seq int) []byte {
		p := make([]byte, 8+seq%200)
		binary.BigEndian.PutUint32(p[0:], id)
		binary.BigEndian.PutUint32(p[4:], uint32(seq))
		for i := 8; i < len(p); i++ {
			p[i] = byte(seq + i)
		}
		return p
	}
	buf := make([]byte, 2048)
	sent, got := 0, 0
	for got < n {
		for sent < n && sent-got < window {
			p := mk(sent)
			if _, err := c.WriteToUDP(p, dst); err != nil {
				return fmt.Errorf("sender %d: send %d: %w", id, sent, err)
			}
			*bytesSent += uint64(len(p))
			sent++
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		m, _, err := c.ReadFromUDP(buf)
		if err != nil {
			var missing []int
			for i := 0; i < sent; i++ {
				if seen[i] == 0 {
					missing = append(missing, i)
				}
			}
			return fmt.Errorf("sender %d: %d of %d echoes back, then: %v; unanswered sequence numbers: %v", id, got, sent, err, missing)
		}
		if m < 8 || binary.BigEndian.Uint32(buf[0:]) != id {
			return fmt.Errorf("sender %d: foreign or short echo %x", id, buf[:min(m, 16)])
		}
		seq := int(binary.BigEndian.Uint32(buf[4:]))
		if seq >= sent {
			return fmt.Errorf("sender %d: echo of sequence %d that was never sent", id, seq)
		}
		if !bytes.Equal(buf[:m], mk(seq)) {
			return fmt.Errorf("sender %d: echo of sequence %d differs", id, seq)
		}
		seen[seq]++
		if seen[seq] > 1 {
			return fmt.Errorf("sender %d: sequence %d echoed %d times", id, seq, seen[seq])
		}
		got++
	}
	// Nothing more may arrive: a duplicate would show up now.
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if m, _, err := c.ReadFromUDP(buf); err == nil {
		return fmt.Errorf("sender %d: extra echo after all %d came back: %x", id, n, buf[:min(m, 16)])
	}
	return nil
}

// With bind_addr=:: kecho serves IPv6 on ::1 and IPv4 (as v4-mapped).
func TestIPv6(t *testing.T) {
	log := openKmsg(t)
	load(t, "bind_addr=::")
	if got := guestutil.Param(t, "bind_addr"); got != "::" {
		t.Errorf("bind_addr parameter = %q, want ::", got)
	}
	kechoV6 := udpAddr("::1", echoPort)

	t.Run("loopback_v6", func(t *testing.T) {
		c := listenUDP(t, "udp6", udpAddr("::1", 0))
		got := echo(t, c, kechoV6, []byte("hello over ipv6"), 5*time.Second)
		if string(got) != "hello over ipv6" {
			t.Fatalf("echo = %q", got)
		}
		want := fmt.Sprintf(`kecho: [::1]:%d len 15 "hello over ipv6"`, c.LocalAddr().(*net.UDPAddr).Port)
		if line, seen := log.waitFor(5*time.Second, func(m string) bool { return strings.HasPrefix(m, want) }); line == "" {
			t.Errorf("kernel log has no line starting %q; saw:\n%s", want, strings.Join(seen, "\n"))
		}
	})
	t.Run("sizes_v6", func(t *testing.T) {
		c := listenUDP(t, "udp6", udpAddr("::1", 0))
		for _, n := range []int{0, 1, 1232, 1452, 1453, 9000, 65507, 65527} {
			payload := bytes.Repeat([]byte{byte(n)}, n)
			if got := echo(t, c, kechoV6, payload, 5*time.Second); !bytes.Equal(got, payload) {
				t.Errorf("size %d over IPv6: echo differs (%d bytes)", n, len(got))
			}
		}
	})
	t.Run("ipv4_on_dual_stack", func(t *testing.T) {
		c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
		if got := echo(t, c, kechoV4, []byte("v4 to ::"), 5*time.Second); string(got) != "v4 to ::" {
			t.Fatalf("echo = %q", got)
		}
	})
	t.Run("v4_mapped_destination", func(t *testing.T) {
		// "udp" on [::] is a dual-stack socket (Go makes "udp6" v6-only).
		c := listenUDP(t, "udp", udpAddr("::", 0))
		mapped := udpAddr("::ffff:127.0.0.1", echoPort)
		if _, err := c.WriteToUDP([]byte("mapped"), mapped); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no echo to a v4-mapped sender: %v", err)
		}
		if string(buf[:n]) != "mapped" || !from.IP.Equal(net.ParseIP("127.0.0.1")) || from.Port != echoPort {
			t.Fatalf("echo %q from %v, want %q from ::ffff:127.0.0.1:%d", buf[:n], from, "mapped", echoPort)
		}
	})
}

// bind_addr=::1 serves IPv6 loopback only; IPv4 gets nothing.
func TestIPv6LoopbackOnly(t *testing.T) {
	load(t, "bind_addr=::1")
	c6 := listenUDP(t, "udp6", udpAddr("::1", 0))
	if got := echo(t, c6, udpAddr("::1", echoPort), []byte("six"), 5*time.Second); string(got) != "six" {
		t.Fatalf("echo = %q", got)
	}
	c4 := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	expectNoReply(t, c4, kechoV4, []byte("four"), 500*time.Millisecond)
}

// log_packets is writable at runtime: off, nothing is logged.
func TestLogPacketsRuntimeSwitch(t *testing.T) {
	load(t)
	guestutil.SetParam(t, "log_packets", "N")
	if got := guestutil.Param(t, "log_packets"); got != "N" {
		t.Fatalf("log_packets = %q after writing N", got)
	}
	log := openKmsg(t)
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	echo(t, c, kechoV4, []byte("quiet-payload"), 5*time.Second)
	if line, _ := log.waitFor(time.Second, func(m string) bool { return strings.Contains(m, "quiet-payload") }); line != "" {
		t.Errorf("log_packets=N but the kernel log has %q", line)
	}
	guestutil.SetParam(t, "log_packets", "Y")
	echo(t, c, kechoV4, []byte("loud-payload"), 5*time.Second)
	if line, seen := log.waitFor(5*time.Second, func(m string) bool { return strings.Contains(m, `"loud-payload"`) }); line == "" {
		t.Errorf("log_packets=Y but no line with the payload; saw:\n%s", strings.Join(seen, "\n"))
	}
}
