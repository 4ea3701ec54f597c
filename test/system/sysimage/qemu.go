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
	"time"
)

// BootOptions describe one boot of an Image in qemu.
type BootOptions struct {
	Image   *Image
	Cmdline string        // appended to the kernel command line
	Timeout time.Duration // default 6 minutes
	Console io.Writer     // the guest's serial console (ttyS0), as it runs
	Memory  string        // default 2G
}

// BootResult is what a boot left behind.
type BootResult struct {
	Console  []byte        // ttyS0: kernel and systemd messages
	Report   []byte        // ttyS1: what the guest wrote to /dev/ttyS1
	Duration time.Duration // from qemu start to its exit
}

// Accel is the qemu accelerator: TCG by default (a stock Debian kernel hangs
// under KVM on these machines); KECHO_QEMU_ACCEL=kvm opts in.
func Accel() string {
	if os.Getenv("KECHO_QEMU_ACCEL") == "kvm" {
		return "kvm"
	}
	return "tcg,thread=multi"
}

// Boot runs qemu-system-x86_64 on the image with its own kernel and
// initramfs, systemd as init, until the guest powers off (or the timeout).
// ttyS0 is the console, ttyS1 a second serial port the guest writes its
// report to. The image is the disk and is modified by the boot.
func Boot(ctx context.Context, o BootOptions) (*BootResult, error) {
	if o.Timeout == 0 {
		o.Timeout = 6 * time.Minute
	}
	if o.Memory == "" {
		o.Memory = "2G"
	}
	dir, err := os.MkdirTemp("", "kecho-boot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	report := filepath.Join(dir, "report")
	cmdline := "root=/dev/vda rw rootfstype=ext4 console=ttyS0,115200 panic=-1 " +
		"systemd.show_status=1 systemd.journald.forward_to_console=0 net.ifnames=0 " + o.Cmdline
	args := []string{
		"-accel", Accel(), "-smp", "2", "-m", o.Memory,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", o.Image.Kernel, "-initrd", o.Image.Initrd, "-append", cmdline,
		"-drive", "file=" + o.Image.Path + ",format=raw,if=virtio,cache=unsafe",
		"-serial", "stdio",
		"-serial", "file:" + report,
		"-device", "virtio-rng-pci",
		"-nic", "none",
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var console bytes.Buffer
	var w io.Writer = &console
	if o.Console != nil {
		w = io.MultiWriter(&console, o.Console)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	start := time.Now()
	runErr := cmd.Run()
	res := &BootResult{Console: console.Bytes(), Duration: time.Since(start)}
	res.Report, _ = os.ReadFile(report)
	if ctx.Err() != nil {
		return res, fmt.Errorf("qemu: guest did not power off within %s\nconsole tail:\n%s", o.Timeout, tail(res.Console, 4000))
	}
	if runErr != nil {
		return res, fmt.Errorf("qemu %s: %w\nconsole tail:\n%s", strings.Join(args, " "), runErr, tail(res.Console, 4000))
	}
	return res, nil
}
