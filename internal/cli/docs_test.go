package cli

import (
	"bytes"
	"compress/gzip"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/internal/pkgbuild"
)

// The packager renders kechod(8) and the completions from New.
func TestManPagesAndCompletions(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	man, comp, err := pkgbuild.GenerateDocs(New, filepath.Join(root, "packaging", "man", "kechod.yaml.5.md"), "1.2.3", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", "-ping", "-config", "-version"} {
		p := "/usr/share/man/man8/kechod" + sub + ".8.gz"
		gz, ok := man[p]
		if !ok {
			t.Errorf("no %s in %v", p, man.ManPaths())
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(zr)
		if !strings.Contains(string(b), ".SH EXAMPLE") || !strings.Contains(string(b), "kechod 1.2.3") {
			t.Errorf("%s lacks examples or version:\n%s", p, b)
		}
	}
	if !strings.Contains(string(comp["bash"]), "kechod") || !strings.Contains(string(comp["fish"]), "complete -c kechod") || len(comp["zsh"]) == 0 {
		t.Errorf("completions: bash %d, zsh %d, fish %d bytes", len(comp["bash"]), len(comp["zsh"]), len(comp["fish"]))
	}
}
