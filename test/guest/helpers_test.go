//go:build kechoguest

package guest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kecho-dev/kecho/test/guestutil"
)

const echoPort = 5555

func TestMain(m *testing.M) {
	if os.Getenv("KECHO_VM") != "1" {
		fmt.Fprintln(os.Stderr, "these tests run inside the kecho VM only: go test -run TestModuleInGuest ./test/vm")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// release is the guest kernel's release.
func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return os.Getenv("KECHO_KVER")
	}
	return unix.ByteSliceToString(u.Release[:])
}

// modulePath is where the harness installed kecho.ko.
func modulePath() string {
	return filepath.Join("/lib/modules", release(), "updates", "kecho.ko")
}

// load (re)loads kecho with modprobe and the given parameters and unloads
// it when the test ends.
func load(t testing.TB, params ...string) {
	t.Helper()
	guestutil.Unload(t)
	guestutil.MustRun(t, "modprobe", append([]string{guestutil.Module}, params...)...)
	t.Cleanup(func() { guestutil.Unload(t) })
	if _, err := os.Stat(guestutil.SysModule + "/stats/rx_packets"); err != nil {
		t.Fatalf("kecho loaded but has no counters: %v", err)
	}
}

// expectCounters fails unless every named counter has the given value.
func expectCounters(t testing.TB, what string, got guestutil.Counters, want map[string]uint64) {
	t.Helper()
	for _, n := range guestutil.CounterNames {
		w, ok := want[n]
		if ok && got[n] != w {
			t.Errorf("%s: %s = %d, want %d (all: %s)", what, n, got[n], w, got)
		}
	}
}

// waitCounter polls until cond holds for the counters or the timeout
// passes, and returns the last snapshot. The echo work runs
// asynchronously, so counters settle a moment after the last datagram.
func waitCounter(t testing.TB, timeout time.Duration, cond func(guestutil.Counters) bool) guestutil.Counters {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := guestutil.ReadCounters(t)
		if cond(c) || time.Now().After(deadline) {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kmsg follows the kernel log from the moment it was opened.
type kmsg struct {
	fd int
}

func openKmsg(t testing.TB) *kmsg {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/kmsg: %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &kmsg{fd: fd}
}

// read returns the messages logged since the last read.
func (k *kmsg) read() []string {
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records overwritten before we read them
		}
		if err != nil || n <= 0 {
			return out
		}
		rec := string(buf[:n])
		if _, msg, ok := strings.Cut(rec, ";"); ok {
			// Continuation lines (" KEY=value") follow the message.
			msg, _, _ = strings.Cut(msg, "\n")
			out = append(out, msg)
		}
	}
}

// waitFor reads the kernel log until a message satisfies match or the
// timeout passes; it returns the message and everything it read.
func (k *kmsg) waitFor(timeout time.Duration, match func(string) bool) (string, []string) {
	var seen []string
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range k.read() {
			seen = append(seen, m)
			if match(m) {
				return m, seen
			}
		}
		if time.Now().After(deadline) {
			return "", seen
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenUDP opens an unconnected UDP socket with large buffers.
func listenUDP(t testing.TB, network string, laddr *net.UDPAddr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		t.Fatalf("listen %s %v: %v", network, laddr, err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

func udpAddr(ip string, port int) *net.UDPAddr {
	return &net.UDPAddr{IP: net.ParseIP(ip), Port: port}
}

// echo sends payload to dst and waits for the reply, checking it comes
// from dst.
func echo(t testing.TB, c *net.UDPConn, dst *net.UDPAddr, payload []byte, timeout time.Duration) []byte {
	t.Helper()
	if _, err := c.WriteToUDP(payload, dst); err != nil {
		t.Fatalf("send %d bytes to %v: %v", len(payload), dst, err)
	}
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no echo of %d bytes from %v within %v: %v", len(payload), dst, timeout, err)
	}
	if !from.IP.Equal(dst.IP) || from.Port != dst.Port {
		t.Fatalf("echo came from %v, want %v", from, dst)
	}
	return buf[:n]
}

// expectNoReply sends payload to dst and fails if anything comes back
// within wait.
func expectNoReply(t testing.TB, c *net.UDPConn, dst *net.UDPAddr, payload []byte, wait time.Duration) {
	t.Helper()
	if _, err := c.WriteToUDP(payload, dst); err != nil {
		t.Fatalf("send to %v: %v", dst, err)
	}
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFromUDP(buf)
	if err == nil {
		t.Fatalf("got %d bytes back from %v (%q); want no reply", n, from, buf[:min(n, 64)])
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("waiting for no reply: %v", err)
	}
}

// udpSockets counts the UDP sockets (IPv4 and IPv6) of this network
// namespace, and those bound to port. It reads /proc/thread-self/net:
// /proc/self/net follows the main thread, which inPeer may have left in
// the peer namespace.
func udpSockets(t testing.TB, port int) (n, bound int) {
	t.Helper()
	hexPort := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			n++
			if strings.HasSuffix(fields[1], hexPort) {
				bound++
			}
		}
	}
	return n, bound
}

// expectNothingLeft fails if kecho is loaded or more than holders
// sockets are bound to UDP 5555.
func expectNothingLeft(t testing.TB, holders ...int) {
	t.Helper()
	if guestutil.Loaded() {
		t.Errorf("%s exists", guestutil.SysModule)
	}
	want := 0
	if len(holders) > 0 {
		want = holders[0]
	}
	if _, bound := udpSockets(t, echoPort); bound != want {
		t.Errorf("%d sockets are bound to UDP port %d, want %d", bound, echoPort, want)
	}
}

// finitModule loads kecho.ko directly with finit_module(2) and returns
// the kernel's errno, unloading the module again if the load succeeded.
func finitModule(t testing.TB, params string) error {
	t.Helper()
	f, err := os.Open(modulePath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), params, 0)
	if err == nil {
		guestutil.Unload(t)
	}
	return err
}

// Peer network namespace: veth0 (10.77.0.1/24) in the root namespace,
// veth1 (10.77.0.2/24) in namespace "peer".
const (
	peerNS    = "peer"
	hostIP    = "10.77.0.1"
	peerIP    = "10.77.0.2"
	peerBcast = "10.77.0.255"
)

// setupPeer creates the peer namespace and the veth pair with iproute2.
func setupPeer(t testing.TB) {
	t.Helper()
	cmds := [][]string{
		{"netns", "add", peerNS},
		{"link", "add", "veth0", "type", "veth", "peer", "name", "veth1"},
		{"link", "set", "veth1", "netns", peerNS},
		{"addr", "add", hostIP + "/24", "dev", "veth0"},
		{"link", "set", "veth0", "up"},
		{"-n", peerNS, "addr", "add", peerIP + "/24", "dev", "veth1"},
		{"-n", peerNS, "link", "set", "veth1", "up"},
		{"-n", peerNS, "link", "set", "lo", "up"},
		{"-n", peerNS, "route", "add", "224.0.0.0/4", "dev", "veth1"},
	}
	t.Cleanup(func() {
		_, _ = guestutil.Run("ip", "link", "del", "veth0")
		_, _ = guestutil.Run("ip", "netns", "del", peerNS)
	})
	for _, c := range cmds {
		guestutil.MustRun(t, "ip", c...)
	}
}

// peerUDP opens a UDP socket in the peer namespace bound to laddr, with
// SO_BROADCAST when broadcast is set.
func peerUDP(t testing.TB, laddr *net.UDPAddr, broadcast bool) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	guestutil.InNetns(t, peerNS, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if broadcast {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", laddr.String())
		if err != nil {
			return fmt.Errorf("listen in %s on %v: %w", peerNS, laddr, err)
		}
		c = pc.(*net.UDPConn)
		return nil
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// meminfo returns the named /proc/meminfo values in KiB.
func meminfo(t testing.TB) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[name] = n
		}
	}
	return out
}
