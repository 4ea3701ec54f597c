package ping

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// ResolveError is a host that could not be resolved.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("cannot resolve %s: %v", e.Host, e.Err) }
func (e *ResolveError) Unwrap() error { return e.Err }

// Dial resolves host (an IPv4 or IPv6 literal, with or without brackets,
// or a name; the first address wins) and connects a UDP socket to it at
// port. It also returns how to name the target in output: "ADDR:PORT", or
// "NAME (ADDR:PORT)" for a name.
func Dial(ctx context.Context, r *net.Resolver, host string, port int) (*net.UDPConn, string, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	h := host
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	var addr netip.Addr
	if a, err := netip.ParseAddr(h); err == nil {
		addr = a
	} else {
		addrs, err := r.LookupNetIP(ctx, "ip", h)
		if err != nil {
			return nil, "", &ResolveError{Host: host, Err: err}
		}
		if len(addrs) == 0 {
			return nil, "", &ResolveError{Host: host, Err: fmt.Errorf("no address")}
		}
		addr = addrs[0]
	}
	ap := netip.AddrPortFrom(addr.Unmap(), uint16(port))
	target := ap.String()
	if h != addr.String() && h != addr.Unmap().String() {
		target = h + " (" + target + ")"
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, "", fmt.Errorf("connect to %s: %w", net.JoinHostPort(addr.String(), strconv.Itoa(port)), err)
	}
	return c, target, nil
}
