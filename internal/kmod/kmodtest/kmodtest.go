// Package kmodtest provides fakes of modprobe and of the kernel's module
// sysfs for tests of code that uses package kmod: Script, a Runner that
// accepts exactly the expected commands, and Kernel, a Runner that behaves
// like modprobe on a kernel with the kecho module — it writes
// /sys/module/<name>/{initstate,parameters,stats} under a temporary root and
// serves UDP echo on the loaded port from a goroutine; and Echo, a plain UDP
// echo on loopback for tests where the module is already running.
package kmodtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/kmod"
)

// Call is one expected command of a Script.
type Call struct {
	Cmd string // the whole command line, e.g. "modprobe -r kecho"
	Out string // combined output to return
	Err error  // error to return
	Do  func() // side effect before returning, e.g. writing sysfs files
}

// Script is a Runner that expects exactly Calls, in order, and fails the
// test on any other command. Call Done at the end to check that every
// expected command ran.
type Script struct {
	T     testing.TB
	Calls []Call
	mu    sync.Mutex
	next  int
}

// Run implements kmod.Runner.
func (s *Script) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := strings.Join(append([]string{name}, args...), " ")
	if s.next >= len(s.Calls) {
		s.T.Errorf("unexpected command %q (no more expected)", got)
		return nil, errors.New("unexpected command")
	}
	c := s.Calls[s.next]
	s.next++
	if got != c.Cmd {
		s.T.Errorf("command %d: got %q, want %q", s.next, got, c.Cmd)
		return nil, errors.New("unexpected command")
	}
	if c.Do != nil {
		c.Do()
	}
	return []byte(c.Out), c.Err
}

// Done fails the test if expected commands did not run.
func (s *Script) Done() {
	s.T.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.Calls[s.next:] {
		s.T.Errorf("expected command did not run: %q", c.Cmd)
	}
}

// WriteModule writes a loaded module's sysfs directory under root.
func WriteModule(t testing.TB, root, name string, p kmod.Params) {
	t.Helper()
	if err := writeModule(root, name, p, nil); err != nil {
		t.Fatal(err)
	}
}

func writeModule(root, name string, p kmod.Params, stats map[string]uint64) error {
	dir := filepath.Join(root, "module", name)
	for _, d := range []string{"parameters", "stats"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"initstate":              "live",
		"parameters/port":        strconv.Itoa(int(p.Port)),
		"parameters/bind_addr":   p.BindAddr,
		"parameters/log_packets": map[bool]string{true: "Y", false: "N"}[p.LogPackets],
		"parameters/max_pps":     strconv.FormatUint(uint64(p.MaxPPS), 10),
	}
	for _, c := range []string{"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drop_loop", "drop_bcast", "drop_ratelimit", "tx_errors"} {
		files["stats/"+c] = strconv.FormatUint(stats[c], 10)
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Kernel is a fake kernel with one loadable module, driven by the
// modprobe commands it receives as a kmod.Runner. Loading writes the sysfs
// tree under SysfsRoot and starts a UDP echo server on bind_addr:port;
// binding fails like the real module does (EADDRINUSE -> modprobe's
// "Address already in use"). Unexpected commands fail the test.
type Kernel struct {
	T         testing.TB
	SysfsRoot string
	Name      string // default "kecho"
	// BeforeLoad, when set, runs before each load; a non-nil error makes
	// modprobe fail with output out.
	BeforeLoad func(p kmod.Params) (out string, err error)
	// Silent makes every loaded module stay mute (loads, never answers).
	Silent bool

	mu       sync.Mutex
	conn     net.PacketConn
	counters map[string]uint64
	loads    []kmod.Params
	unloads  int
	cmds     []string
	muted    bool
	delay    time.Duration
	wg       sync.WaitGroup
}

// NewKernel returns a Kernel with a fresh sysfs root in t.TempDir and
// unloads its module at the end of the test.
func NewKernel(t testing.TB) *Kernel {
	k := &Kernel{T: t, SysfsRoot: t.TempDir(), Name: "kecho"}
	if err := os.MkdirAll(filepath.Join(k.SysfsRoot, "module"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.stop)
	return k
}

// Loads returns the parameters of every successful load so far.
func (k *Kernel) Loads() []kmod.Params {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kmod.Params(nil), k.loads...)
}

// Unloads counts successful unloads.
func (k *Kernel) Unloads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.unloads
}

// Commands returns every command received, as command lines.
func (k *Kernel) Commands() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.cmds...)
}

// Loaded reports whether the module is loaded.
func (k *Kernel) Loaded() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.conn != nil
}

// Addr is the echo server's address, when loaded.
func (k *Kernel) Addr() net.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.conn == nil {
		return nil
	}
	return k.conn.LocalAddr()
}

// RemoveBehindBack unloads the module the way `rmmod` by someone else
// would: the sysfs directory and the echo server go away.
func (k *Kernel) RemoveBehindBack() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unloadLocked()
}

// Mute stops the echo server answering while the module stays loaded (a
// hung module).
func (k *Kernel) Mute() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.muted = true
}

// SetDelay holds each echo back by d.
func (k *Kernel) SetDelay(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.delay = d
}

// Unmute lets the echo server answer again.
func (k *Kernel) Unmute() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.muted = false
}

// Run implements kmod.Runner for "modprobe NAME PARAMS..." and
// "modprobe -r NAME".
func (k *Kernel) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	line := strings.Join(append([]string{name}, args...), " ")
	k.cmds = append(k.cmds, line)
	exit1 := errors.New("exit status 1")
	switch {
	case name == "modprobe" && len(args) == 2 && args[0] == "-r" && args[1] == k.Name:
		if k.conn == nil {
			return []byte("modprobe: FATAL: Module " + k.Name + " is not in kernel.\n"), exit1
		}
		k.unloadLocked()
		k.unloads++
		return nil, nil
	case name == "modprobe" && len(args) >= 1 && args[0] == k.Name:
		if k.conn != nil {
			return nil, nil // modprobe does nothing for a loaded module
		}
		p, err := parseParams(args[1:])
		if err != nil {
			return []byte(fmt.Sprintf("modprobe: ERROR: could not insert '%s': Invalid argument\n", k.Name)), exit1
		}
		if k.BeforeLoad != nil {
			if out, err := k.BeforeLoad(p); err != nil {
				return []byte(out), err
			}
		}
		host := p.BindAddr
		conn, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(int(p.Port))))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return []byte(fmt.Sprintf("modprobe: ERROR: could not insert '%s': Address already in use\n", k.Name)), exit1
			}
			return []byte(fmt.Sprintf("modprobe: ERROR: could not insert '%s': %v\n", k.Name, err)), exit1
		}
		k.muted = false
		k.counters = map[string]uint64{}
		if err := writeModule(k.SysfsRoot, k.Name, p, k.counters); err != nil {
			conn.Close()
			return []byte(err.Error()), exit1
		}
		k.conn = conn
		k.loads = append(k.loads, p)
		k.wg.Add(1)
		go k.serve(conn, p)
		return nil, nil
	}
	k.T.Errorf("fake kernel: unexpected command %q", line)
	return []byte("unexpected command"), exit1
}

func (k *Kernel) serve(conn net.PacketConn, p kmod.Params) {
	defer k.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		k.mu.Lock()
		if k.muted || k.Silent || k.conn != conn {
			k.mu.Unlock()
			continue
		}
		k.counters["rx_packets"]++
		k.counters["rx_bytes"] += uint64(n)
		k.counters["tx_packets"]++
		k.counters["tx_bytes"] += uint64(n)
		_ = writeStats(k.SysfsRoot, k.Name, k.counters)
		delay := k.delay
		k.mu.Unlock()
		time.Sleep(delay)
		conn.WriteTo(buf[:n], from)
	}
}

func writeStats(root, name string, stats map[string]uint64) error {
	for c, v := range stats {
		if err := os.WriteFile(filepath.Join(root, "module", name, "stats", c), []byte(strconv.FormatUint(v, 10)+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (k *Kernel) unloadLocked() {
	if k.conn != nil {
		k.conn.Close()
		k.conn = nil
	}
	os.RemoveAll(filepath.Join(k.SysfsRoot, "module", k.Name))
}

func (k *Kernel) stop() {
	k.mu.Lock()
	k.unloadLocked()
	k.mu.Unlock()
	k.wg.Wait()
}

func parseParams(args []string) (kmod.Params, error) {
	p := kmod.Params{Port: 5555, BindAddr: "0.0.0.0", LogPackets: true}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return p, fmt.Errorf("bad argument %q", a)
		}
		switch k {
		case "port":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n == 0 {
				return p, fmt.Errorf("bad port %q", v)
			}
			p.Port = uint16(n)
		case "bind_addr":
			p.BindAddr = v
		case "log_packets":
			p.LogPackets = v == "Y" || v == "y" || v == "1"
		case "max_pps":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return p, fmt.Errorf("bad max_pps %q", v)
			}
			p.MaxPPS = uint32(n)
		default:
			return p, fmt.Errorf("unknown parameter %q", k)
		}
	}
	return p, nil
}

// Echo serves UDP echo on 127.0.0.1 at a free port from a goroutine until
// the test ends, standing in for a kecho that is already running (written
// with WriteModule); it returns the address.
func Echo(t testing.TB) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			conn.WriteTo(buf[:n], from)
		}
	}()
	return conn.LocalAddr().(*net.UDPAddr)
}
