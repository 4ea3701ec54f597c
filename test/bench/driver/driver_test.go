package driver

import (
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/bench/report"
	"github.com/kecho-dev/kecho/test/vm"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// requireTool skips without the tool, or fails under KECHO_REQUIRE_VM=1
// (`make test`, which installs it through test/deps.sh).
func requireTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		msg := tool + " is missing (install " + pkg + ", or run `make test`, which installs it)"
		if vm.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func isStaticELF(t *testing.T, p string) {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; the initramfs guest needs static programs", p)
		}
	}
}

// TestBuildCPrograms compiles the C echo, the sink and the load generator
// exactly as the benchmark does (gcc -O2 -static -Werror) and runs a
// short echo exchange with them on the host.
func TestBuildCPrograms(t *testing.T) {
	requireTool(t, "gcc", "gcc and libc6-dev")
	out := t.TempDir()
	bins, err := BuildC(context.Background(), vm.ExecRunner{}, filepath.Join(repoRoot(t), "test", "bench", "cecho"), out)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range CPrograms {
		h := bins[GuestBinDir+"/"+p]
		if h == "" {
			t.Fatalf("no %s built", p)
		}
		isStaticELF(t, h)
	}

	// The echo answers the generator, byte-identical, on loopback.
	srv := exec.Command(bins[GuestBinDir+"/cecho"], "-p", "17999")
	var srvOut strings.Builder
	srv.Stdout = &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	lg, err := exec.Command(bins[GuestBinDir+"/loadgen"], "-m", "window", "-p", "17999", "-s", "200", "-f", "2", "-w", "4", "-d", "1").Output()
	_ = srv.Process.Signal(os.Interrupt)
	_ = srv.Wait()
	if err != nil {
		t.Fatalf("loadgen: %v", err)
	}
	var l report.Load
	if err := jsonUnmarshal(lg, &l); err != nil {
		t.Fatalf("loadgen output %q: %v", lg, err)
	}
	if l.Received == 0 || l.Corrupt != 0 || l.Received > l.Sent || l.Size != 200 {
		t.Errorf("loadgen against cecho: %+v", l)
	}
	if !strings.Contains(srvOut.String(), `"server":"cecho"`) {
		t.Errorf("cecho's exit report: %q", srvOut.String())
	}
}

// TestBuildGuestPrograms compiles the Go guest programs statically, as the
// benchmark installs them.
func TestBuildGuestPrograms(t *testing.T) {
	repo := repoRoot(t)
	out := t.TempDir()
	for g, pkg := range GoPrograms {
		bin := filepath.Join(out, filepath.Base(g))
		if err := vm.BuildProgram(context.Background(), vm.ExecRunner{}, repo, pkg, bin, ""); err != nil {
			t.Fatal(err)
		}
		isStaticELF(t, bin)
	}
}

// TestVariantsApply checks that every module variant's edits still apply
// to dkms/ (each old text found exactly once) and change the copy only.
func TestVariantsApply(t *testing.T) {
	repo := repoRoot(t)
	src := filepath.Join(repo, "dkms")
	if _, err := os.Stat(filepath.Join(src, "dkms.conf")); err != nil {
		t.Skip("dkms/ has no module yet")
	}
	before := map[string]string{}
	for _, f := range []string{"main.c", "echo.c", "filter.c", "kecho.h"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = string(b)
	}
	for _, v := range Variants {
		dst := filepath.Join(t.TempDir(), "src")
		if err := PrepareSource(src, dst, v); err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		for _, e := range v.Edits {
			b, err := os.ReadFile(filepath.Join(dst, e.File))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), e.New) {
				t.Errorf("%s: %s lacks the edit", v.Name, e.File)
			}
		}
		if _, err := os.Stat(filepath.Join(dst, "kecho.o")); err == nil {
			t.Errorf("%s: build outputs copied", v.Name)
		}
	}
	for f, b := range before {
		now, _ := os.ReadFile(filepath.Join(src, f))
		if string(now) != b {
			t.Errorf("dkms/%s changed", f)
		}
	}
	if _, err := VariantsByName("nope"); err == nil {
		t.Error("an unknown variant name is accepted")
	}
	vs, err := VariantsByName("wq-unbound")
	if err != nil || len(vs) != 2 || vs[0].Name != "baseline" {
		t.Errorf("VariantsByName(wq-unbound) = %v, %v; want baseline first", vs, err)
	}
}

func TestLineFilter(t *testing.T) {
	var b strings.Builder
	f := lineFilter(&b, ResultPrefix, "g| ")
	_, _ = f.Write([]byte("one\r\n" + ResultPrefix + "{}\ntw"))
	_, _ = f.Write([]byte("o\x16\n"))
	if got := b.String(); got != "g| one\ng| two\n" {
		t.Errorf("lineFilter wrote %q", got)
	}
}

// TestBenchSmoke runs the whole benchmark briefly (-short: one round of
// one-second runs, a 3-second kechod footprint) in a VM: every server is
// measured, nothing is corrupt, and the files are written.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM for about a minute; run without -short, or `make test`")
	}
	vm.Require(t)
	o := ShortOptions()
	o.Out = t.TempDir()
	o.Quiet = true
	res, dir, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := report.Summarize(res.Runs)
	for _, s := range report.Servers {
		for _, wl := range []string{report.Sat64, report.Sat1400} {
			x := sum[[2]string{s, wl}]
			if x == nil || x.Rounds != 1 || x.Rate <= 0 || x.Corrupt != 0 || len(x.Errors) != 0 {
				t.Errorf("%s %s: %+v", s, wl, x)
			}
		}
	}
	if x := sum[[2]string{report.Kecho, report.RTT64}]; x == nil || x.P50 <= 0 {
		t.Errorf("kecho latency: %+v", x)
	}
	// kechod at the default interval and at 10/s, and the control prober.
	if len(res.Footprints) != 3 {
		t.Fatalf("footprints: %+v", res.Footprints)
	}
	for _, f := range res.Footprints {
		if f.Error != "" || f.MaxRSSKiB == 0 || f.Period <= 0 || (f.Name != "control" && f.Ready <= 0) {
			t.Errorf("footprint %s: %+v", f.Name, f)
		}
		// A window shorter than the probe interval may see no probe at
		// all, and an idle kechod then rightly costs no CPU; at 10 probes/s
		// the window holds dozens of probes.
		if f.CPUNS == 0 && f.Interval < f.Period {
			t.Errorf("footprint %s: no CPU time over %v at probe interval %v: %+v", f.Name, f.Period, f.Interval, f)
		}
	}
	for _, f := range []string{"results.md", "results.json", "chart.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error {
	return json.Unmarshal([]byte(strings.TrimSpace(string(b))), v)
}
