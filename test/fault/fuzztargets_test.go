package fault

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/vm"
)

var (
	fuzzFunc  = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)
	fuzzExecs = regexp.MustCompile(`execs: (\d+)`)
)

func mustCompile(re string) *regexp.Regexp { return regexp.MustCompile(re) }

// fuzzTarget is one Go fuzz function and its package directory.
type fuzzTarget struct{ pkg, name string }

// findFuzzTargets lists every func FuzzXxx(*testing.F) under internal/.
func findFuzzTargets(t *testing.T, repo string) []fuzzTarget {
	var out []fuzzTarget
	err := filepath.WalkDir(filepath.Join(repo, "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, filepath.Dir(p))
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(b), -1) {
			out = append(out, fuzzTarget{"./" + filepath.ToSlash(rel), m[1]})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pkg+out[i].name < out[j].pkg+out[j].name })
	return out
}

// TestFuzzTargetsInCI checks that `make fuzz`, which `make test` runs,
// covers every fuzz target under internal/, so a new one cannot be left
// out of CI, and that the daemon's parsers of untrusted input (its
// configuration and the probe replies) stay fuzzed.
func TestFuzzTargetsInCI(t *testing.T) {
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	rule := mustCompile(`(?ms)^fuzz:.*?\n\n`).FindString(string(mk) + "\n\n")
	if rule == "" {
		t.Fatal("the Makefile has no fuzz target")
	}
	if !mustCompile(`(?m)^test:.*\n(\t.*\n)*\t\$\(MAKE\) fuzz`).MatchString(string(mk)) {
		t.Error("`make test` does not run `make fuzz`")
	}
	names := map[string]bool{}
	for _, ft := range findFuzzTargets(t, repo) {
		names[ft.name] = true
		if !strings.Contains(rule, "'^"+ft.name+"$$'") || !strings.Contains(rule, ft.pkg) {
			t.Errorf("`make fuzz` does not run %s (%s)", ft.name, ft.pkg)
		}
	}
	for _, want := range []string{"FuzzLoad", "FuzzVerify"} {
		if !names[want] {
			t.Errorf("fuzz target %s is gone from internal/", want)
		}
	}
}

// validFuzztime reports whether v is what go test's -fuzztime takes: a
// positive execution count ("200000x") or a duration ("20s").
func validFuzztime(v string) bool {
	if n, ok := strings.CutSuffix(v, "x"); ok {
		c, err := strconv.Atoi(n)
		return err == nil && c > 0
	}
	d, err := time.ParseDuration(v)
	return err == nil && d > 0
}

// TestFuzzTargets runs each fuzz target under internal/ for
// KECHO_FUZZTIME (an execution count, which cannot hit the go1.26 fuzz
// coordinator's end-of-window race, or a duration). `make test` already runs them through `make fuzz`, so
// here they run only when KECHO_FUZZTIME is set. A crash fails the test;
// Go saves the input under the package's testdata/fuzz for
// `go test -run FuzzXxx/<id>` to replay.
func TestFuzzTargets(t *testing.T) {
	fuzztime := os.Getenv("KECHO_FUZZTIME")
	if fuzztime == "" {
		t.Skip("`make test` runs the fuzz targets through `make fuzz`; set KECHO_FUZZTIME=200000x (executions) or =20s to run them from here")
	}
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	targets := findFuzzTargets(t, repo)
	if !validFuzztime(fuzztime) {
		t.Fatalf("KECHO_FUZZTIME=%q: want an execution count such as 200000x or a duration such as 20s", fuzztime)
	}
	for _, ft := range targets {
		t.Run(ft.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-fuzz", "^"+ft.name+"$",
				"-fuzztime", fuzztime, "-parallel", "2", ft.pkg)
			cmd.Dir = repo
			cmd.Env = append(os.Environ(), "GOFLAGS=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s in %s: %v\n%s", ft.name, ft.pkg, err, out)
			}
			execs := "?"
			if m := fuzzExecs.FindAllStringSubmatch(string(out), -1); len(m) > 0 {
				execs = m[len(m)-1][1]
			}
			t.Logf("FIGURE fuzz target %s (%s): %s executions (-fuzztime %s), no failure", ft.name, ft.pkg, execs, fuzztime)
		})
	}
}
