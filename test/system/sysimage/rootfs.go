// Package sysimage prepares Debian 12 (bookworm) systems for kecho's
// system tests and demo: a debootstrapped root cached outside the
// repository, throw-away overlays of it to chroot into, ext4 images made
// from them, and qemu boots of those images. Everything here needs root.
package sysimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Mirror is the Debian archive debootstrap and the guest use.
var Mirror = envOr("KECHO_DEBIAN_MIRROR", "http://deb.debian.org/debian")

// Packages installed into the base root, besides debootstrap's minbase:
// the kernel with its headers and initramfs, DKMS and its compiler, systemd
// as init, and kechod's dependencies.
var Packages = []string{
	"ca-certificates", "dbus", "dkms", "initramfs-tools", "iproute2", "kmod",
	"linux-headers-amd64", "linux-image-amd64", "procps", "systemd", "systemd-sysv", "udev",
}

// Recipe identifies how the cached root was made; a root made by another
// recipe is rebuilt.
func Recipe() string {
	return fmt.Sprintf("debootstrap --variant=minbase --include=%s bookworm %s\n", strings.Join(Packages, ","), Mirror)
}

// CacheDir is ${KECHO_CACHE_DIR:-~/.cache/kecho}.
func CacheDir() string {
	if d := os.Getenv("KECHO_CACHE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "kecho")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Missing names the host tools (and privileges) the system tests need but
// lack, or returns "".
func Missing(tools ...string) string {
	var miss []string
	if os.Geteuid() != 0 {
		miss = append(miss, "root")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return strings.Join(miss, ", ")
}

// EnsureBase returns the cached bookworm root, building it first (1-3
// minutes) if it is missing, was made by another recipe, or
// KECHO_REFRESH_ROOTFS=1 asks for a fresh one. Concurrent callers wait for
// one build.
func EnsureBase(ctx context.Context, log io.Writer) (string, error) {
	cache := CacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "bookworm-rootfs")
	stamp := dir + ".recipe"
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	if got, err := os.ReadFile(stamp); err == nil && string(got) == Recipe() && os.Getenv("KECHO_REFRESH_ROOTFS") != "1" {
		if _, err := os.Stat(filepath.Join(dir, "usr", "sbin", "dkms")); err == nil {
			return dir, trimBase(dir)
		}
	}
	fmt.Fprintf(log, "sysimage: building %s (debootstrap, 1-3 minutes)\n", dir)
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	start := time.Now()
	args := []string{"--variant=minbase", "--include=" + strings.Join(Packages, ","), "bookworm", tmp, Mirror}
	if out, err := run(ctx, nil, "debootstrap", args...); err != nil {
		return "", fmt.Errorf("debootstrap: %w\n%s", err, tail(out, 3000))
	}
	if err := trimBase(tmp); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	if err := os.WriteFile(stamp, []byte(Recipe()), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "sysimage: %s ready in %s\n", dir, time.Since(start).Round(time.Second))
	return dir, nil
}

// run executes a command, returning its combined output.
func run(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// trimBase removes what the tests never use from a base root: downloaded
// .debs and the archive's package lists. The tests install local files
// whose dependencies are already installed, and without the 50 MB Packages
// list apt starts in a fraction of the time (much less under TCG).
func trimBase(dir string) error {
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		p := filepath.Join(dir, d)
		ents, err := os.ReadDir(p)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		for _, e := range ents {
			if e.Name() != "partial" && e.Name() != "lock" {
				if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
					return err
				}
			}
		}
		if err := os.MkdirAll(filepath.Join(p, "partial"), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"} {
		os.Remove(filepath.Join(dir, f))
	}
	return nil
}
