// Package guestutil is what the in-guest test suites (test/guest and
// test/guestfault) share: running commands, loading and unloading kecho,
// its parameters and counters, network namespaces and slab figures. It is
// compiled into the static test binaries the VM harness boots; on the host
// it is only built, never run.
package guestutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// Module is kecho's module name.
	Module = "kecho"
	// SysModule is kecho's directory in sysfs while it is loaded.
	SysModule = "/sys/module/kecho"
)

// CounterNames are the counters DESIGN.md promises under stats/, in the
// order String prints them; ReadCounters fails if one is missing.
var CounterNames = []string{
	"rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
	"drop_loop", "drop_bcast", "drop_ratelimit", "tx_errors",
}

// commandTimeout bounds every command the suites run.
const commandTimeout = 120 * time.Second

// Run runs a command and returns its combined output; the error names the
// command and carries its output.
func Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun is Run that fails the test on an error.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Loaded reports whether kecho is loaded.
func Loaded() bool {
	_, err := os.Stat(SysModule)
	return err == nil
}

// Unload removes kecho if it is loaded: one rmmod, which must succeed and
// leave nothing in sysfs.
func Unload(t testing.TB) {
	t.Helper()
	if !Loaded() {
		return
	}
	MustRun(t, "rmmod", Module)
	if Loaded() {
		t.Fatalf("%s still exists after rmmod", SysModule)
	}
}

// UnloadWait removes kecho if it is loaded, retrying rmmod for up to
// timeout while the module is busy or still going away (a daemon that is
// reloading it, for one).
func UnloadWait(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for Loaded() {
		out, err := Run("rmmod", Module)
		if err == nil {
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("rmmod kecho for %v: %v (%s)", timeout, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Param reads one of kecho's parameters.
func Param(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(SysModule, "parameters", name))
	if err != nil {
		t.Fatalf("parameter %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

// SetParam writes one of kecho's runtime parameters.
func SetParam(t testing.TB, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(SysModule, "parameters", name), []byte(value), 0); err != nil {
		t.Fatalf("set parameter %s=%s: %v", name, value, err)
	}
}

// Counters is a snapshot of every file under /sys/module/kecho/stats.
type Counters map[string]uint64

// ReadCounters reads every counter kecho has, and fails if one of
// CounterNames is not among them.
func ReadCounters(t testing.TB) Counters {
	t.Helper()
	dir := filepath.Join(SysModule, "stats")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	c := Counters{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("counter %s: %v", e.Name(), err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("counter %s = %q: %v", e.Name(), b, err)
		}
		c[e.Name()] = v
	}
	for _, n := range CounterNames {
		if _, ok := c[n]; !ok {
			t.Fatalf("kecho has no counter %s in %s", n, dir)
		}
	}
	return c
}

// Sub returns c - before, counter by counter.
func (c Counters) Sub(before Counters) Counters {
	d := Counters{}
	for k, v := range c {
		d[k] = v - before[k]
	}
	return d
}

// String lists CounterNames first, then any other counter by name.
func (c Counters) String() string {
	var parts []string
	for _, n := range CounterNames {
		parts = append(parts, fmt.Sprintf("%s=%d", n, c[n]))
	}
	var rest []string
	for k := range c {
		if !slices.Contains(CounterNames, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, " ")
}

// InNetns runs fn on an OS thread that has joined network namespace name
// (made by `ip netns add`); the thread is discarded afterwards. Sockets fn
// makes stay in that namespace and can be used from any goroutine.
func InNetns(t testing.TB, name string, fn func() error) {
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

// SlabObjects returns the active objects of every slab cache from
// /proc/slabinfo, after asking SLUB to shrink every cache: that releases
// empty per-CPU slabs and, on a KASAN kernel, empties the quarantine of
// freed objects, which would otherwise count as active and look like a
// leak.
func SlabObjects(t testing.TB) map[string]int64 {
	t.Helper()
	shrink, _ := filepath.Glob("/sys/kernel/slab/*/shrink")
	for _, f := range shrink {
		_ = os.WriteFile(f, []byte("1"), 0)
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

// SyncBuffer collects a process's output for a test, safe for the
// process's writers and the test's readers at once. With Max set, it
// starts over (saying so) once it holds more than Max bytes, so that a
// long soak keeps only its recent output.
type SyncBuffer struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 && s.b.Len() > s.Max {
		s.b.Reset()
		s.b.WriteString("[earlier output dropped]\n")
	}
	return s.b.Write(p)
}

// String returns what was written (since the last start-over).
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
