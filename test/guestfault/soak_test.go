//go:build kechoguest

package guestfault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/guestutil"
)

// The soak: kechod runs kecho while several namespaces flood it with a
// mix of datagrams, and faults are injected one after another until the
// configured time is up: a config rewrite that changes the port followed
// by SIGHUP, a config that is rejected on SIGHUP, kill -9 of kechod and a
// restart, and rmmod of kecho behind kechod's back. Throughout, no echo
// may come back corrupted or twice. At the end kecho answers on the
// configured port, kechod is healthy (state file, `kechod check` exit 0),
// no UDP sockets or slab objects have piled up, and (checked by the
// harness) the kernel logged no report.

const kechodBin = "/usr/bin/kechod"

func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("KECHO_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 10*time.Second {
			t.Fatalf("KECHO_SOAK_DURATION=%q: want a duration of at least 10s", s)
		}
		return d
	}
	return 2 * time.Minute
}

const soakConfig = `module:
  port: %d
  log_packets: false
health:
  interval: 1s
  timeout: 500ms
  failure_threshold: 3
  recovery: reload
log:
  level: info
`

// kechodProc is one `kechod run`.
type kechodProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startKechod(t *testing.T, cfg string, log *guestutil.SyncBuffer) *kechodProc {
	t.Helper()
	k := &kechodProc{cmd: exec.Command(kechodBin, "run", "--config", cfg), done: make(chan struct{})}
	k.cmd.Stderr = log
	k.cmd.Stdout = log
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("start kechod: %v", err)
	}
	go func() { k.err = k.cmd.Wait(); close(k.done) }()
	return k
}

func (k *kechodProc) alive() bool {
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// daemonState is the part of /run/kechod/state.json the soak looks at.
type daemonState struct {
	State  string `json:"state"`
	PID    int    `json:"pid"`
	Module struct {
		Loaded bool              `json:"loaded"`
		Params map[string]string `json:"params"`
	} `json:"module"`
}

func readState() (daemonState, error) {
	var s daemonState
	b, err := os.ReadFile("/run/kechod/state.json")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// waitHealthy waits until kechod k reports healthy with kecho on port.
func waitHealthy(k *kechodProc, port int, timeout time.Duration) error {
	pid := k.cmd.Process.Pid
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !k.alive() {
			return fmt.Errorf("kechod exited: %v", k.err)
		}
		s, err := readState()
		b, perr := os.ReadFile(filepath.Join(guestutil.SysModule, "parameters", "port"))
		switch {
		case err != nil:
			last = err.Error()
		case perr != nil:
			last = "kecho not loaded: " + perr.Error()
		case s.PID == pid && s.State == "healthy" && strings.TrimSpace(string(b)) == fmt.Sprint(port):
			return nil
		default:
			last = fmt.Sprintf("state %q pid %d (want %d), kecho port %s (want %d)", s.State, s.PID, pid, strings.TrimSpace(string(b)), port)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kechod not healthy on port %d within %v: %s", port, timeout, last)
}

// soakFlooder sends a mix from one namespace and checks every echo.
type soakFlooder struct {
	c       *net.UDPConn
	guard   *net.UDPConn // bound to port 7: must never hear anything
	bc      *net.UDPConn
	ns      *netns
	mu      sync.Mutex
	want    map[uint64][32]byte
	seen    map[uint64]bool
	sent    atomic.Int64 // to the port kechod was configured with at the time
	stale   atomic.Int64 // to the other port
	echoed  atomic.Int64
	bad     []string
	silentN atomic.Int64
}

func (f *soakFlooder) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bad) < 10 {
		f.bad = append(f.bad, fmt.Sprintf("flooder %s: ", f.ns.name)+fmt.Sprintf(format, args...))
	}
}

func (f *soakFlooder) read() {
	buf := make([]byte, 70000)
	for {
		n, _, err := f.c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 8 {
			f.problem("%d-byte echo: all soak datagrams are 8 bytes or more", n)
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		f.mu.Lock()
		d, ok := f.want[seq]
		switch {
		case !ok:
			f.mu.Unlock()
			f.problem("echo of unknown datagram %d", seq)
			continue
		case f.seen[seq]:
			f.mu.Unlock()
			f.problem("datagram %d echoed twice", seq)
			continue
		case sha256.Sum256(buf[:n]) != d:
			f.mu.Unlock()
			f.problem("datagram %d (%d bytes) echoed with other bytes", seq, n)
			continue
		}
		f.seen[seq] = true
		delete(f.want, seq)
		f.mu.Unlock()
		f.echoed.Add(1)
	}
}

// run floods until ctx ends: mostly to the current port, one datagram in
// ten to the other one (nobody serves it; the echoes must not come from
// there either).
func (f *soakFlooder) run(ctx context.Context, seed uint64, ports []int, current *atomic.Int64, rate int) {
	r := rand.New(rand.NewPCG(seed, 7))
	per := time.Second / time.Duration(rate)
	var seq uint64
	for ctx.Err() == nil {
		port := int(current.Load())
		stale := r.IntN(10) == 0
		if stale {
			port = ports[0] + ports[1] - port
		}
		switch k := r.IntN(10); {
		case k == 0:
			_, _ = f.guard.WriteToUDP([]byte("from port 7"), &net.UDPAddr{IP: f.ns.host4, Port: port})
		case k == 1:
			_, _ = f.bc.WriteToUDP([]byte("broadcast"), &net.UDPAddr{IP: f.ns.bcast4, Port: port})
		default:
			n := 8 + r.IntN(1500)
			if r.IntN(20) == 0 {
				n = 8 + r.IntN(20000)
			}
			p := randPayload(r, n)
			seq++
			binary.BigEndian.PutUint64(p, seq)
			f.mu.Lock()
			f.want[seq] = sha256.Sum256(p)
			f.mu.Unlock()
			if _, err := f.c.WriteToUDP(p, &net.UDPAddr{IP: f.ns.host4, Port: port}); err == nil {
				if stale {
					f.stale.Add(1)
				} else {
					f.sent.Add(1)
				}
			}
		}
		time.Sleep(per)
	}
}

func silentCount(c *net.UDPConn, n *atomic.Int64) {
	buf := make([]byte, 70000)
	for {
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			return
		}
		n.Add(1)
	}
}

// probeEcho sends one datagram to port from the root namespace and waits
// for its echo.
func probeEcho(port int, timeout time.Duration) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer c.Close()
	msg := []byte(fmt.Sprintf("soak probe %d", time.Now().UnixNano()))
	buf := make([]byte, 256)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDP(msg, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if bytes.Equal(buf[:n], msg) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo on port %d within %v", port, timeout)
}

func TestSoak(t *testing.T) {
	if _, err := os.Stat(kechodBin); err != nil {
		t.Fatalf("%s is missing: the soak runs from test/fault, which installs it", kechodBin)
	}
	dur := soakDuration(t)
	guestutil.UnloadWait(t, 30*time.Second)
	t.Cleanup(func() { guestutil.UnloadWait(t, 30*time.Second) })
	var nss []*netns
	for i := 0; i < 3; i++ {
		nss = append(nss, addNS(t, fmt.Sprintf("sk%d", i), 11+i))
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "kechod.yaml")
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	writeCfg := func(port int) {
		t.Helper()
		if err := os.WriteFile(cfg+".new", []byte(fmt.Sprintf(soakConfig, port)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".new", cfg); err != nil {
			t.Fatal(err)
		}
	}
	ports := []int{5555, 5556}
	port := ports[0]
	var current atomic.Int64
	current.Store(int64(port))
	writeCfg(port)
	log := &guestutil.SyncBuffer{Max: 4 << 20}
	k := startKechod(t, cfg, log)
	t.Cleanup(func() {
		if k.alive() {
			k.cmd.Process.Kill()
			<-k.done
		}
		if t.Failed() {
			t.Logf("kechod's log (last part):\n%s", lastN(log.String(), 60))
		}
	})
	if err := waitHealthy(k, port, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// Baseline, with kechod healthy and nothing else running.
	time.Sleep(2 * time.Second)
	sock0 := udpSocketsInUse(t)
	slab0 := guestutil.SlabObjects(t)

	ctx, cancel := context.WithCancel(context.Background())
	var fl []*soakFlooder
	var wg sync.WaitGroup
	for i, ns := range nss {
		f := &soakFlooder{ns: ns, want: map[uint64][32]byte{}, seen: map[uint64]bool{},
			c:     udpIn(t, ns.name, "udp4", &net.UDPAddr{IP: ns.peer4}, false),
			guard: udpIn(t, ns.name, "udp4", &net.UDPAddr{IP: ns.peer4, Port: 7}, false),
			bc:    udpIn(t, ns.name, "udp4", &net.UDPAddr{IP: ns.peer4}, true)}
		go f.read()
		go silentCount(f.guard, &f.silentN)
		go silentCount(f.bc, &f.silentN)
		fl = append(fl, f)
		wg.Add(1)
		go func() { defer wg.Done(); f.run(ctx, uint64(i)+uint64(time.Now().UnixNano()), ports, &current, 150) }()
	}

	faults := map[string]int{}
	start := time.Now()
	var failures []string
	for i := 0; time.Since(start) < dur; i++ {
		time.Sleep(4 * time.Second)
		var err error
		switch i % 4 {
		case 0: // port change through SIGHUP
			port = ports[(i/4+1)%2]
			writeCfg(port)
			current.Store(int64(port))
			k.cmd.Process.Signal(syscall.SIGHUP)
			faults["reload with a port change (SIGHUP)"]++
			err = waitHealthy(k, port, 60*time.Second)
		case 1: // a rejected config keeps the old one
			if werr := os.WriteFile(cfg, []byte("module:\n  port: 70000\n"), 0o644); werr != nil {
				t.Fatal(werr)
			}
			k.cmd.Process.Signal(syscall.SIGHUP)
			faults["rejected config (SIGHUP)"]++
			time.Sleep(2 * time.Second)
			if !k.alive() {
				err = fmt.Errorf("kechod exited after a rejected reload: %v", k.err)
			} else {
				err = waitHealthy(k, port, 60*time.Second)
			}
			writeCfg(port)
		case 2: // kill -9 and restart
			k.cmd.Process.Kill()
			<-k.done
			faults["kill -9 of kechod and restart"]++
			k = startKechod(t, cfg, log)
			err = waitHealthy(k, port, 60*time.Second)
		case 3: // rmmod behind kechod's back
			_, rerr := guestutil.Run("rmmod", guestutil.Module)
			if rerr != nil {
				err = rerr
				break
			}
			faults["rmmod behind kechod's back"]++
			err = waitHealthy(k, port, 60*time.Second)
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("after fault %d (%v): %v", i+1, time.Since(start).Round(time.Second), err))
			if len(failures) > 3 {
				break
			}
		}
		if !k.alive() {
			failures = append(failures, fmt.Sprintf("kechod died: %v", k.err))
			break
		}
	}
	cancel()
	wg.Wait()
	time.Sleep(2 * time.Second)
	soakTime := time.Since(start)
	for _, f := range failures {
		t.Error(f)
	}

	// The end state.
	if err := waitHealthy(k, port, 60*time.Second); err != nil {
		t.Error(err)
	}
	if err := probeEcho(port, 10*time.Second); err != nil {
		t.Errorf("kecho does not answer at the end: %v", err)
	}
	out, err := exec.Command(kechodBin, "check", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Errorf("kechod check: %v: %s", err, out)
	} else {
		t.Logf("kechod check: %s", strings.TrimSpace(string(out)))
	}

	var sent, stale, echoed, silent int64
	for _, f := range fl {
		f.c.Close()
		f.guard.Close()
		f.bc.Close()
		for _, b := range f.bad {
			t.Error(b)
		}
		sent += f.sent.Load()
		stale += f.stale.Load()
		echoed += f.echoed.Load()
		silent += f.silentN.Load()
	}
	if silent != 0 {
		t.Errorf("%d datagrams came back to port 7 or to broadcast senders", silent)
	}
	// Faults lose what is in flight (and a port change everything sent
	// to the old port until kecho is back): most must still come back.
	if echoed < sent*6/10 {
		t.Errorf("only %d of %d soak datagrams sent to the configured port were echoed", echoed, sent)
	}

	// Leaks: the flood's sockets are closed, kechod's probe socket is
	// per probe; what remains must be what was there at the start.
	time.Sleep(3 * time.Second)
	sock1 := udpSocketsInUse(t)
	if sock1 > sock0+1 {
		t.Errorf("UDP sockets in use: %d before the soak, %d after", sock0, sock1)
	}
	slab1 := guestutil.SlabObjects(t)
	const tol = 256 // SlabObjects has shrunk the caches (and KASAN's quarantine)
	for _, c := range []string{"skbuff_head_cache", "skbuff_fclone_cache", "UDP", "UDPv6", "sock_inode_cache", "kmalloc-64k", "kmalloc-8k", "kmalloc-4k", "kmalloc-2k", "kmalloc-1k", "kmalloc-512"} {
		if d := slab1[c] - slab0[c]; d > tol {
			t.Errorf("slab %s: %d active objects before the soak, %d after (+%d)", c, slab0[c], slab1[c], d)
		}
	}
	if d := slab1["UDP"] + slab1["UDPv6"] - slab0["UDP"] - slab0["UDPv6"]; d > 2 {
		t.Errorf("UDP socket objects grew by %d over the soak", d)
	}

	var fs []string
	total := 0
	for name, n := range faults {
		fs = append(fs, fmt.Sprintf("%d× %s", n, name))
		total += n
	}
	sort.Strings(fs)
	t.Logf("FIGURE soak: %v with %d flooding namespaces: %d datagrams to the configured port (%d echoed intact, none twice or altered) and %d to the other one, %d faults injected (%s); UDP socket objects %d→%d, skbuff_head_cache %d→%d",
		soakTime.Round(time.Second), len(nss), sent, echoed, stale, total, strings.Join(fs, ", "),
		slab0["UDP"]+slab0["UDPv6"], slab1["UDP"]+slab1["UDPv6"], slab0["skbuff_head_cache"], slab1["skbuff_head_cache"])

	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
		if k.err != nil {
			t.Errorf("kechod after SIGTERM: %v", k.err)
		}
	case <-time.After(30 * time.Second):
		t.Error("kechod did not stop within 30s of SIGTERM")
	}
}

func lastN(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
