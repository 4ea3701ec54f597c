package pkgbuild

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RenderScript reads a maintainer script source from dir, inlines every
// `#INCLUDE file` line with that file (from the same dir) and replaces
// @VERSION@. The result is a self-contained POSIX sh script.
func RenderScript(dir, name, version string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if inc, ok := strings.CutPrefix(line, "#INCLUDE "); ok {
			inc = strings.TrimSpace(inc)
			body, err := os.ReadFile(filepath.Join(dir, inc))
			if err != nil {
				return "", fmt.Errorf("%s: include %s: %w", name, inc, err)
			}
			fmt.Fprintf(&out, "# ---- begin %s ----\n%s# ---- end %s ----\n", inc, body, inc)
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	s := strings.ReplaceAll(out.String(), "@VERSION@", version)
	if strings.Contains(s, "#INCLUDE") {
		return "", fmt.Errorf("%s: nested #INCLUDE is not supported", name)
	}
	return s, nil
}
