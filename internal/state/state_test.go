package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/state"
)

func sample() state.State {
	now := time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	return state.State{
		State: state.Healthy, Status: "healthy · kecho :5555 · rtt 0.21 ms · 3/3 probes ok",
		Since: now, Updated: now.Add(10 * time.Second), PID: 42, Version: "1.2.3",
		ConfigFiles: []string{"/etc/kechod/kechod.yaml"},
		Module:      state.Module{Name: "kecho", Loaded: true, ByKechod: true, Params: map[string]string{"port": "5555"}},
		Probes: state.Probes{Target: "127.0.0.1:5555", Interval: state.Duration(5 * time.Second), OK: 3, Total: 3,
			LastAt: now.Add(10 * time.Second), LastResult: "ok", LastRTT: state.Duration(210 * time.Microsecond)},
	}
}

func TestWriteRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "kechod")
	old := sysUmask(0o077) // the daemon's umask must not matter
	defer sysUmask(old)
	s := sample()
	if err := state.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	got, err := state.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, s)
	}
	st, _ := os.Stat(state.Path(dir))
	if st.Mode().Perm() != 0o644 {
		t.Errorf("state file mode %v, want 0644", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the state file", len(ents))
	}
	b, _ := os.ReadFile(state.Path(dir))
	if !contains(string(b), `"last_rtt": "210µs"`) || !contains(string(b), `"interval": "5s"`) {
		t.Errorf("durations not written as strings:\n%s", b)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestDirMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kechod")
	old := sysUmask(0)
	defer sysUmask(old)
	if err := state.Write(dir, sample()); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, want 0755", st.Mode().Perm())
	}
}

func TestReadersNeverSeePartialFile(t *testing.T) {
	dir := t.TempDir()
	s := sample()
	if err := state.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.Probes.Total = uint64(i)
			s.Reason = string(make([]byte, i%5000))
			if err := state.Write(dir, s); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 300; i++ {
		if _, err := state.Read(dir); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestReadMissing(t *testing.T) {
	if _, err := state.Read(t.TempDir()); !errors.Is(err, state.ErrNoState) {
		t.Errorf("err = %v, want ErrNoState", err)
	}
}

func TestCheck(t *testing.T) {
	proc := t.TempDir()
	self := os.Getpid()
	os.MkdirAll(filepath.Join(proc, strconv.Itoa(self)), 0o755)
	os.WriteFile(filepath.Join(proc, strconv.Itoa(self), "comm"), []byte("kechod\n"), 0o644)

	s := sample()
	s.PID = self
	now := s.Updated.Add(time.Second)
	if got := state.Check(s, now, proc); got != state.Running {
		t.Errorf("fresh state of a live kechod: %v", got)
	}
	if got := state.Check(s, s.Updated.Add(2*time.Minute), proc); got != state.Stale {
		t.Errorf("old state of a live kechod: %v", got)
	}
	os.WriteFile(filepath.Join(proc, strconv.Itoa(self), "comm"), []byte("bash\n"), 0o644)
	if got := state.Check(s, now, proc); got != state.Gone {
		t.Errorf("pid reused by another program: %v", got)
	}
	s.PID = 1 << 30 // no such process
	if got := state.Check(s, now, proc); got != state.Gone {
		t.Errorf("dead pid: %v", got)
	}
	s.State = state.Stopped
	if got := state.Check(s, now, proc); got != state.Exited {
		t.Errorf("stopped: %v", got)
	}
}

// A Writer rewrites the file in place of the old one, leaves no temporary
// files, creates its directory again when it was removed, and skips fsync only
// on a file system in memory.
func TestWriterRepeated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parent string
		memory bool
	}{{"disk", t.TempDir(), false}, {"tmpfs", "/dev/shm", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.memory && !onTmpfs(tc.parent) {
				t.Skip("/dev/shm is not tmpfs here; the disk case covers the rest")
			}
			parent, err := os.MkdirTemp(tc.parent, "kechod-state")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(parent) })
			if tc.name == "disk" && onTmpfs(parent) {
				t.Skip("the test's temporary directory is on tmpfs; set TMPDIR to a disk to cover this case")
			}
			dir := filepath.Join(parent, "kechod")
			w := state.NewWriter(dir)
			s := sample()
			for i := range 3 {
				s.Probes.Total = uint64(i)
				if err := w.Write(s); err != nil {
					t.Fatal(err)
				}
				if got, err := state.Read(dir); err != nil || got.Probes.Total != uint64(i) {
					t.Fatalf("write %d: read back total %d, %v", i, got.Probes.Total, err)
				}
				if i == 1 {
					os.RemoveAll(dir)
					if err := w.Write(s); err != nil {
						t.Fatalf("write after the directory was removed: %v", err)
					}
				}
			}
			if w.Memory() != tc.memory {
				t.Errorf("Memory() = %v, want %v", w.Memory(), tc.memory)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("directory holds %d entries, want only the state file", len(ents))
			}
		})
	}
}

func onTmpfs(dir string) bool {
	var fs syscall.Statfs_t
	return syscall.Statfs(dir, &fs) == nil && fs.Type == 0x01021994
}
