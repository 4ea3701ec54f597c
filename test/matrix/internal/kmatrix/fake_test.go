package kmatrix

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeRunner answers the commands it expects and fails the test on any
// other. A rule matches when every one of its words occurs in the command
// line, in order.
type fakeRunner struct {
	t     *testing.T
	mu    sync.Mutex
	rules []rule
	calls []string
}

type rule struct {
	words []string
	out   string
	err   error
	do    func(c Cmd) // side effect, e.g. create the built module
	times int         // how often it matched
}

func newFake(t *testing.T) *fakeRunner { return &fakeRunner{t: t} }

func (f *fakeRunner) on(match string, out string) *rule {
	f.rules = append(f.rules, rule{words: strings.Fields(match), out: out})
	return &f.rules[len(f.rules)-1]
}

func (f *fakeRunner) onErr(match, out string) {
	f.rules = append(f.rules, rule{words: strings.Fields(match), out: out, err: errors.New("exit status 1")})
}

func (f *fakeRunner) onDo(match string, do func(Cmd)) {
	f.rules = append(f.rules, rule{words: strings.Fields(match), do: do})
}

func fullLine(c Cmd) string { return c.Name + " " + strings.Join(c.Args, " ") }

func matches(words []string, line string) bool {
	for _, w := range words {
		i := strings.Index(line, w)
		if i < 0 {
			return false
		}
		line = line[i+len(w):]
	}
	return true
}

func (f *fakeRunner) Run(ctx context.Context, c Cmd) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := fullLine(c)
	f.calls = append(f.calls, line)
	// The last matching rule wins, so a test can override a default.
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := &f.rules[i]
		if matches(r.words, line) {
			r.times++
			if r.do != nil {
				r.do(c)
			}
			if r.err != nil {
				return []byte(r.out), &CmdError{Cmd: c.String(), Output: r.out, Err: r.err}
			}
			return []byte(r.out), nil
		}
	}
	f.t.Errorf("unexpected command: %s", line)
	return nil, errors.New("unexpected command")
}
