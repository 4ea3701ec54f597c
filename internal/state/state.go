// Package state is the daemon's published state: a JSON file under
// /run/kechod that the running daemon rewrites atomically on every state
// change and after probes (after every probe at intervals of 1 s and
// more, once a second at shorter ones), and that `kechod status` reads.
package state

import (
	"bytes"
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

// Write replaces the state file in dir atomically, like a fresh Writer's
// Write.
func Write(dir string, s State) error { return NewWriter(dir).Write(s) }

// Writer replaces the state file in one directory atomically: a temporary
// file in the same directory, written, made mode 0644, renamed over the old
// one. On a disk file system the file and then the directory are fsynced
// before and after the rename. On tmpfs or ramfs (/run) they are not:
// there is nothing to flush, the rename alone is atomic, and readers never
// see a partial file either way. A Writer keeps its buffers between writes
// and is not safe for concurrent use.
type Writer struct {
	dir, path, tmp string
	ready          bool // dir exists and its file system is known
	memory         bool // dir is on tmpfs or ramfs: no fsync
	buf            bytes.Buffer
	enc            *json.Encoder
}

// NewWriter returns a Writer for the state file in dir. The directory is
// created (mode 0755) at the first write.
func NewWriter(dir string) *Writer {
	w := &Writer{dir: dir, path: Path(dir),
		tmp: filepath.Join(dir, "."+FileName+"."+strconv.Itoa(os.Getpid())+".tmp")}
	w.enc = json.NewEncoder(&w.buf)
	w.enc.SetIndent("", "  ")
	return w
}

// Memory reports whether the directory is on a file system in memory,
// where Write does not fsync; false before the first write.
func (w *Writer) Memory() bool { return w.memory }

// Write replaces the state file with s.
func (w *Writer) Write(s State) error {
	err := w.write(s)
	if errors.Is(err, os.ErrNotExist) {
		// The directory was removed meanwhile: create it again.
		err = w.write(s)
	}
	return err
}

func (w *Writer) write(s State) error {
	if !w.ready {
		if err := os.MkdirAll(w.dir, 0o755); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(w.dir, &fs); err == nil {
			w.memory = fs.Type == tmpfsMagic || fs.Type == ramfsMagic
		}
		w.ready = true
	}
	w.buf.Reset()
	if err := w.enc.Encode(s); err != nil {
		return err
	}
	if err := w.writeTemp(w.buf.Bytes()); err != nil {
		syscall.Unlink(w.tmp)
		w.ready = false // the directory may have gone: look again next time
		return fmt.Errorf("write state file %s: %w", w.path, err)
	}
	if err := syscall.Rename(w.tmp, w.path); err != nil {
		syscall.Unlink(w.tmp)
		w.ready = false
		return fmt.Errorf("write state file %s: rename %s: %w", w.path, w.tmp, err)
	}
	if !w.memory {
		if fd, err := syscall.Open(w.dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err == nil {
			syscall.Fsync(fd)
			syscall.Close(fd)
		}
	}
	return nil
}

// Magic numbers of statfs(2)'s f_type.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// writeTemp writes b to the temporary file with plain system calls (an
// os.File would also try the network poller on it).
func (w *Writer) writeTemp(b []byte) error {
	fd, err := syscall.Open(w.tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return &os.PathError{Op: "open", Path: w.tmp, Err: err}
	}
	fail := func(op string, err error) error {
		syscall.Close(fd)
		return &os.PathError{Op: op, Path: w.tmp, Err: err}
	}
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fail("write", err)
		}
		b = b[n:]
	}
	// The umask may have taken bits away at creation; readers need 0644.
	if err := syscall.Fchmod(fd, 0o644); err != nil {
		return fail("chmod", err)
	}
	if !w.memory {
		if err := syscall.Fsync(fd); err != nil {
			return fail("fsync", err)
		}
	}
	if err := syscall.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: w.tmp, Err: err}
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
