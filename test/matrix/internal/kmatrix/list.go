package kmatrix

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Entry is one line of the kernel list.
type Entry struct {
	Series string // "6.12"
	Suite  string // "trixie-backports"
	Boot   bool   // also boot it and run the in-guest tests
	Line   int
}

// Name identifies the entry in tables and test names: "6.12/trixie".
func (e Entry) Name() string { return e.Series + "/" + e.Suite }

var (
	seriesRe = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)
	suiteRe  = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
)

// ParseList reads a kernel list: "SERIES SUITE [boot]" per line, '#'
// starts a comment, blank lines are ignored.
func ParseList(r io.Reader, name string) ([]Entry, error) {
	var out []Entry
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("%s:%d: want \"SERIES SUITE [boot]\", got %q", name, n, strings.TrimSpace(line))
		}
		e := Entry{Series: f[0], Suite: f[1], Line: n}
		if !seriesRe.MatchString(e.Series) {
			return nil, fmt.Errorf("%s:%d: series %q is not MAJOR.MINOR (e.g. 6.12)", name, n, e.Series)
		}
		if !suiteRe.MatchString(e.Suite) {
			return nil, fmt.Errorf("%s:%d: suite %q is not a Debian suite name (e.g. trixie-backports)", name, n, e.Suite)
		}
		if len(f) == 3 {
			if f[2] != "boot" {
				return nil, fmt.Errorf("%s:%d: unknown flag %q (the only flag is \"boot\")", name, n, f[2])
			}
			e.Boot = true
		}
		if prev, ok := seen[e.Name()]; ok {
			return nil, fmt.Errorf("%s:%d: %s is already listed on line %d", name, n, e.Name(), prev)
		}
		seen[e.Name()] = n
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no kernels listed", name)
	}
	return out, nil
}

// ReadList parses the kernel list file at path.
func ReadList(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel list: %w", err)
	}
	defer f.Close()
	return ParseList(f, path)
}

// Filter keeps the entries whose series or name (series/suite) is in only;
// an empty only keeps all.
func Filter(es []Entry, only []string) ([]Entry, error) {
	if len(only) == 0 {
		return es, nil
	}
	var out []Entry
	for _, o := range only {
		n := 0
		for _, e := range es {
			if o == e.Series || o == e.Name() {
				out = append(out, e)
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%q matches no kernel in the list", o)
		}
	}
	return out, nil
}

// BaseSuite is the release whose user space builds for suite's kernels:
// backports, updates and security suites belong to their release;
// unstable and experimental to sid.
func BaseSuite(suite string) string {
	switch suite {
	case "unstable", "experimental", "rc-buggy":
		return "sid"
	}
	for _, sfx := range []string{"-backports-sloppy", "-backports", "-proposed-updates", "-updates", "-security"} {
		if strings.HasSuffix(suite, sfx) {
			return strings.TrimSuffix(suite, sfx)
		}
	}
	return suite
}

// StableRelease reports whether suite is a release with -updates and
// -security companions (not sid, experimental or a derived suite).
func StableRelease(suite string) bool {
	return BaseSuite(suite) == suite && suite != "sid"
}
