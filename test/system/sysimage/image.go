package sysimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// pkgDir is where package files are copied inside a root for apt.
const pkgDir = "/var/cache/kecho-test/pkgs"

// Apt runs apt-get inside the root, non-interactively, keeping edited
// conffiles (--force-confold) as an unattended upgrade does.
func (r *Root) Apt(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"-y", "-q", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
		"-o", "Dpkg::Use-Pty=0"}, args...)
	out, err := r.Chroot(ctx, nil, "apt-get", full...)
	if err != nil {
		return out, fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 6000))
	}
	return out, nil
}

// CopyIn copies host files into dir inside the root and returns their paths
// inside the root.
func (r *Root) CopyIn(dir string, files ...string) ([]string, error) {
	if err := os.MkdirAll(r.Path(dir), 0o755); err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(r.Path(p), b, 0o644); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// InstallDebs copies package files into the root and installs them with
// `apt-get install ./…` (extra apt arguments first, e.g. --reinstall).
func (r *Root) InstallDebs(ctx context.Context, extra []string, debs ...string) ([]byte, error) {
	in, err := r.CopyIn(pkgDir, debs...)
	if err != nil {
		return nil, err
	}
	return r.Apt(ctx, append(append([]string{"install"}, extra...), in...)...)
}

// WriteFile writes a file inside the root, creating its directory.
func (r *Root) WriteFile(p string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(r.Path(p)), 0o755); err != nil {
		return err
	}
	return os.WriteFile(r.Path(p), b, mode)
}

// Image is a bootable ext4 image of a root, with the root's own kernel and
// initramfs copied beside it.
type Image struct {
	Path    string // ext4 file system image (the whole disk, no partitions)
	Kernel  string // vmlinuz
	Initrd  string // initrd.img
	Release string // kernel release
}

// MakeImage unmounts the API file systems and writes the root as an ext4
// image into dir (mkfs.ext4 -d: no loop device, no mount).
func (r *Root) MakeImage(ctx context.Context, dir string) (*Image, error) {
	if err := r.UnmountAPI(); err != nil {
		return nil, err
	}
	kernels := r.Kernels()
	if len(kernels) == 0 {
		return nil, fmt.Errorf("no kernel in %s/boot", r.Dir)
	}
	rel := kernels[len(kernels)-1]
	img := &Image{
		Path:    filepath.Join(dir, "root.ext4"),
		Kernel:  filepath.Join(dir, "vmlinuz-"+rel),
		Initrd:  filepath.Join(dir, "initrd.img-"+rel),
		Release: rel,
	}
	for src, dst := range map[string]string{"/boot/vmlinuz-" + rel: img.Kernel, "/boot/initrd.img-" + rel: img.Initrd} {
		b, err := os.ReadFile(r.Path(src))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return nil, err
		}
	}
	// Size: what the root uses plus room for the journal and the tests.
	out, err := exec.CommandContext(ctx, "du", "-sxm", r.Dir).Output()
	if err != nil {
		return nil, fmt.Errorf("du %s: %w", r.Dir, err)
	}
	mb, err := strconv.Atoi(strings.Fields(string(out))[0])
	if err != nil {
		return nil, err
	}
	size := fmt.Sprintf("%dM", mb*13/10+512)
	if out, err := run(ctx, nil, "mkfs.ext4", "-q", "-F", "-L", "kecho-root", "-E", "root_owner=0:0", "-d", r.Dir, img.Path, size); err != nil {
		return nil, fmt.Errorf("mkfs.ext4 -d %s: %w\n%s", r.Dir, err, out)
	}
	return img, nil
}
