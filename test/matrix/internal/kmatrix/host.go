package kmatrix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CacheDir is ${KECHO_CACHE_DIR:-~/.cache/kecho}/matrix.
func CacheDir() string {
	d := os.Getenv("KECHO_CACHE_DIR")
	if d == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = "/root"
		}
		d = filepath.Join(home, ".cache", "kecho")
	}
	return filepath.Join(d, "matrix")
}

// HostSuite is VERSION_CODENAME of the host's /etc/os-release.
func HostSuite(osRelease string) string {
	b, err := os.ReadFile(osRelease)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// InstalledVersion is the installed version of a Debian package, "" if it
// is not installed.
func InstalledVersion(r Runner) func(string) string {
	return func(pkg string) string {
		out, err := r.Run(context.Background(), Cmd{Name: "dpkg-query", Args: []string{"-W", "-f", "${db:Status-Status} ${Version}", pkg}})
		if err != nil {
			return ""
		}
		f := strings.Fields(string(out))
		if len(f) == 2 && f[0] == "installed" {
			return f[1]
		}
		return ""
	}
}

// RepoRoot is the directory holding go.mod at or above dir.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		p := filepath.Dir(dir)
		if p == dir {
			return "", fmt.Errorf("no go.mod at or above the working directory")
		}
		dir = p
	}
}

// ModuleTree is the module source to build: dkms/ once it has its
// dkms.conf, else the test stand-in tree.
func ModuleTree(root string) (dir string, stub bool) {
	if _, err := os.Stat(filepath.Join(root, "dkms", "dkms.conf")); err == nil {
		return filepath.Join(root, "dkms"), false
	}
	return filepath.Join(root, "test", "system", "testdata", "dkms-stub"), true
}

// Version is the module version: $KECHO_VERSION, else the VERSION file.
func Version(root string) string {
	if v := os.Getenv("KECHO_VERSION"); v != "" {
		return v
	}
	b, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return "0.0.0"
	}
	return strings.TrimSpace(string(b))
}

// Tools are the host programs a matrix run needs.
var Tools = []string{"apt-get", "apt-cache", "debootstrap", "dpkg-deb", "dpkg-query", "unshare", "chroot", "mount", "modinfo", "depmod", "make", "cp", "nice"}

// MissingTools names the Tools (and root) the host lacks, or "".
func MissingTools(extra ...string) string {
	var miss []string
	if os.Geteuid() != 0 {
		miss = append(miss, "root")
	}
	for _, t := range append(append([]string(nil), Tools...), extra...) {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return strings.Join(miss, ", ")
}
