package fault

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/metrics"
	"github.com/kecho-dev/kecho/internal/state"
	"github.com/kecho-dev/kecho/test/vm"
)

// The state file is replaced atomically: a reader running alongside a
// stream of writes only ever sees a complete state, never a partial or
// empty file, and no temporary file is left behind.
func TestStateFileAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kechod")
	if err := state.Write(dir, state.State{State: state.Starting, PID: 1, Status: "status 0"}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, bad int
	var firstBad error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s, err := state.Read(dir)
			reads++
			if err != nil || s.PID == 0 || !strings.HasPrefix(s.Status, "status ") {
				if err == nil {
					err = errors.New("incomplete state: " + s.Status)
				}
				if bad == 0 {
					firstBad = err
				}
				bad++
			}
		}
	}()
	big := strings.Repeat("x", 64<<10) // a state that takes more than one write(2)
	for i := 1; i <= 300; i++ {
		s := state.State{State: state.Healthy, PID: i, Status: "status " + strconv.Itoa(i), Reason: big[:i*200]}
		if err := state.Write(dir, s); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d of %d reads during 300 writes saw no or a partial state; first: %v", bad, reads, firstBad)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != state.FileName {
			t.Errorf("left behind in the state directory: %s", e.Name())
		}
	}
	if bad == 0 {
		t.Logf("%d reads during 300 writes, all complete", reads)
	}
}

// The state file and its directory are never group- or world-writable,
// whatever the umask, and a symlink planted where the state file goes is
// replaced, not followed.
func TestStateFileModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	dir := filepath.Join(root, "kechod")
	if err := state.Write(dir, state.State{State: state.Healthy, PID: 42}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, state.Path(dir)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s has mode %v under umask 0: group/world-writable", p, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(state.Path(dir)); st.Mode().Perm() != 0o644 {
		t.Errorf("state file mode %v, want 0644 (readable by `kechod status` as any user)", st.Mode().Perm())
	}

	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(state.Path(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, state.Path(dir)); err != nil {
		t.Fatal(err)
	}
	if err := state.Write(dir, state.State{State: state.Healthy, PID: 43}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("writing the state followed a symlink and overwrote its target: %q", b)
	}
	if st, err := os.Lstat(state.Path(dir)); err != nil || st.Mode()&os.ModeSymlink != 0 {
		t.Errorf("the planted symlink is still there after a write (%v)", err)
	}
}

// The unit gives kechod a root-owned runtime directory for the state file
// that others cannot write.
func TestStateDirInUnit(t *testing.T) {
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, "systemd", "kechod.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"RuntimeDirectory=kechod", "UMask=0022"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("kechod.service lacks %q", want)
		}
	}
	if m := regexpFind(unit, `\nRuntimeDirectoryMode=(\d+)\n`); m != "" {
		if v, _ := strconv.ParseUint(m, 8, 32); v&0o022 != 0 {
			t.Errorf("RuntimeDirectoryMode=%s is group/world-writable", m)
		}
	}
	if state.DefaultDir != "/run/kechod" {
		t.Errorf("state.DefaultDir = %q, want /run/kechod (the unit's RuntimeDirectory)", state.DefaultDir)
	}
}

// Metrics are off unless configured; the shipped config leaves them off;
// an address that is not loopback-only is recognised as such and warned
// about when the listener starts.
func TestMetricsListenerDefaults(t *testing.T) {
	if l := config.Defaults().Metrics.Listen; l != "" {
		t.Errorf("metrics.listen defaults to %q, want \"\" (off)", l)
	}
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(repo, "configs", "kechod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexpFind(string(shipped), `(?m)^\s+listen:\s*(.*)$`); m != `""` && m != "''" && m != "" {
		t.Errorf("configs/kechod.yaml sets metrics.listen %s; it must ship off", m)
	}
	for listen, loop := range map[string]bool{
		"127.0.0.1:9555": true, "[::1]:9555": true, "127.1.2.3:9555": true,
		":9555": false, "0.0.0.0:9555": false, "[::]:9555": false, "192.0.2.1:9555": false, "[fe80::1]:9555": false,
	} {
		if got := metrics.IsLoopback(listen); got != loop {
			t.Errorf("IsLoopback(%q) = %v, want %v", listen, got, loop)
		}
	}

	// Enabled on loopback: bound there and nowhere else, no warning.
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	s, err := metrics.Listen("127.0.0.1:0", http.NotFoundHandler(), log)
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Addr().String(); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("listener bound to %s", a)
	}
	s.Close()
	if strings.Contains(logBuf.String(), "not on a loopback") {
		t.Errorf("warned for a loopback listener: %s", logBuf.String())
	}
	logBuf.Reset()
	s, err = metrics.Listen("0.0.0.0:0", http.NotFoundHandler(), log)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !strings.Contains(logBuf.String(), "not on a loopback") {
		t.Errorf("no warning for a listener on all addresses; log: %s", logBuf.String())
	}
}

func regexpFind(s, re string) string {
	m := mustCompile(re).FindStringSubmatch(s)
	if len(m) < 2 {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// Nothing in the packages is world-writable (symlinks aside, whose mode
// means nothing), and nothing is group-writable either.
func TestPackagesNotWorldWritable(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "rpm"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " not found: install dpkg and rpm (`make deps`)"
			if vm.Required() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./packaging", "--out", out, "--arch", "amd64")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./packaging: %v\n%s", err, b)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range ents {
		p := filepath.Join(out, e.Name())
		var files map[string]os.FileMode
		switch {
		case strings.HasSuffix(e.Name(), ".deb"):
			files = debModes(t, p)
		case strings.HasSuffix(e.Name(), ".rpm"):
			files = rpmModes(t, p)
		default:
			continue
		}
		if len(files) == 0 {
			t.Errorf("%s: no files listed", e.Name())
		}
		for f, m := range files {
			if m&os.ModeSymlink != 0 {
				continue
			}
			if m.Perm()&0o022 != 0 {
				t.Errorf("%s: %s has mode %v (group/world-writable)", e.Name(), f, m.Perm())
			}
			if m&(os.ModeSetuid|os.ModeSetgid) != 0 {
				t.Errorf("%s: %s is setuid/setgid (%v)", e.Name(), f, m)
			}
		}
		checked++
		t.Logf("%s: %d entries, none group/world-writable", e.Name(), len(files))
	}
	if checked < 4 {
		t.Errorf("checked %d packages, want kecho-dkms and kechod as .deb and .rpm", checked)
	}
}

// debModes lists a .deb's data with dpkg-deb -c: "drwxr-xr-x root/root 0 date ./path".
func debModes(t *testing.T, p string) map[string]os.FileMode {
	out, err := exec.Command("dpkg-deb", "-c", p).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c %s: %v", p, err)
	}
	files := map[string]os.FileMode{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		files[f[5]] = parseLsMode(f[0])
	}
	return files
}

func parseLsMode(s string) os.FileMode {
	var m os.FileMode
	if s[0] == 'l' {
		m |= os.ModeSymlink
	}
	bits := []os.FileMode{0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1}
	for i, b := range bits {
		c := s[1+i]
		if c != '-' && c != 'S' && c != 'T' {
			m |= b
		}
		if i == 2 && (c == 's' || c == 'S') {
			m |= os.ModeSetuid
		}
		if i == 5 && (c == 's' || c == 'S') {
			m |= os.ModeSetgid
		}
	}
	return m
}

// rpmModes lists an .rpm's files with their octal modes.
func rpmModes(t *testing.T, p string) map[string]os.FileMode {
	out, err := exec.Command("rpm", "-qp", "--qf", `[%{FILEMODES:octal} %{FILENAMES}\n]`, p).Output()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v", p, err)
	}
	files := map[string]os.FileMode{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		mode, name, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			t.Errorf("%s: mode %q of %s", p, mode, name)
			continue
		}
		m := os.FileMode(v & 0o777)
		if v&0o170000 == 0o120000 {
			m |= os.ModeSymlink
		}
		if v&0o4000 != 0 {
			m |= os.ModeSetuid
		}
		if v&0o2000 != 0 {
			m |= os.ModeSetgid
		}
		files[name] = m
	}
	return files
}
