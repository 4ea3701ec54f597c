package pkgbuild

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// CommandFactory returns kechod's command tree (internal/cli.New); the man
// page kechod(8) and the shell completions are generated from it.
type CommandFactory func() *cobra.Command

// Docs are the generated, architecture-independent documentation files:
// destination path in the package -> content.
type Docs map[string][]byte

// Completion file locations, per package format.
var completionPaths = map[string]map[string]string{
	"deb": {
		"bash": "/usr/share/bash-completion/completions/kechod",
		"zsh":  "/usr/share/zsh/vendor-completions/_kechod",
		"fish": "/usr/share/fish/vendor_completions.d/kechod.fish",
	},
	"rpm": {
		"bash": "/usr/share/bash-completion/completions/kechod",
		"zsh":  "/usr/share/zsh/site-functions/_kechod",
		"fish": "/usr/share/fish/vendor_completions.d/kechod.fish",
	},
}

// GenerateDocs renders kechod(8) (one page per command, from the cobra tree),
// kechod.yaml(5) (from the markdown source at yamlManSrc) and the bash, zsh
// and fish completions. Man pages are gzip -9n compressed.
func GenerateDocs(newCmd CommandFactory, yamlManSrc, version string, date time.Time) (man Docs, completions map[string][]byte, err error) {
	man = Docs{}
	root := newCmd()
	disableAutoGenTag(root)

	tmp, err := os.MkdirTemp("", "kechod-man-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	hdr := &doc.GenManHeader{
		Section: "8",
		Date:    &date,
		Source:  "kechod " + version,
		Manual:  "System Administration",
	}
	if err := doc.GenManTree(root, hdr, tmp); err != nil {
		return nil, nil, fmt.Errorf("kechod(8): %w", err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(tmp, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		gz, err := gzipBytes(b)
		if err != nil {
			return nil, nil, err
		}
		man["/usr/share/man/man8/"+e.Name()+".gz"] = gz
	}

	src, err := os.ReadFile(yamlManSrc)
	if err != nil {
		return nil, nil, fmt.Errorf("kechod.yaml(5) source: %w", err)
	}
	md := strings.NewReplacer("@VERSION@", version, "@DATE@", date.Format("January 2006")).Replace(string(src))
	gz, err := gzipBytes(md2man.Render([]byte(md)))
	if err != nil {
		return nil, nil, err
	}
	man["/usr/share/man/man5/kechod.yaml.5.gz"] = gz

	completions = map[string][]byte{}
	var b bytes.Buffer
	if err := root.GenBashCompletionV2(&b, true); err != nil {
		return nil, nil, err
	}
	completions["bash"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	if err := root.GenZshCompletion(&b); err != nil {
		return nil, nil, err
	}
	completions["zsh"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	if err := root.GenFishCompletion(&b, true); err != nil {
		return nil, nil, err
	}
	completions["fish"] = append([]byte(nil), b.Bytes()...)
	return man, completions, nil
}

// ManPaths lists the man page destinations, sorted.
func (d Docs) ManPaths() []string {
	var out []string
	for k := range d {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func disableAutoGenTag(c *cobra.Command) {
	c.DisableAutoGenTag = true
	for _, sub := range c.Commands() {
		disableAutoGenTag(sub)
	}
}

// gzipBytes compresses like `gzip -9n`: best compression, no name, no time.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
