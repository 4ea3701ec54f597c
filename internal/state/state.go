// Package state is the daemon's published state: a JSON file under
// /run/kechod that the running daemon rewrites atomically on every state
// change and after every probe, and that `kechod status` reads.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultDir is where the state file lives (systemd's RuntimeDirectory).
const DefaultDir = "/run/kechod"

// FileName is the state file's name in its directory.
const FileName = "state.json"

// States of the daemon.
const (
	Starting   = "starting"
	Loading    = "loading module"
	Healthy    = "healthy"
	Unhealthy  = "unhealthy"
	Recovering = "recovering"
	Reloading  = "reloading"
	Failed     = "failed"
	Stopping   = "stopping"
	Stopped    = "stopped"
)

// Module is what the daemon knows of the module.
type Module struct {
	Name     string            `json:"name"`
	Loaded   bool              `json:"loaded"`
	ByKechod bool              `json:"loaded_by_kechod"`
	Params   map[string]string `json:"params,omitempty"`
}

// Probes summarises the health probes.
type Probes struct {
	Target      string    `json:"target"`
	Interval    Duration  `json:"interval"`
	OK          uint64    `json:"ok"`
	Total       uint64    `json:"total"`
	Consecutive int       `json:"consecutive_failures"`
	LastAt      time.Time `json:"last_at,omitzero"`
	LastResult  string    `json:"last_result,omitempty"`
	LastRTT     Duration  `json:"last_rtt,omitempty"`
}

// State is the content of the state file.
type State struct {
	State       string    `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	Status      string    `json:"status"` // the STATUS= line
	Since       time.Time `json:"since"`
	Updated     time.Time `json:"updated"`
	PID         int       `json:"pid"`
	Version     string    `json:"version"`
	ConfigFiles []string  `json:"config_files"`
	Module      Module    `json:"module"`
	Probes      Probes    `json:"probes"`
}

// Duration is a time.Duration that is a string ("1.5s") in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Path is the state file in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Write replaces the state file in dir atomically: a temporary file in the
// same directory, written, fsynced, made mode 0644, renamed over the old
// one, and the directory fsynced. dir is created with mode 0755.
func Write(dir string, s State) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(dir, "."+FileName+".*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write state file %s: %w", Path(dir), err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, Path(dir)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state file %s: %w", Path(dir), err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ErrNoState is returned by Read when no daemon has written a state file.
var ErrNoState = errors.New("no state file")

// Read reads the state file in dir.
func Read(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(Path(dir))
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("%s: %w", Path(dir), ErrNoState)
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", Path(dir), err)
	}
	return s, nil
}

// Liveness is whether the daemon that wrote a state file still runs.
type Liveness int

// Liveness values.
const (
	Running Liveness = iota // its process runs and the file is fresh
	Stale                   // its process runs but stopped updating the file
	Gone                    // no such process (or another program has the pid)
	Exited                  // it stopped cleanly
)

func (l Liveness) String() string {
	return [...]string{"running", "stale", "not running", "stopped"}[l]
}

// Check says whether the daemon that wrote s still runs, at now. procRoot
// is where proc is mounted ("" = /proc). The file is stale when it was not
// updated for three probe intervals (plus a minute of grace for a reload).
func Check(s State, now time.Time, procRoot string) Liveness {
	if s.State == Stopped {
		return Exited
	}
	if !Alive(s.PID, procRoot) {
		return Gone
	}
	limit := 3*time.Duration(s.Probes.Interval) + time.Minute
	if now.Sub(s.Updated) > limit {
		return Stale
	}
	return Running
}

// Alive reports whether pid is a running kechod process.
func Alive(pid int, procRoot string) bool {
	if pid <= 0 {
		return false
	}
	if procRoot == "" {
		procRoot = "/proc"
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// The pid may have been reused by another program.
	comm, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	return strings.HasPrefix(strings.TrimSpace(string(comm)), "kechod")
}
