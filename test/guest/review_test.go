//go:build kechoguest

package guest

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kecho-dev/kecho/test/guestutil"
)

// rawUDP6 builds an IPv6 packet carrying one UDP datagram from src:sport
// to dst:dport, with a correct UDP checksum (IPv6 requires one).
func rawUDP6(src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	ulen := 8 + len(payload)
	pkt := make([]byte, 40+ulen)
	pkt[0] = 0x60 // version 6
	binary.BigEndian.PutUint16(pkt[4:], uint16(ulen))
	pkt[6] = unix.IPPROTO_UDP
	pkt[7] = 64 // hop limit
	copy(pkt[8:24], src.To16())
	copy(pkt[24:40], dst.To16())
	u := pkt[40:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	copy(u[8:], payload)

	// Pseudo-header (source, destination, length, next header) + UDP.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(pkt[8:40])
	sum += uint32(ulen) + unix.IPPROTO_UDP
	add(u)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	csum := ^uint16(sum)
	if csum == 0 {
		csum = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], csum)
	return pkt
}

// sendRaw6 sends a complete IPv6 packet through a raw socket (IPPROTO_RAW
// implies IPV6_HDRINCL), so that its source address can be anything.
func sendRaw6(t *testing.T, pkt []byte, dst net.IP) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw IPv6 socket: %v", err)
	}
	defer unix.Close(fd)
	var sa unix.SockaddrInet6
	copy(sa.Addr[:], dst.To16())
	if err := unix.Sendto(fd, pkt, 0, &sa); err != nil {
		t.Fatalf("send raw IPv6 packet: %v", err)
	}
}

// A forged IPv6 datagram whose source is a bogus address must not be
// echoed: the stack accepts "::" and a v4-mapped source in a native IPv6
// packet, and an echo to [::]:P is sent to [::1]:P (the BSD rule in
// udpv6_sendmsg), one to ::ffff:a.b.c.d leaves as IPv4. Without the guard
// a datagram from [::]:P reached a service bound to [::1]:P, which is not
// reachable from outside otherwise: it is counted in drop_loop instead.
func TestBogusIPv6SourceNotReflected(t *testing.T) {
	cases := []struct {
		name     string
		src      net.IP
		network  string // where the reflected echo would arrive
		listenOn string
	}{
		{"unspecified", net.IPv6unspecified, "udp6", "::1"},
		{"v4_mapped", net.ParseIP("::ffff:127.0.0.1"), "udp4", "127.0.0.1"},
	}
	for _, bind := range []string{"::", "::1"} {
		for _, tc := range cases {
			t.Run(strings.ReplaceAll(bind, ":", "_")+"/"+tc.name, func(t *testing.T) {
				load(t, "bind_addr="+bind)
				victim := listenUDP(t, tc.network, udpAddr(tc.listenOn, 0))
				vport := uint16(victim.LocalAddr().(*net.UDPAddr).Port)
				payload := []byte("reflect me to loopback")
				before := guestutil.ReadCounters(t)
				sendRaw6(t, rawUDP6(tc.src, net.IPv6loopback, vport, echoPort, payload), net.IPv6loopback)
				d := waitCounter(t, 3*time.Second, func(c guestutil.Counters) bool {
					dd := c.Sub(before)
					return dd["rx_packets"] >= 1 &&
						dd["drop_loop"]+dd["tx_packets"]+dd["tx_errors"] >= 1
				}).Sub(before)
				if d["rx_packets"] != 1 {
					t.Fatalf("kecho did not receive the forged datagram from [%v]:%d (counters %s); the guest kernel dropped it, so this test proves nothing", tc.src, vport, d)
				}
				buf := make([]byte, 128)
				_ = victim.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if n, from, err := victim.ReadFromUDP(buf); err == nil {
					t.Errorf("forged datagram from [%v]:%d was reflected to %v %s:%d: %q from %v",
						tc.src, vport, tc.network, tc.listenOn, vport, buf[:n], from)
				} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("reading the victim socket: %v", err)
				}
				d = guestutil.ReadCounters(t).Sub(before)
				expectCounters(t, "after a datagram from a bogus IPv6 source", d,
					map[string]uint64{"drop_loop": 1, "tx_packets": 0, "tx_errors": 0})

				// And the server still answers real senders.
				c := listenUDP(t, "udp6", udpAddr("::1", 0))
				if got := echo(t, c, udpAddr("::1", echoPort), []byte("real"), 5*time.Second); string(got) != "real" {
					t.Fatalf("echo = %q", got)
				}
			})
		}
	}
}

// Every bad value is EINVAL, as DESIGN.md says, also one that only
// overflows (the stock uint parser says ERANGE), at load time and when
// written at run time; a rejected write keeps the old value.
func TestParamOutOfRange(t *testing.T) {
	guestutil.Unload(t)
	for _, p := range []string{"max_pps=4294967296", "max_pps=99999999999999999999"} {
		t.Run(strings.ReplaceAll(p, "=", "_"), func(t *testing.T) {
			log := openKmsg(t)
			out, err := guestutil.Run("modprobe", guestutil.Module, p)
			if err == nil {
				guestutil.Unload(t)
				t.Fatalf("modprobe kecho %s succeeded", p)
			}
			if !strings.Contains(out, "Invalid argument") {
				t.Errorf("modprobe kecho %s failed, but not with EINVAL: %s", p, strings.TrimSpace(out))
			}
			expectNothingLeft(t)
			if err := finitModule(t, p); !errors.Is(err, unix.EINVAL) {
				t.Errorf("finit_module(%q) = %v, want EINVAL", p, err)
			}
			expectNothingLeft(t)
			if line, seen := log.waitFor(2*time.Second, func(m string) bool {
				return strings.HasPrefix(m, "kecho: ") && strings.Contains(m, "max_pps")
			}); line == "" {
				t.Errorf("no kernel log line from kecho naming max_pps; saw:\n%s", strings.Join(seen, "\n"))
			}
		})
	}

	load(t, "max_pps=7")
	for _, v := range []string{"4294967296", "lots", "-1"} {
		err := os.WriteFile(filepath.Join(guestutil.SysModule, "parameters", "max_pps"), []byte(v), 0)
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("writing max_pps=%s at run time: %v, want EINVAL", v, err)
		}
		if got := guestutil.Param(t, "max_pps"); got != "7" {
			t.Errorf("max_pps = %q after the rejected write of %s, want 7", got, v)
		}
	}
	guestutil.SetParam(t, "max_pps", "4294967295")
	if got := guestutil.Param(t, "max_pps"); got != "4294967295" {
		t.Errorf("max_pps = %q after writing 4294967295", got)
	}

	// A bare bool parameter still means Y.
	load(t, "log_packets")
	if got := guestutil.Param(t, "log_packets"); got != "Y" {
		t.Errorf("log_packets = %q after loading with a bare log_packets, want Y", got)
	}
	guestutil.SetParam(t, "log_packets", "n")
	if got := guestutil.Param(t, "log_packets"); got != "N" {
		t.Errorf("log_packets = %q after writing n, want N", got)
	}
}

// A datagram forged from a subnet-directed broadcast address (here lo's
// 127.255.255.255, sent through a raw socket) is a broadcast drop, as
// echo.c documents ("to (or from) a broadcast address"), not an echo
// attempt that the stack then refuses (EACCES without SO_BROADCAST) and
// that would show up as a tx error.
func TestBroadcastSourceIsDropBcast(t *testing.T) {
	load(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	payload := []byte("from a broadcast source")
	pkt := make([]byte, 20+8+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_UDP
	copy(pkt[12:16], net.IPv4(127, 255, 255, 255).To4())
	copy(pkt[16:20], net.IPv4(127, 0, 0, 1).To4())
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], echoPort)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload) // UDP checksum 0: none, allowed over IPv4
	before := guestutil.ReadCounters(t)
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("send raw datagram: %v", err)
	}
	d := waitCounter(t, 3*time.Second, func(c guestutil.Counters) bool {
		dd := c.Sub(before)
		return dd["rx_packets"] >= 1 && dd["drop_bcast"]+dd["tx_packets"]+dd["tx_errors"] >= 1
	}).Sub(before)
	if d["rx_packets"] != 1 {
		t.Fatalf("kecho did not receive the datagram from 127.255.255.255 (counters %s); this test proves nothing", d)
	}
	time.Sleep(200 * time.Millisecond)
	d = guestutil.ReadCounters(t).Sub(before)
	expectCounters(t, "after a datagram from 127.255.255.255", d,
		map[string]uint64{"drop_bcast": 1, "tx_packets": 0, "tx_errors": 0})
}

// An IPv6 datagram forged from outside with one of the host's own
// addresses as its source is dropped (drop_loop): its echo would go to that
// address over lo, to whatever listens on the sender's port there. The
// host's own datagrams from that same address (which arrive over lo) are
// still answered.
func TestSpoofedOwnIPv6SourceNotReflected(t *testing.T) {
	setupPeer(t)
	const host6, peer6 = "fd77::1", "fd77::2"
	guestutil.MustRun(t, "ip", "addr", "add", host6+"/64", "dev", "veth0", "nodad")
	guestutil.MustRun(t, "ip", "-n", peerNS, "addr", "add", peer6+"/64", "dev", "veth1", "nodad")
	load(t, "bind_addr=::")

	// The peer's own IPv6 works, so a drop below is kecho's doing.
	guestutil.InNetns(t, peerNS, func() error {
		c, err := net.ListenUDP("udp6", udpAddr(peer6, 0))
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.WriteToUDP([]byte("v6 over veth"), udpAddr(host6, echoPort)); err != nil {
			return err
		}
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != "v6 over veth" {
			return errors.New("no IPv6 echo over veth: " + errString(err))
		}
		return nil
	})

	victim := listenUDP(t, "udp6", udpAddr(host6, 0))
	vport := uint16(victim.LocalAddr().(*net.UDPAddr).Port)
	before := guestutil.ReadCounters(t)
	pkt := rawUDP6(net.ParseIP(host6), net.ParseIP(host6), vport, echoPort, []byte("spoofed self"))
	guestutil.InNetns(t, peerNS, func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var sa unix.SockaddrInet6
		copy(sa.Addr[:], net.ParseIP(host6).To16())
		return unix.Sendto(fd, pkt, 0, &sa)
	})
	d := waitCounter(t, 3*time.Second, func(c guestutil.Counters) bool {
		dd := c.Sub(before)
		return dd["rx_packets"] >= 1 && dd["drop_loop"]+dd["tx_packets"]+dd["tx_errors"] >= 1
	}).Sub(before)
	if d["rx_packets"] != 1 {
		t.Fatalf("kecho did not receive the datagram forged from %s (counters %s); this test proves nothing", host6, d)
	}
	buf := make([]byte, 64)
	_ = victim.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, from, err := victim.ReadFromUDP(buf); err == nil {
		t.Errorf("datagram forged from [%s]:%d was reflected to the local listener: %q from %v", host6, vport, buf[:n], from)
	}
	d = guestutil.ReadCounters(t).Sub(before)
	expectCounters(t, "after a datagram forged from the host's own address", d,
		map[string]uint64{"drop_loop": 1, "tx_packets": 0, "tx_errors": 0})

	// The host itself, from the same address, is answered.
	if got := echo(t, victim, udpAddr(host6, echoPort), []byte("really me"), 5*time.Second); string(got) != "really me" {
		t.Fatalf("echo = %q", got)
	}
}

func errString(err error) string {
	if err == nil {
		return "wrong payload"
	}
	return err.Error()
}
