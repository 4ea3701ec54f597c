//go:build kechoguest

package guestfault

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	modName  = "kecho"
	echoPort = 5555
	sysMod   = "/sys/module/kecho"
)

// guardedPorts are the source ports kecho must never answer, besides its
// own port.
var guardedPorts = []int{0, 7, 9, 13, 17, 19, 37}

func TestMain(m *testing.M) {
	if os.Getenv("KECHO_VM") != "1" {
		fmt.Fprintln(os.Stderr, "these tests run inside the kecho VM only: go test -run TestFaultInGuest ./test/fault")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// run runs a command and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
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

// unload removes kecho if it is loaded, waiting for a module that is still
// going away.
func unload(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for loaded() {
		out, err := run("rmmod", modName)
		if err == nil {
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("rmmod kecho: %v (%s)", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// load loads kecho with modprobe and the given parameters, after
// unloading any previous instance; the test's cleanup unloads it.
func load(t testing.TB, params ...string) {
	t.Helper()
	unload(t)
	mustRun(t, "modprobe", append([]string{modName}, params...)...)
	t.Cleanup(func() { unload(t) })
}

func setParam(t testing.TB, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(sysMod, "parameters", name), []byte(value), 0); err != nil {
		t.Fatalf("set parameter %s=%s: %v", name, value, err)
	}
}

// counters are kecho's stats/ files.
type counters map[string]uint64

func readCounters(t testing.TB) counters {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(sysMod, "stats"))
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	c := counters{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysMod, "stats", e.Name()))
		if err != nil {
			t.Fatalf("counter %s: %v", e.Name(), err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("counter %s: %q: %v", e.Name(), b, err)
		}
		c[e.Name()] = v
	}
	return c
}

func (c counters) sub(before counters) counters {
	d := counters{}
	for k, v := range c {
		d[k] = v - before[k]
	}
	return d
}

func (c counters) String() string {
	var b strings.Builder
	for _, k := range []string{"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drop_loop", "drop_bcast", "drop_ratelimit", "drop_csum", "tx_errors", "rx_errors"} {
		fmt.Fprintf(&b, "%s=%d ", k, c[k])
	}
	return strings.TrimSpace(b.String())
}

// settled waits until the counters stop moving (the socket is drained).
func settled(t testing.TB, quiet time.Duration) counters {
	t.Helper()
	prev := readCounters(t)
	stable := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		c := readCounters(t)
		if c["rx_packets"] != prev["rx_packets"] {
			prev, stable = c, time.Now()
			continue
		}
		if time.Since(stable) >= quiet {
			return c
		}
	}
	t.Fatalf("kecho's counters still moving after 60s: %v", prev)
	return nil
}

// conservation checks the identity documented in dkms/echo.c: once the
// socket is drained every datagram taken off it is in exactly one of the
// outcome counters.
func conservation(t testing.TB, what string, d counters) {
	t.Helper()
	out := d["drop_csum"] + d["drop_loop"] + d["drop_bcast"] + d["drop_ratelimit"] + d["tx_packets"] + d["tx_errors"]
	if d["rx_packets"] != out {
		t.Errorf("%s: rx_packets %d != drop_csum+drop_loop+drop_bcast+drop_ratelimit+tx_packets+tx_errors = %d (%v)", what, d["rx_packets"], out, d)
	}
}

// netns is a network namespace joined to the root namespace by a veth
// pair: host side <name>h in the root namespace, peer side <name>p inside.
type netns struct {
	name             string
	hostIf, peerIf   string
	host4, peer4     net.IP
	bcast4           net.IP
	host6, peer6     net.IP
	hostMAC          net.HardwareAddr
	peerMAC          net.HardwareAddr
	peerIndex        int // ifindex of peerIf inside the namespace
	hostIndex        int
	forged4, forged6 net.IP // unused addresses on the link that forged datagrams claim
}

// addNS creates namespace name with subnet 10.80.<idx>.0/24 and
// fd80:<idx>::/64 (MTU 1500), and a permanent neighbour entry that sends
// whatever the root namespace addresses to the forged addresses (.77,
// ::77) to the peer's MAC, where a sniffer sees it.
func addNS(t testing.TB, name string, idx int) *netns {
	t.Helper()
	n := &netns{
		name: name, hostIf: name + "h", peerIf: name + "p",
		host4: net.ParseIP(fmt.Sprintf("10.80.%d.1", idx)).To4(), peer4: net.ParseIP(fmt.Sprintf("10.80.%d.2", idx)).To4(),
		bcast4: net.ParseIP(fmt.Sprintf("10.80.%d.255", idx)).To4(),
		host6:  net.ParseIP(fmt.Sprintf("fd80:%d::1", idx)), peer6: net.ParseIP(fmt.Sprintf("fd80:%d::2", idx)),
		forged4: net.ParseIP(fmt.Sprintf("10.80.%d.77", idx)).To4(), forged6: net.ParseIP(fmt.Sprintf("fd80:%d::77", idx)),
	}
	t.Cleanup(func() {
		_, _ = run("ip", "link", "del", n.hostIf)
		_, _ = run("ip", "netns", "del", name)
	})
	for _, c := range [][]string{
		{"netns", "add", name},
		{"link", "add", n.hostIf, "mtu", "1500", "type", "veth", "peer", "name", n.peerIf, "mtu", "1500"},
		{"link", "set", n.peerIf, "netns", name},
		{"addr", "add", n.host4.String() + "/24", "dev", n.hostIf},
		{"-6", "addr", "add", n.host6.String() + "/64", "dev", n.hostIf, "nodad"},
		{"link", "set", n.hostIf, "up"},
		{"-n", name, "addr", "add", n.peer4.String() + "/24", "broadcast", n.bcast4.String(), "dev", n.peerIf},
		{"-n", name, "-6", "addr", "add", n.peer6.String() + "/64", "dev", n.peerIf, "nodad"},
		{"-n", name, "link", "set", n.peerIf, "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "route", "add", "224.0.0.0/4", "dev", n.peerIf},
		{"-n", name, "route", "add", "255.255.255.255/32", "dev", n.peerIf},
	} {
		mustRun(t, "ip", c...)
	}
	n.hostMAC, n.hostIndex = ifInfo(t, n.hostIf)
	inNS(t, name, func() error {
		n.peerMAC, n.peerIndex = ifInfo(t, n.peerIf)
		return nil
	})
	mustRun(t, "ip", "neigh", "replace", n.forged4.String(), "lladdr", n.peerMAC.String(), "dev", n.hostIf, "nud", "permanent")
	mustRun(t, "ip", "-6", "neigh", "replace", n.forged6.String(), "lladdr", n.peerMAC.String(), "dev", n.hostIf, "nud", "permanent")
	return n
}

func ifInfo(t testing.TB, name string) (net.HardwareAddr, int) {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("interface %s: %v", name, err)
	}
	return ifc.HardwareAddr, ifc.Index
}

// inNS runs fn on an OS thread that has joined namespace name; the thread
// is discarded afterwards. Sockets fn makes stay in that namespace and can
// be used from any goroutine.
func inNS(t testing.TB, name string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with the goroutine instead of
		// going back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// udpIn opens a UDP socket bound to laddr in namespace ns ("" = root) with
// large buffers and, if bcast, SO_BROADCAST.
func udpIn(t testing.TB, ns, network string, laddr *net.UDPAddr, bcast bool) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	open := func() error {
		var err error
		c, err = net.ListenUDP(network, laddr)
		if err != nil {
			return fmt.Errorf("listen %s %v in namespace %q: %w", network, laddr, ns, err)
		}
		_ = c.SetReadBuffer(8 << 20)
		_ = c.SetWriteBuffer(8 << 20)
		if bcast {
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			}); err != nil {
				return err
			}
			return serr
		}
		return nil
	}
	if ns == "" {
		if err := open(); err != nil {
			t.Fatal(err)
		}
	} else {
		inNS(t, ns, open)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpSocketsInUse is the UDP "inuse" figure of /proc/net/sockstat and
// sockstat6 (root namespace).
func udpSocketsInUse(t testing.TB) int {
	t.Helper()
	total := 0
	for _, f := range []string{"/proc/net/sockstat", "/proc/net/sockstat6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 3 && (fs[0] == "UDP:" || fs[0] == "UDP6:") && fs[1] == "inuse" {
				n, _ := strconv.Atoi(fs[2])
				total += n
			}
		}
	}
	return total
}

// slabTotals returns active objects per slab cache from /proc/slabinfo,
// after asking SLUB to shrink every cache: that also empties KASAN's
// quarantine of freed objects, which would otherwise count as active.
func slabTotals(t testing.TB) map[string]int64 {
	t.Helper()
	if shrink, _ := filepath.Glob("/sys/kernel/slab/*/shrink"); len(shrink) > 0 {
		for _, f := range shrink {
			_ = os.WriteFile(f, []byte("1"), 0)
		}
	}
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		t.Fatalf("/proc/slabinfo: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "slabinfo") {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = n
		}
	}
	return out
}

// cpuTicks returns busy and total jiffies from the "cpu" line of /proc/stat.
func cpuTicks(t testing.TB) (busy, total uint64) {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}
