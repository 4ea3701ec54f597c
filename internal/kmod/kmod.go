// Package kmod loads, inspects and unloads the kecho kernel module.
//
// Loading and unloading go through modprobe(8), run by an injected Runner,
// so unit tests replace it with a fake. What the kernel reports about the
// running module is read from sysfs (/sys/module/<name>/parameters/* and
// /sys/module/<name>/stats/*) under an injected root, so tests read
// fixtures instead. Failures of modprobe are mapped to a one-line cause and
// a hint for the operator (see LoadError).
package kmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultSysfsRoot is where sysfs is mounted.
const DefaultSysfsRoot = "/sys"

// DefaultCommandTimeout bounds one modprobe invocation.
const DefaultCommandTimeout = 30 * time.Second

// Runner runs an external command and returns its combined stdout and
// stderr. A non-nil error means the command could not run or exited
// non-zero.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// Params are the module parameters kechod manages.
type Params struct {
	Port       uint16 // "port"
	BindAddr   string // "bind_addr", an IPv4 or IPv6 literal
	LogPackets bool   // "log_packets"
	MaxPPS     uint32 // "max_pps"
}

// Args are the parameters as modprobe arguments, in a fixed order.
func (p Params) Args() []string {
	return []string{
		"port=" + strconv.Itoa(int(p.Port)),
		"bind_addr=" + p.BindAddr,
		"log_packets=" + yn(p.LogPackets),
		"max_pps=" + strconv.FormatUint(uint64(p.MaxPPS), 10),
	}
}

// String is the parameters as "port=5555 bind_addr=0.0.0.0 ...".
func (p Params) String() string { return strings.Join(p.Args(), " ") }

// Equal reports whether p and q configure the module the same way; bind
// addresses are compared as addresses ("::0" equals "::").
func (p Params) Equal(q Params) bool {
	return p.Port == q.Port && p.LogPackets == q.LogPackets && p.MaxPPS == q.MaxPPS &&
		sameAddr(p.BindAddr, q.BindAddr)
}

// Diff lists the parameters that differ as "name=have (want)" strings.
func (p Params) Diff(want Params) []string {
	var d []string
	add := func(name, have, want string) { d = append(d, name+"="+have+" (config: "+want+")") }
	if p.Port != want.Port {
		add("port", strconv.Itoa(int(p.Port)), strconv.Itoa(int(want.Port)))
	}
	if !sameAddr(p.BindAddr, want.BindAddr) {
		add("bind_addr", p.BindAddr, want.BindAddr)
	}
	if p.LogPackets != want.LogPackets {
		add("log_packets", yn(p.LogPackets), yn(want.LogPackets))
	}
	if p.MaxPPS != want.MaxPPS {
		add("max_pps", strconv.FormatUint(uint64(p.MaxPPS), 10), strconv.FormatUint(uint64(want.MaxPPS), 10))
	}
	return d
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return x == y
}

func yn(b bool) string {
	if b {
		return "Y"
	}
	return "N"
}

// Manager loads and inspects one module. The zero value is not usable; set
// Name and Runner (SysfsRoot defaults to /sys, Logger to slog.Default()).
// A Manager is not safe for concurrent use, except for the read-only
// methods Loaded, Params and Stats.
type Manager struct {
	Name      string
	Runner    Runner
	SysfsRoot string
	Logger    *slog.Logger
	// KernelRelease returns `uname -r`, for hints; nil uses uname(2).
	KernelRelease func() string
	// CommandTimeout bounds each modprobe run; 0 means DefaultCommandTimeout.
	CommandTimeout time.Duration

	loadedByUs bool
}

// LoadedByUs reports whether the module now loaded was loaded by this
// Manager (and so may be unloaded on stop).
func (m *Manager) LoadedByUs() bool { return m.loadedByUs }

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// sysName is the module's name as sysfs spells it: modprobe treats '-' and
// '_' alike, the kernel uses '_'.
func (m *Manager) sysName() string { return strings.ReplaceAll(m.Name, "-", "_") }

// Dir is the module's sysfs directory.
func (m *Manager) Dir() string {
	root := m.SysfsRoot
	if root == "" {
		root = DefaultSysfsRoot
	}
	return filepath.Join(root, "module", m.sysName())
}

// Loaded reports whether the module is loaded and live.
func (m *Manager) Loaded() bool {
	// A loadable module has initstate: "live", "coming" or "going"; one
	// built into the kernel has no initstate, only parameters.
	var buf [16]byte
	b, err := readSmall(m.Dir()+"/initstate", buf[:])
	if err != nil {
		return errors.Is(err, os.ErrNotExist) && m.hasParams()
	}
	return string(bytes.TrimSpace(b)) == "live"
}

func (m *Manager) hasParams() bool {
	st, err := os.Stat(filepath.Join(m.Dir(), "parameters"))
	return err == nil && st.IsDir()
}

// ErrNotLoaded is returned by Params and Stats when the module is not loaded.
var ErrNotLoaded = errors.New("module not loaded")

// Params reads the running module's parameters from sysfs.
func (m *Manager) Params() (Params, error) {
	dir := m.Dir() + "/parameters/"
	var buf [64]byte
	read := func(name string) ([]byte, error) {
		b, err := readSmall(dir+name, buf[:])
		if err != nil {
			return nil, fmt.Errorf("read module parameter: %w", err)
		}
		return bytes.TrimSpace(b), nil
	}
	var p Params
	s, err := read("port")
	if err != nil {
		if !m.exists() {
			return p, fmt.Errorf("%s: %w", m.Name, ErrNotLoaded)
		}
		return p, err
	}
	port, err := strconv.ParseUint(string(s), 10, 16)
	if err != nil {
		return p, fmt.Errorf("module parameter port %q: %w", s, err)
	}
	p.Port = uint16(port)
	if s, err = read("bind_addr"); err != nil {
		return p, err
	}
	p.BindAddr = string(s)
	if s, err = read("log_packets"); err != nil {
		return p, err
	}
	switch string(s) {
	case "Y", "y", "1":
		p.LogPackets = true
	case "N", "n", "0":
	default:
		return p, fmt.Errorf("module parameter log_packets %q: not Y or N", s)
	}
	if s, err = read("max_pps"); err != nil {
		return p, err
	}
	pps, err := strconv.ParseUint(string(s), 10, 32)
	if err != nil {
		return p, fmt.Errorf("module parameter max_pps %q: %w", s, err)
	}
	p.MaxPPS = uint32(pps)
	return p, nil
}

// readSmall reads a small file (a sysfs attribute) into buf with plain
// open/read/close system calls: os.Open would also try to register the
// file with the network poller and switch it between blocking modes,
// several system calls more per file, and the daemon reads these files on
// every probe. A file that fills buf is an error.
func readSmall(path string, buf []byte) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		k, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if k == 0 {
			return buf[:n], nil
		}
		n += k
		if n < len(buf) {
			// A sysfs attribute comes whole from one read (as does a
			// small regular file): save the read that would return EOF.
			return buf[:n], nil
		}
	}
	return nil, &os.PathError{Op: "read", Path: path, Err: errors.New("longer than expected")}
}

// Stats are the module's counters, by file name under stats/
// ("rx_packets", "tx_bytes", ...).
type Stats map[string]uint64

// Names are the counter names, sorted.
func (s Stats) Names() []string {
	n := make([]string, 0, len(s))
	for k := range s {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Stats reads every counter under /sys/module/<name>/stats/. Files that do
// not hold one decimal number are skipped.
func (m *Manager) Stats() (Stats, error) {
	dir := filepath.Join(m.Dir(), "stats")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !m.Loaded() {
			return nil, fmt.Errorf("%s: %w", m.Name, ErrNotLoaded)
		}
		return nil, fmt.Errorf("read module counters: %w", err)
	}
	s := Stats{}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil {
			continue
		}
		s[e.Name()] = v
	}
	return s, nil
}

// Action is what Ensure did.
type Action int

// Actions of Ensure.
const (
	Kept     Action = iota // already running with the wanted parameters
	Loaded                 // was not loaded; loaded it
	Reloaded               // was loaded with other parameters; reloaded it
)

func (a Action) String() string {
	return [...]string{"kept", "loaded", "reloaded"}[a]
}

// Ensure makes the module run with want: it loads it when it is not
// loaded, reloads it when it runs with other parameters, and confirms the
// parameters from sysfs afterwards.
func (m *Manager) Ensure(ctx context.Context, want Params) (Action, error) {
	act := Loaded
	if m.Loaded() {
		have, err := m.Params()
		if err == nil && have.Equal(want) {
			return Kept, nil
		}
		if err != nil {
			m.logger().Warn("cannot read the running module's parameters, reloading it",
				"module", m.Name, "err", err)
		} else {
			m.logger().Info("module is loaded with other parameters, reloading it",
				"module", m.Name, "running", have.String(), "config", want.String())
		}
		if err := m.Unload(ctx); err != nil {
			return Kept, err
		}
		act = Reloaded
	}
	if err := m.Load(ctx, want); err != nil {
		return act, err
	}
	return act, nil
}

// Load runs modprobe with want and confirms from sysfs that the module runs
// with it. The module must not be loaded already (modprobe would do nothing).
func (m *Manager) Load(ctx context.Context, want Params) error {
	args := append([]string{m.Name}, want.Args()...)
	out, err := m.run(ctx, "modprobe", args...)
	if err != nil {
		return m.loadError("modprobe "+strings.Join(args, " "), out, err, want.Port)
	}
	m.loadedByUs = true
	m.logger().Info("module loaded", "module", m.Name, "params", want.String())
	have, err := m.Params()
	if err != nil {
		return fmt.Errorf("confirm parameters of %s after modprobe: %w", m.Name, err)
	}
	if !have.Equal(want) {
		return &ParamsMismatchError{Module: m.Name, Have: have, Want: want}
	}
	return nil
}

// ParamsMismatchError says the module runs with other parameters than it
// was loaded with (for example an "options" line in /etc/modprobe.d that a
// parameter given to modprobe does not override).
type ParamsMismatchError struct {
	Module     string
	Have, Want Params
}

func (e *ParamsMismatchError) Error() string {
	return fmt.Sprintf("%s runs with %s after modprobe: check options in /etc/modprobe.d",
		e.Module, strings.Join(e.Have.Diff(e.Want), ", "))
}

// Unload removes the module with modprobe -r. Unloading a module that is
// not loaded is not an error.
func (m *Manager) Unload(ctx context.Context) error {
	if !m.Loaded() && !m.exists() {
		m.loadedByUs = false
		return nil
	}
	out, err := m.run(ctx, "modprobe", "-r", m.Name)
	if err != nil {
		if !m.exists() {
			m.loadedByUs = false
			return nil
		}
		return m.loadError("modprobe -r "+m.Name, out, err, 0)
	}
	m.loadedByUs = false
	m.logger().Info("module unloaded", "module", m.Name)
	return nil
}

func (m *Manager) exists() bool {
	_, err := os.Stat(m.Dir())
	return err == nil
}

func (m *Manager) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	t := m.CommandTimeout
	if t <= 0 {
		t = DefaultCommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	m.logger().Debug("running command", "cmd", name, "args", strings.Join(args, " "))
	return m.Runner.Run(ctx, name, args...)
}

func (m *Manager) kernelRelease() string {
	if m.KernelRelease != nil {
		return m.KernelRelease()
	}
	return unameRelease()
}
