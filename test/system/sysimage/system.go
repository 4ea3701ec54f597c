package sysimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// System is a bootable Debian 12 image with the packages installed (in a
// chroot, so DKMS builds on the host, not under TCG) and the system check
// enabled.
type System struct {
	*Image
	InstallLog []byte // apt's output
}

// PrepareSystem builds that image in dir (which must exist and be empty):
// the cached base root, an overlay of it, `apt-get install ./<debs>`, the
// check unit, then ext4. guestDebs are put into the image for the check to
// install while systemd runs (a kechod upgrade).
func PrepareSystem(ctx context.Context, dir string, log io.Writer, debs, guestDebs []string) (*System, error) {
	base, err := EnsureBase(ctx, log)
	if err != nil {
		return nil, err
	}
	r, err := NewRoot(ctx, base, filepath.Join(dir, "overlay"))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := r.MountAPI(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := r.InstallDebs(ctx, nil, debs...)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "sysimage: installed %d packages in the chroot in %s\n", len(debs), time.Since(start).Round(time.Second))
	if err := r.InstallSystemCheck(ctx); err != nil {
		return nil, err
	}
	os.RemoveAll(r.Path(pkgDir))
	if _, err := r.CopyIn(guestPkgDir, guestDebs...); err != nil {
		return nil, err
	}
	start = time.Now()
	img, err := r.MakeImage(ctx, dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "sysimage: wrote %s (kernel %s) in %s\n", img.Path, img.Release, time.Since(start).Round(time.Second))
	return &System{Image: img, InstallLog: out}, nil
}
