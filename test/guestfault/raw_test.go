//go:build kechoguest

package guestfault

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kecho-dev/kecho/test/guestutil"
)

// Raw datagrams: hand-built IPv4/IPv6 + UDP packets, fragmented by hand
// when they exceed the link MTU, sent with an AF_PACKET socket on the
// peer side of a veth pair so that the root namespace receives exactly
// these bytes (forged sources, bad checksums, odd UDP lengths).

// csumMode says how the UDP checksum of a raw datagram is set.
type csumMode int

const (
	csumGood csumMode = iota
	csumBad
	csumZero // "no checksum": legal on IPv4, rejected by IPv6
)

// udpSpec is one raw datagram.
type udpSpec struct {
	src, dst     net.IP
	sport, dport uint16
	payload      []byte
	csum         csumMode
	// trailer is extra bytes after the UDP datagram, inside the IP
	// payload (the UDP length does not cover them); short makes the UDP
	// length claim more than the IP payload holds.
	trailer []byte
	short   bool
}

func sum16(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// udpBytes builds the UDP header and payload (plus trailer) for u.
func (u udpSpec) udpBytes() []byte {
	ulen := 8 + len(u.payload)
	b := make([]byte, ulen, ulen+len(u.trailer))
	binary.BigEndian.PutUint16(b[0:], u.sport)
	binary.BigEndian.PutUint16(b[2:], u.dport)
	claim := ulen
	if u.short {
		claim = ulen + 64
	}
	binary.BigEndian.PutUint16(b[4:], uint16(claim))
	copy(b[8:], u.payload)
	var s uint32
	if u.dst.To4() != nil {
		s = sum16(u.src.To4(), 0)
		s = sum16(u.dst.To4(), s)
		s += 17 + uint32(claim)
	} else {
		s = sum16(u.src.To16(), 0)
		s = sum16(u.dst.To16(), s)
		s += 17 + uint32(claim)
	}
	c := fold(sum16(b, s))
	if c == 0 {
		c = 0xffff
	}
	switch u.csum {
	case csumBad:
		c ^= 0x0100
		if c == 0 {
			c = 0x0200
		}
	case csumZero:
		c = 0
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return append(b, u.trailer...)
}

// packets returns the link-layer payloads (IP packets or fragments, each
// at most mtu bytes) and the EtherType for u.
func (u udpSpec) packets(mtu int) ([][]byte, uint16) {
	l4 := u.udpBytes()
	id := fragID.Add(1)
	// The destination decides the family: a source may be v4-mapped
	// inside a native IPv6 packet.
	if u.dst.To4() != nil {
		return frag4(u.src.To4(), u.dst.To4(), uint16(id), l4, mtu), unix.ETH_P_IP
	}
	return frag6(u.src.To16(), u.dst.To16(), id, l4, mtu), unix.ETH_P_IPV6
}

func ip4Header(src, dst net.IP, id uint16, total int, off int, more bool) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(total))
	binary.BigEndian.PutUint16(h[4:], id)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	h[8] = 64
	h[9] = unix.IPPROTO_UDP
	copy(h[12:], src)
	copy(h[16:], dst)
	binary.BigEndian.PutUint16(h[10:], fold(sum16(h, 0)))
	return h
}

func frag4(src, dst net.IP, id uint16, l4 []byte, mtu int) [][]byte {
	if 20+len(l4) <= mtu {
		return [][]byte{append(ip4Header(src, dst, id, 20+len(l4), 0, false), l4...)}
	}
	chunk := (mtu - 20) &^ 7
	var out [][]byte
	for off := 0; off < len(l4); off += chunk {
		end := min(off+chunk, len(l4))
		out = append(out, append(ip4Header(src, dst, id, 20+end-off, off, end < len(l4)), l4[off:end]...))
	}
	return out
}

func ip6Header(src, dst net.IP, next byte, plen int) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(plen))
	h[6] = next
	h[7] = 64
	copy(h[8:], src)
	copy(h[24:], dst)
	return h
}

func frag6(src, dst net.IP, id uint32, l4 []byte, mtu int) [][]byte {
	if 40+len(l4) <= mtu {
		return [][]byte{append(ip6Header(src, dst, unix.IPPROTO_UDP, len(l4)), l4...)}
	}
	chunk := (mtu - 40 - 8) &^ 7
	var out [][]byte
	for off := 0; off < len(l4); off += chunk {
		end := min(off+chunk, len(l4))
		fh := make([]byte, 8)
		fh[0] = unix.IPPROTO_UDP
		fo := uint16(off)
		if end < len(l4) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		p := append(ip6Header(src, dst, 44, 8+end-off), fh...)
		out = append(out, append(p, l4[off:end]...))
	}
	return out
}

// rawLink sends raw IP packets out of one interface with AF_PACKET
// (SOCK_DGRAM: the kernel adds the Ethernet header for the given MAC).
type rawLink struct {
	fd      int
	ifindex int
}

// openRawLink opens the sender on interface ifname of namespace ns.
func openRawLink(t testing.TB, ns string, ifindex int) *rawLink {
	t.Helper()
	r := &rawLink{ifindex: ifindex}
	guestutil.InNetns(t, ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		r.fd = fd
		return nil
	})
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

// send sends u to the link-layer address dst, fragmenting at mtu.
func (r *rawLink) send(u udpSpec, dst net.HardwareAddr, mtu int) error {
	pkts, proto := u.packets(mtu)
	sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: r.ifindex, Halen: 6}
	copy(sa.Addr[:], dst)
	for _, p := range pkts {
		for {
			err := unix.Sendto(r.fd, p, 0, sa)
			if err == unix.ENOBUFS || err == unix.EAGAIN {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				return fmt.Errorf("AF_PACKET send of %d bytes: %w", len(p), err)
			}
			break
		}
	}
	return nil
}

// fragID numbers the raw datagrams' fragments in sequence, so that two
// of them in reassembly at once never share an ID. (Fragmented raw
// datagrams claim sources that no kernel socket uses, so they cannot
// collide with the kernel's IDs either; see fragSource.)
var fragID = func() *atomic.Uint32 {
	var a atomic.Uint32
	a.Store(rand.Uint32())
	return &a
}()

// fragSource keeps src for a datagram that fits the MTU and otherwise
// returns the namespace's forged address of the same family.
func fragSource(ns *netns, src net.IP, payload, mtu int) net.IP {
	if src.To4() != nil && 28+payload > mtu {
		return ns.forged4
	}
	if src.To4() == nil && 48+payload > mtu {
		return ns.forged6
	}
	return src
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sniffed is one UDP datagram seen on a link.
type sniffed struct {
	src, dst     net.IP
	sport, dport uint16
	payload      []byte
}

// sniffer reads every IPv4/IPv6 UDP packet that arrives on an interface
// (not the ones it sends). It does not reassemble: fragments are counted
// in frags and otherwise ignored.
type sniffer struct {
	fd    int
	out   chan sniffed
	frags int
}

func openSniffer(t testing.TB, ns string, ifindex int) *sniffer {
	t.Helper()
	s := &sniffer{out: make(chan sniffed, 1<<16)}
	guestutil.InNetns(t, ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET sniffer: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind sniffer: %w", err)
		}
		tv := unix.Timeval{Usec: 200000}
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		s.fd = fd
		return nil
	})
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 70000)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(s.fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if d, ok, frag := parseUDP(buf[:n]); frag {
				s.frags++
			} else if ok {
				s.out <- d
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
		unix.Close(s.fd)
	})
	return s
}

// parseUDP parses an unfragmented IPv4 or IPv6 UDP packet.
func parseUDP(p []byte) (d sniffed, ok, frag bool) {
	if len(p) < 1 {
		return d, false, false
	}
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return d, false, false
		}
		ihl := int(p[0]&0xf) * 4
		if p[9] != unix.IPPROTO_UDP {
			return d, false, false
		}
		if binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
			return d, false, true
		}
		total := int(binary.BigEndian.Uint16(p[2:]))
		if total > len(p) || ihl > total {
			return d, false, false
		}
		d.src, d.dst = net.IP(append([]byte(nil), p[12:16]...)), net.IP(append([]byte(nil), p[16:20]...))
		l4 = p[ihl:total]
	case 6:
		if len(p) < 40 {
			return d, false, false
		}
		if p[6] == 44 {
			return d, false, true
		}
		if p[6] != unix.IPPROTO_UDP {
			return d, false, false
		}
		plen := int(binary.BigEndian.Uint16(p[4:]))
		if 40+plen > len(p) {
			return d, false, false
		}
		d.src, d.dst = net.IP(append([]byte(nil), p[8:24]...)), net.IP(append([]byte(nil), p[24:40]...))
		l4 = p[40 : 40+plen]
	default:
		return d, false, false
	}
	if len(l4) < 8 {
		return d, false, false
	}
	d.sport, d.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	ulen := int(binary.BigEndian.Uint16(l4[4:]))
	if ulen < 8 || ulen > len(l4) {
		return d, false, false
	}
	d.payload = append([]byte(nil), l4[8:ulen]...)
	return d, true, false
}
