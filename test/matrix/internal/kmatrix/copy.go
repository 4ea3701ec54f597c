package kmatrix

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// buildOutput reports whether a name in a module tree is something a
// build made (objects, the module, kbuild's .cmd files, the generated
// compat header) rather than a source: those are not copied, so a build
// never starts from another kernel's leftovers.
func buildOutput(name string) bool {
	if strings.HasPrefix(name, ".") {
		return true
	}
	for _, sfx := range []string{".o", ".ko", ".mod", ".mod.c", ".a", ".symvers", ".order", ".tmp"} {
		if strings.HasSuffix(name, sfx) {
			return true
		}
	}
	return strings.HasPrefix(name, "compat_gen.h")
}

// CopyTree copies the sources of the module tree src into dst (which is
// created), leaving out build outputs.
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel != "." && buildOutput(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		}
		return nil
	})
}
