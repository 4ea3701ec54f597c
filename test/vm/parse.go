package vm

import (
	"regexp"
	"strconv"
	"strings"
)

// Marker lines /init writes on the test channel around each guest binary.
const (
	markBegin      = "KECHO-VM: begin "
	markRun        = "KECHO-VM: run "
	markExit       = "KECHO-VM: exit "
	markScriptExit = "KECHO-VM: script-exit "
	markDone       = "KECHO-VM: done"
)

// Guest test outcomes.
const (
	StatusPass = "pass"
	StatusFail = "fail"
	StatusSkip = "skip"
	// StatusUnfinished: the test started but printed no result (the
	// binary crashed, timed out or the guest died).
	StatusUnfinished = ""
)

// GuestTest is one test (or subtest) that ran inside the guest.
type GuestTest struct {
	// Name is the full name, e.g. "TestEcho/size_1472".
	Name string
	// Status is StatusPass, StatusFail, StatusSkip or StatusUnfinished.
	Status string
	// Elapsed is the duration the guest reported, e.g. "0.12s".
	Elapsed string
	// Output holds the test's own output lines (t.Log, panics).
	Output []string
	// Subtests in the order they started.
	Subtests []*GuestTest
}

// Binary is one guest test binary's run.
type Binary struct {
	Name string // e.g. "guest.test"
	// Exit is the binary's exit status, or -1 when the guest never
	// reported one.
	Exit int
	// Tests are the top-level tests in the order they started.
	Tests []*GuestTest
	// Output is the binary's complete output with framing markers
	// removed.
	Output []string
}

// AllTests returns every test of the binary, subtests included, parents
// before children.
func (b *Binary) AllTests() []*GuestTest {
	var out []*GuestTest
	var walk func([]*GuestTest)
	walk = func(ts []*GuestTest) {
		for _, t := range ts {
			out = append(out, t)
			walk(t.Subtests)
		}
	}
	walk(b.Tests)
	return out
}

// framing matches the lines `go test -test.v=test2json` marks with ^V.
var (
	frameStart  = regexp.MustCompile(`^=== (RUN|PAUSE|CONT|NAME)\s+(\S.*)$`)
	frameResult = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(([^)]*)\)`)
)

// ParseGuestOutput splits the guest's test channel into binaries and
// their tests. It also returns whether the guest reached the end of
// /init ("done"), the exit status of the caller's script (-1 if it did
// not report one) and the lines printed outside any binary (the script's
// output).
func ParseGuestOutput(out string) (bins []*Binary, done bool, scriptExit int, other []string) {
	scriptExit = -1
	var cur *Binary
	var tests map[string]*GuestTest
	var current *GuestTest
	lookup := func(name string) *GuestTest {
		if t, ok := tests[name]; ok {
			return t
		}
		t := &GuestTest{Name: name}
		tests[name] = t
		parent := name
		for {
			i := strings.LastIndex(parent, "/")
			if i < 0 {
				cur.Tests = append(cur.Tests, t)
				break
			}
			parent = parent[:i]
			if p, ok := tests[parent]; ok {
				p.Subtests = append(p.Subtests, t)
				break
			}
		}
		return t
	}
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimRight(raw, "\r")
		switch {
		case strings.HasPrefix(line, markRun):
			cur = &Binary{Name: strings.TrimSpace(strings.TrimPrefix(line, markRun)), Exit: -1}
			tests = map[string]*GuestTest{}
			current = nil
			bins = append(bins, cur)
			continue
		case strings.HasPrefix(line, markExit):
			f := strings.Fields(strings.TrimPrefix(line, markExit))
			if cur != nil && len(f) == 2 && f[0] == cur.Name {
				if n, err := strconv.Atoi(f[1]); err == nil {
					cur.Exit = n
				}
			}
			cur = nil
			continue
		case strings.HasPrefix(line, markScriptExit):
			if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, markScriptExit))); err == nil {
				scriptExit = n
			}
			continue
		case strings.HasPrefix(line, markDone):
			done = true
			continue
		case strings.HasPrefix(line, markBegin):
			continue
		}
		if cur == nil {
			if line != "" {
				other = append(other, line)
			}
			continue
		}
		framed := strings.HasPrefix(line, "\x16")
		text := strings.TrimPrefix(line, "\x16")
		if framed {
			body := strings.TrimLeft(text, " ")
			if m := frameStart.FindStringSubmatch(body); m != nil {
				current = lookup(strings.TrimSpace(m[2]))
				if m[1] == "RUN" {
					cur.Output = append(cur.Output, body)
				}
				continue
			}
			if m := frameResult.FindStringSubmatch(body); m != nil {
				current = lookup(m[2])
				current.Status = map[string]string{"PASS": StatusPass, "FAIL": StatusFail, "SKIP": StatusSkip}[m[1]]
				current.Elapsed = m[3]
				cur.Output = append(cur.Output, body)
				continue
			}
			// PASS / FAIL / "ok" summary lines of the binary.
			cur.Output = append(cur.Output, body)
			current = nil
			continue
		}
		cur.Output = append(cur.Output, text)
		if current != nil {
			current.Output = append(current.Output, text)
		}
	}
	return bins, done, scriptExit, other
}
