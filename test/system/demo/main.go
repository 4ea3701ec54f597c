// Command demo boots Debian 12 with the kecho packages from dist/ installed
// and shows what an operator sees: `systemctl status kechod` and a
// `kechod ping`. Run as root: `make demo-system`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kecho-dev/kecho/test/system/sysimage"
)

func main() {
	dist := flag.String("dist", "dist", "directory with kecho-dkms_*_all.deb and kechod_*_amd64.deb (make packages)")
	verbose := flag.Bool("v", false, "show the guest's serial console while it runs")
	keep := flag.Bool("keep", false, "keep the image and print its path")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dist, *verbose, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo-system: %v\n", err)
		os.Exit(1)
	}
}

// newest returns the file matching pattern in dir with the highest version
// (by name); several versions may lie in dist/ after version bumps.
func newest(dir, pattern string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		return "", fmt.Errorf("no %s in %s: run `make packages` first", pattern, dir)
	}
	sort.Slice(m, func(i, j int) bool {
		si, _ := os.Stat(m[i])
		sj, _ := os.Stat(m[j])
		return si.ModTime().Before(sj.ModTime())
	})
	return m[len(m)-1], nil
}

func run(ctx context.Context, dist string, verbose, keep bool) error {
	if miss := sysimage.Missing("debootstrap", "mkfs.ext4", "qemu-system-x86_64", "chroot"); miss != "" {
		return fmt.Errorf("needs %s (run as root after `make deps`)", miss)
	}
	var debs []string
	for _, p := range []string{"kecho-dkms_*_all.deb", "kechod_*_amd64.deb"} {
		d, err := newest(dist, p)
		if err != nil {
			return err
		}
		debs = append(debs, d)
	}
	dir, err := os.MkdirTemp(sysimage.CacheDir(), "demo-system-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("image directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("# apt install %s (in a Debian 12 chroot; DKMS builds the module there)\n", strings.Join(names(debs), " "))
	sys, err := sysimage.PrepareSystem(ctx, dir, os.Stdout, debs, nil)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(sys.InstallLog), "\n") {
		if strings.HasPrefix(l, "kecho-dkms:") || strings.HasPrefix(l, "Setting up kech") {
			fmt.Println("  " + l)
		}
	}
	fmt.Printf("# booting it in qemu (%s, kernel %s, systemd as init); 1-3 minutes under TCG\n", sysimage.Accel(), sys.Release)
	var console io.Writer
	if verbose {
		console = os.Stderr
	}
	res, err := sysimage.Boot(ctx, sysimage.BootOptions{Image: sys.Image, Console: console, Timeout: 5 * time.Minute})
	if err != nil {
		return err
	}
	rep, err := sysimage.ParseReport(res.Report)
	if err != nil {
		return fmt.Errorf("%w\nconsole tail:\n%s", err, tailStr(res.Console, 3000))
	}
	fmt.Printf("# guest ran for %s\n\n", res.Duration.Round(time.Second))
	for _, s := range []struct{ step, cmd string }{
		{"status", "systemctl status kechod"},
		{"ping", `kechod ping 127.0.0.1 "hello world"`},
		{"reload", "systemctl reload kechod"},
		{"is-active-after-reload", "systemctl is-active kechod"},
		{"kechod-status", "kechod status"},
	} {
		st, ok := rep.Steps[s.step]
		if !ok {
			continue
		}
		out := strings.TrimRight(st.Out, "\n")
		if ms, ok := strings.CutPrefix(out, "reload_ms="); ok {
			out = "(returned after " + ms + " ms)"
		}
		fmt.Printf("root@vm:~# %s\n%s\n", s.cmd, out)
		if st.RC != 0 {
			fmt.Printf("(exit status %d)\n", st.RC)
		}
		fmt.Println()
	}
	ping := rep.Steps["ping"]
	if ping.RC != 0 || !strings.Contains(ping.Out, "hello world") {
		return fmt.Errorf("the echo did not come back (kechod ping exit status %d)", ping.RC)
	}
	return nil
}

func names(p []string) []string {
	var out []string
	for _, x := range p {
		out = append(out, "./"+filepath.Base(x))
	}
	return out
}

func tailStr(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
