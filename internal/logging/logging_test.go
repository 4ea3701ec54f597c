package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kecho-dev/kecho/internal/config"
)

func TestLevelsAndFormats(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		debug, info   bool
	}{
		{"debug", "text", true, true},
		{"info", "text", false, true},
		{"warn", "json", false, false},
		{"error", "json", false, false},
	} {
		var b bytes.Buffer
		l := New(&b, config.Log{Level: tc.level, Format: tc.format})
		l.Debug("probe sent", "seq", 1)
		l.Info("module loaded", "port", 5555)
		l.Error("probe failed", "err", "timeout")
		out := b.String()
		if got := strings.Contains(out, "probe sent"); got != tc.debug {
			t.Errorf("%s: debug logged = %v, want %v\n%s", tc.level, got, tc.debug, out)
		}
		if got := strings.Contains(out, "module loaded"); got != tc.info {
			t.Errorf("%s: info logged = %v, want %v\n%s", tc.level, got, tc.info, out)
		}
		if !strings.Contains(out, "probe failed") {
			t.Errorf("%s: error not logged\n%s", tc.level, out)
		}
		last := strings.Split(strings.TrimSpace(out), "\n")
		line := last[len(last)-1]
		var m map[string]any
		isJSON := json.Unmarshal([]byte(line), &m) == nil
		if isJSON != (tc.format == "json") {
			t.Errorf("%s: line %q: JSON = %v", tc.format, line, isJSON)
		}
		if isJSON && (m["msg"] != "probe failed" || m["err"] != "timeout") {
			t.Errorf("JSON fields: %v", m)
		}
		if !isJSON && !strings.Contains(line, `msg="probe failed" err=timeout`) {
			t.Errorf("text line: %q", line)
		}
	}
}
