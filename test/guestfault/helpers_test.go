//go:build kechoguest

package guestfault

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kecho-dev/kecho/test/guestutil"
)

const echoPort = 5555

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

// load loads kecho with modprobe and the given parameters, after
// unloading any previous instance; the test's cleanup unloads it.
func load(t testing.TB, params ...string) {
	t.Helper()
	guestutil.UnloadWait(t, 30*time.Second)
	guestutil.MustRun(t, "modprobe", append([]string{guestutil.Module}, params...)...)
	t.Cleanup(func() { guestutil.UnloadWait(t, 30*time.Second) })
}

// settled waits until the counters stop moving (the socket is drained).
func settled(t testing.TB, quiet time.Duration) guestutil.Counters {
	t.Helper()
	prev := guestutil.ReadCounters(t)
	stable := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		c := guestutil.ReadCounters(t)
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
func conservation(t testing.TB, what string, d guestutil.Counters) {
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
		_, _ = guestutil.Run("ip", "link", "del", n.hostIf)
		_, _ = guestutil.Run("ip", "netns", "del", name)
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
		guestutil.MustRun(t, "ip", c...)
	}
	n.hostMAC, n.hostIndex = ifInfo(t, n.hostIf)
	guestutil.InNetns(t, name, func() error {
		n.peerMAC, n.peerIndex = ifInfo(t, n.peerIf)
		return nil
	})
	guestutil.MustRun(t, "ip", "neigh", "replace", n.forged4.String(), "lladdr", n.peerMAC.String(), "dev", n.hostIf, "nud", "permanent")
	guestutil.MustRun(t, "ip", "-6", "neigh", "replace", n.forged6.String(), "lladdr", n.peerMAC.String(), "dev", n.hostIf, "nud", "permanent")
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
		guestutil.InNetns(t, ns, open)
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
