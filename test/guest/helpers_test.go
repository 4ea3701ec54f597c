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
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	modName  = "kecho"
	echoPort = 5555
	sysMod   = "/sys/module/kecho"
)

// counterNames are the counters DESIGN.md promises under stats/.
var counterNames = []string{
	"rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
	"drop_loop", "drop_bcast", "drop_ratelimit", "tx_errors",
}

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

// run runs a command and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func loaded() bool {
	_, err := os.Stat(sysMod)
	return err == nil
}

// unload removes kecho if it is loaded and checks it is gone.
func unload(t testing.TB) {
	t.Helper()
	if !loaded() {
		return
	}
	mustRun(t, "rmmod", modName)
	if loaded() {
		t.Fatalf("%s still exists after rmmod", sysMod)
	}
}

// load (re)loads kecho with modprobe and the given parameters and unloads
// it when the test ends.
func load(t testing.TB, params ...string) {
	t.Helper()
	unload(t)
	mustRun(t, "modprobe", append([]string{modName}, params...)...)
	t.Cleanup(func() { unload(t) })
	if _, err := os.Stat(sysMod + "/stats/rx_packets"); err != nil {
		t.Fatalf("kecho loaded but has no counters: %v", err)
	}
}

// counters is a snapshot of /sys/module/kecho/stats.
type counters map[string]uint64

func readCounters(t testing.TB) counters {
	t.Helper()
	c := counters{}
	for _, n := range counterNames {
		b, err := os.ReadFile(filepath.Join(sysMod, "stats", n))
		if err != nil {
			t.Fatalf("counter %s: %v", n, err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("counter %s = %q: %v", n, b, err)
		}
		c[n] = v
	}
	return c
}

// sub returns c - before, counter by counter.
func (c counters) sub(before counters) counters {
	d := counters{}
	for k, v := range c {
		d[k] = v - before[k]
	}
	return d
}

func (c counters) String() string {
	var parts []string
	for _, n := range counterNames {
		parts = append(parts, fmt.Sprintf("%s=%d", n, c[n]))
	}
	return strings.Join(parts, " ")
}

// expectCounters fails unless every named counter has the given value.
func expectCounters(t testing.TB, what string, got counters, want map[string]uint64) {
	t.Helper()
	for _, n := range counterNames {
		w, ok := want[n]
		if ok && got[n] != w {
			t.Errorf("%s: %s = %d, want %d (all: %s)", what, n, got[n], w, got)
		}
	}
}

// waitCounter polls until cond holds for the counters or the timeout
// passes, and returns the last snapshot. The echo work runs
// asynchronously, so counters settle a moment after the last datagram.
func waitCounter(t testing.TB, timeout time.Duration, cond func(counters) bool) counters {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := readCounters(t)
		if cond(c) || time.Now().After(deadline) {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func param(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sysMod, "parameters", name))
	if err != nil {
		t.Fatalf("parameter %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

func setParam(t testing.TB, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(sysMod, "parameters", name), []byte(value), 0); err != nil {
		t.Fatalf("set parameter %s=%s: %v", name, value, err)
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
	if loaded() {
		t.Errorf("%s exists", sysMod)
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
		unload(t)
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
		_, _ = run("ip", "link", "del", "veth0")
		_, _ = run("ip", "netns", "del", peerNS)
	})
	for _, c := range cmds {
		mustRun(t, "ip", c...)
	}
}

// inPeer runs fn on an OS thread that has joined the peer namespace; the
// thread is discarded afterwards. Sockets made by fn stay in the peer
// namespace.
func inPeer(t testing.TB, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with the goroutine instead of
		// going back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+peerNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", peerNS, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// peerUDP opens a UDP socket in the peer namespace bound to laddr, with
// SO_BROADCAST when broadcast is set.
func peerUDP(t testing.TB, laddr *net.UDPAddr, broadcast bool) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inPeer(t, func() error {
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

// slabObjects returns the active objects of the named slab caches from
// /proc/slabinfo (nil if the kernel has none), after asking SLUB to shrink
// every cache: that releases empty per-CPU slabs and, on a KASAN kernel,
// empties the quarantine of freed objects, which otherwise count as
// active and look like a leak.
func slabObjects(t testing.TB, caches ...string) map[string]int64 {
	t.Helper()
	shrink, _ := filepath.Glob("/sys/kernel/slab/*/shrink")
	for _, f := range shrink {
		_ = os.WriteFile(f, []byte("1"), 0)
	}
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		t.Logf("no /proc/slabinfo (%v): only /proc/meminfo is compared", err)
		return nil
	}
	want := map[string]bool{}
	for _, c := range caches {
		want[c] = true
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && want[f[0]] {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = n
		}
	}
	return out
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
