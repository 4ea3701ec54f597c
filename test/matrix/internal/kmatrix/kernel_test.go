package kmatrix

import (
	"os"
	"path/filepath"
	"testing"
)

// The image sits in /boot up to 6.x and in the modules directory in the
// 7.x split packages; modules in /lib (bullseye) or /usr/lib.
func TestTreeLayout(t *testing.T) {
	for _, c := range []struct {
		files            []string
		vmlinuz, modules string
	}{
		{[]string{"boot/vmlinuz-r", "lib/modules/r/kernel/x.ko"}, "boot/vmlinuz-r", "lib/modules/r"},
		{[]string{"boot/vmlinuz-r", "usr/lib/modules/r/kernel/x.ko"}, "boot/vmlinuz-r", "usr/lib/modules/r"},
		{[]string{"usr/lib/modules/r/vmlinuz", "usr/lib/modules/r/kernel/x.ko"}, "usr/lib/modules/r/vmlinuz", "usr/lib/modules/r"},
	} {
		root := t.TempDir()
		for _, f := range c.files {
			os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755)
			os.WriteFile(filepath.Join(root, f), nil, 0o644)
		}
		tr := &Tree{Root: root, K: &Kernel{Release: "r"}}
		if got := tr.Vmlinuz(); got != filepath.Join(root, c.vmlinuz) {
			t.Errorf("%v: Vmlinuz = %s, want %s", c.files, got, c.vmlinuz)
		}
		if got := tr.ModulesDir(); got != filepath.Join(root, c.modules) {
			t.Errorf("%v: ModulesDir = %s, want %s", c.files, got, c.modules)
		}
	}
}
