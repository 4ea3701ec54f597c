//go:build kechoguest

package guest

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kecho-dev/kecho/test/guestutil"
)

// A sender in another network namespace, over a veth pair: the
// non-loopback path. Its echoes come back; its broadcasts and multicasts
// do not, and neither does a datagram from kecho's own port.
func TestPeerNamespace(t *testing.T) {
	setupPeer(t)
	load(t)
	kechoHost := udpAddr(hostIP, echoPort)

	t.Run("echo_over_veth", func(t *testing.T) {
		c := peerUDP(t, udpAddr(peerIP, 0), false)
		before := guestutil.ReadCounters(t)
		for _, msg := range []string{"hello from the peer", "", string(make([]byte, 1472)), string(make([]byte, 8000))} {
			if got := echo(t, c, kechoHost, []byte(msg), 5*time.Second); string(got) != msg {
				t.Errorf("echo of %d bytes differs (%d bytes)", len(msg), len(got))
			}
		}
		d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["tx_packets"]-before["tx_packets"] >= 4 }).Sub(before)
		expectCounters(t, "after 4 echoes over veth", d, map[string]uint64{"rx_packets": 4, "tx_packets": 4, "drop_bcast": 0, "drop_loop": 0})
	})

	t.Run("broadcast_not_answered", func(t *testing.T) {
		c := peerUDP(t, udpAddr(peerIP, 0), true)
		before := guestutil.ReadCounters(t)
		expectNoReply(t, c, udpAddr(peerBcast, echoPort), []byte("broadcast"), time.Second)
		d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["drop_bcast"] > before["drop_bcast"] }).Sub(before)
		expectCounters(t, "after a subnet broadcast", d, map[string]uint64{"drop_bcast": 1, "tx_packets": 0})
	})

	t.Run("multicast_not_answered", func(t *testing.T) {
		c := peerUDP(t, udpAddr(peerIP, 0), false)
		before := guestutil.ReadCounters(t)
		expectNoReply(t, c, udpAddr("224.0.0.1", echoPort), []byte("multicast"), time.Second)
		d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["drop_bcast"] > before["drop_bcast"] }).Sub(before)
		expectCounters(t, "after a multicast to all hosts", d, map[string]uint64{"drop_bcast": 1, "tx_packets": 0})
	})

	t.Run("own_port_not_answered", func(t *testing.T) {
		// The peer namespace has no kecho, so 5555 is free there: this is
		// what a second echo server would send.
		c := peerUDP(t, udpAddr(peerIP, echoPort), false)
		before := guestutil.ReadCounters(t)
		expectNoReply(t, c, kechoHost, []byte("ping-pong?"), time.Second)
		d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["drop_loop"] > before["drop_loop"] }).Sub(before)
		expectCounters(t, "after a datagram from port 5555", d, map[string]uint64{"drop_loop": 1, "tx_packets": 0})
	})
}

// Datagrams from the classic small services' ports are never answered.
func TestLoopGuardServicePorts(t *testing.T) {
	load(t)
	ports := []int{7, 9, 13, 17, 19, 37}
	before := guestutil.ReadCounters(t)
	for _, p := range ports {
		c := listenUDP(t, "udp4", udpAddr("127.0.0.1", p))
		expectNoReply(t, c, kechoV4, []byte("are you an echo server?"), 300*time.Millisecond)
	}
	d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["drop_loop"]-before["drop_loop"] >= uint64(len(ports)) }).Sub(before)
	expectCounters(t, "after datagrams from ports 7 9 13 17 19 37", d, map[string]uint64{"drop_loop": uint64(len(ports)), "tx_packets": 0})

	// A neighbouring port is served normally.
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 8))
	if got := echo(t, c, kechoV4, []byte("port 8 is fine"), 5*time.Second); string(got) != "port 8 is fine" {
		t.Fatalf("echo = %q", got)
	}
}

// A datagram with source port 0 (only a raw socket can send one) is
// counted as a loop drop and not answered.
func TestLoopGuardSourcePortZero(t *testing.T) {
	load(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	payload := []byte("from port zero")
	pkt := make([]byte, 20+8+len(payload))
	pkt[0] = 0x45                                         // IPv4, 20-byte header
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt))) // total length
	pkt[8] = 64                                           // TTL
	pkt[9] = unix.IPPROTO_UDP
	copy(pkt[12:16], net.IPv4(127, 0, 0, 1).To4())
	copy(pkt[16:20], net.IPv4(127, 0, 0, 1).To4())
	binary.BigEndian.PutUint16(pkt[20:], 0)        // source port 0
	binary.BigEndian.PutUint16(pkt[22:], echoPort) // destination
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	// UDP checksum 0: none, allowed over IPv4. The kernel fills in the IP
	// header checksum.
	copy(pkt[28:], payload)
	before := guestutil.ReadCounters(t)
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("send raw datagram: %v", err)
	}
	d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool { return c["drop_loop"] > before["drop_loop"] }).Sub(before)
	// Give a (wrong) echo time to happen before checking it did not.
	time.Sleep(300 * time.Millisecond)
	d = guestutil.ReadCounters(t).Sub(before)
	expectCounters(t, "after a datagram from source port 0", d, map[string]uint64{"drop_loop": 1, "tx_packets": 0})
}

// max_pps, written at runtime, caps the echoes per second; the rest is
// dropped and counted in drop_ratelimit. 0 lifts the cap again.
func TestMaxPPS(t *testing.T) {
	load(t, "log_packets=N")
	const limit = 100
	guestutil.SetParam(t, "max_pps", "100")
	if got := guestutil.Param(t, "max_pps"); got != "100" {
		t.Fatalf("max_pps = %q after writing 100", got)
	}
	c := listenUDP(t, "udp4", udpAddr("127.0.0.1", 0))
	before := guestutil.ReadCounters(t)
	const flood = 600
	start := time.Now()
	for i := 0; i < flood; i++ {
		if _, err := c.WriteToUDP([]byte("flood"), kechoV4); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%10 == 9 {
			time.Sleep(2 * time.Millisecond) // spread over about a second, don't overflow the socket
		}
	}
	elapsed := time.Since(start)
	// Collect echoes until none arrive for half a second.
	echoes := 0
	buf := make([]byte, 64)
	for {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
		echoes++
	}
	d := waitCounter(t, 2*time.Second, func(c guestutil.Counters) bool {
		dd := c.Sub(before)
		return dd["tx_packets"]+dd["drop_ratelimit"] >= dd["rx_packets"]
	}).Sub(before)
	// At most one second's worth per started second of sending, plus one
	// second of burst allowance.
	bound := uint64(limit * (int(elapsed/time.Second) + 2))
	t.Logf("sent %d in %v: rx=%d echoes=%d tx=%d drop_ratelimit=%d (bound %d)",
		flood, elapsed.Round(time.Millisecond), d["rx_packets"], echoes, d["tx_packets"], d["drop_ratelimit"], bound)
	if d["rx_packets"] < flood*9/10 {
		t.Errorf("kecho received only %d of %d datagrams; the test flooded too hard to judge max_pps", d["rx_packets"], flood)
	}
	if d["tx_packets"] > bound {
		t.Errorf("tx_packets = %d with max_pps=%d over %v: more than %d", d["tx_packets"], limit, elapsed, bound)
	}
	if uint64(echoes) != d["tx_packets"] {
		t.Errorf("received %d echoes but tx_packets = %d", echoes, d["tx_packets"])
	}
	if d["tx_packets"]+d["drop_ratelimit"] != d["rx_packets"] {
		t.Errorf("tx_packets %d + drop_ratelimit %d != rx_packets %d", d["tx_packets"], d["drop_ratelimit"], d["rx_packets"])
	}
	if d["drop_ratelimit"] == 0 {
		t.Errorf("drop_ratelimit = 0 after %d datagrams with max_pps=%d", flood, limit)
	}

	guestutil.SetParam(t, "max_pps", "0")
	before = guestutil.ReadCounters(t)
	for i := 0; i < 300; i++ {
		if got := echo(t, c, kechoV4, []byte("uncapped"), 5*time.Second); string(got) != "uncapped" {
			t.Fatalf("echo %d = %q", i, got)
		}
	}
	d = guestutil.ReadCounters(t).Sub(before)
	expectCounters(t, "after 300 echoes with max_pps=0", d, map[string]uint64{"tx_packets": 300, "drop_ratelimit": 0})
}
