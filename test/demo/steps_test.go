package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The rendered script shows each command and its indented output, goes
// on after a failing optional step and stops at a failing required one.
func TestScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	s := script([]step{
		{Title: "first", Commands: []string{"echo 'it''s here'"}},
		{Title: "optional", Commands: []string{"echo soft; exit 3"}, Optional: true},
		{Title: "required", Commands: []string{"echo hard; exit 4", "echo never"}},
		{Title: "after", Commands: []string{"echo never either"}},
	})
	out, err := exec.Command("sh", "-c", s).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("script exit: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"── 1. first\n$ echo 'it''s here'\n    its here\n",
		"── 2. optional\n", "    soft\n    (exit status 3)\n",
		"── 3. required\n$ echo hard; exit 4\n    hard\n    FAILED (exit status 4)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "never") || strings.Contains(got, "4. after") {
		t.Errorf("the script went on after a failed required step:\n%s", got)
	}
}

func TestTranscriptDropsFraming(t *testing.T) {
	var b strings.Builder
	tr := transcript(&b)
	tr.Write([]byte("KECHO-VM: begin 6.1\r\nhello\r\nKECHO-VM: script-exit 0\nwor"))
	tr.Write([]byte("ld\nKECHO-VM: done\n"))
	if b.String() != "hello\nworld\n" {
		t.Errorf("transcript %q", b.String())
	}
}
