package sysimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Root is a writable, throw-away copy of the base root: an overlay mount
// over it (or, where overlayfs is unavailable, a full copy), with /proc,
// /sys and /dev mounted for chroot use. Close undoes everything.
type Root struct {
	Dir     string // the root to chroot into
	scratch string
	mounts  []string // mounted, in order
}

// NewRoot makes a Root over base in a fresh directory under scratch.
func NewRoot(ctx context.Context, base, scratch string) (*Root, error) {
	r := &Root{scratch: scratch}
	up, work, merged := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), filepath.Join(scratch, "root")
	for _, d := range []string{up, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, up, work)
	if _, err := run(ctx, nil, "mount", "-t", "overlay", "overlay", "-o", opts, merged); err == nil {
		r.mounts = append(r.mounts, merged)
	} else {
		os.Remove(merged)
		if out, err := run(ctx, nil, "cp", "-a", "--reflink=auto", base, merged); err != nil {
			return nil, fmt.Errorf("copy root: %w\n%s", err, out)
		}
	}
	r.Dir = merged
	return r, nil
}

// MountAPI mounts /proc, /sys and /dev (bind) into the root, as apt, dkms
// and the compiler need in a chroot. /run stays the root's own, empty
// directory: no /run/systemd/system, so systemd counts as not running.
func (r *Root) MountAPI(ctx context.Context) error {
	for _, m := range [][]string{
		{"-t", "proc", "proc", filepath.Join(r.Dir, "proc")},
		{"-t", "sysfs", "sysfs", filepath.Join(r.Dir, "sys")},
		{"--bind", "/dev", filepath.Join(r.Dir, "dev")},
		{"-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", filepath.Join(r.Dir, "dev", "pts")},
	} {
		target := m[len(m)-1]
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if out, err := run(ctx, nil, "mount", m...); err != nil {
			return fmt.Errorf("mount %v: %w\n%s", m, err, out)
		}
		r.mounts = append(r.mounts, target)
	}
	return nil
}

// UnmountAPI undoes MountAPI (before making an image of the root).
func (r *Root) UnmountAPI() error {
	var keep []string
	var firstErr error
	for i := len(r.mounts) - 1; i >= 0; i-- {
		m := r.mounts[i]
		if m == r.Dir {
			keep = append([]string{m}, keep...)
			continue
		}
		if out, err := exec.Command("umount", "-l", m).CombinedOutput(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("umount %s: %w: %s", m, err, out)
		}
	}
	r.mounts = keep
	return firstErr
}

// Chroot runs a command inside the root, with a clean environment.
func (r *Root) Chroot(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	full := append([]string{r.Dir, "/usr/bin/env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}, env...)
	full = append(full, name)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "chroot", full...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd.CombinedOutput()
}

// Path returns the host path of a path inside the root.
func (r *Root) Path(p string) string { return filepath.Join(r.Dir, p) }

// Kernels lists the kernel releases installed in the root (with an image).
func (r *Root) Kernels() []string {
	m, _ := filepath.Glob(r.Path("/boot/vmlinuz-*"))
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimPrefix(filepath.Base(p), "vmlinuz-"))
	}
	sort.Strings(out)
	return out
}

// Close unmounts everything and removes the scratch directory.
func (r *Root) Close() error {
	err := r.UnmountAPI()
	for i := len(r.mounts) - 1; i >= 0; i-- {
		if out, e := exec.Command("umount", r.mounts[i]).CombinedOutput(); e != nil {
			if out2, e2 := exec.Command("umount", "-l", r.mounts[i]).CombinedOutput(); e2 != nil && err == nil {
				err = fmt.Errorf("umount %s: %v: %s %s", r.mounts[i], e2, out, out2)
			}
		}
	}
	r.mounts = nil
	// Never recurse into something still mounted (a bind of /dev!).
	if m := mountsUnder(r.scratch); len(m) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %v", r.scratch, m)
	}
	if e := os.RemoveAll(r.scratch); e != nil && err == nil {
		err = e
	}
	return err
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return []string{"(cannot read /proc/self/mounts)"}
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := strings.ReplaceAll(f[1], "\\040", " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}
