package vm

import (
	"strings"
	"testing"
)

func TestPrefixWriter(t *testing.T) {
	var b strings.Builder
	w := &PrefixWriter{W: &b, Prefix: "g| "}
	_, _ = w.Write([]byte("=== RUN\r\n--- PA"))
	_, _ = w.Write([]byte("SS\x16\n\nok"))
	if got, want := b.String(), "g| === RUN\ng| --- PASS\ng| \ng| ok"; got != want {
		t.Errorf("PrefixWriter wrote %q, want %q", got, want)
	}
}

func TestLineWriterWaitsForWholeLines(t *testing.T) {
	var lines []string
	w := &LineWriter{Line: func(l string) error { lines = append(lines, l); return nil }}
	_, _ = w.Write([]byte("\rKECHO-VM: be"))
	if len(lines) != 0 {
		t.Fatalf("a partial line was handed on: %q", lines)
	}
	_, _ = w.Write([]byte("gin\r\r\nx\n"))
	if got := strings.Join(lines, "|"); got != "\rKECHO-VM: begin|x" {
		t.Errorf("lines %q", got)
	}
}
