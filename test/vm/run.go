package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Spec describes one VM run. The zero value (plus TestPackages or Script)
// is a valid spec: default kernel, kecho built from the repository's
// dkms/, veth available, 10 minute timeout.
type Spec struct {
	// Kernel to boot; zero means DefaultKernel().
	Kernel Kernel

	// ModuleSource is the kecho source tree to build (a copy of it is
	// built). Empty means the repository's dkms/ (or, while dkms/ has no
	// dkms.conf, the test stand-in; see ModuleSource()).
	ModuleSource string
	// Module is a prebuilt kecho.ko for Kernel; set it to skip building
	// (e.g. a module built in a chroot for a newer compiler).
	Module string
	// NoModule leaves kecho out of the guest entirely.
	NoModule bool
	// KernelModules are in-tree modules (names) to include besides the
	// ones kecho depends on; nil means DefaultKernelModules.
	KernelModules []string

	// TestPackages are Go packages (relative to the repository root, e.g.
	// "./test/guest") whose tests are compiled with Tags into static test
	// binaries and run in the guest in this order.
	TestPackages []string
	// Tags are the build tags for TestPackages; nil means
	// []string{GuestTag}.
	Tags []string
	// RunArgs are extra arguments for every guest test binary, e.g.
	// []string{"-test.run", "TestEcho"}.
	RunArgs []string

	// Programs are Go main packages to build statically and install in
	// the guest: guest path -> package, e.g.
	// {"/usr/bin/kechod": "./cmd/kechod"}. ProgramLdflags applies to all.
	Programs       map[string]string
	ProgramLdflags string
	// ExtraFiles are host files to install: guest path -> host path.
	// Dynamically linked executables get their shared libraries too.
	ExtraFiles map[string]string

	// Env is exported to the guest tests and Script. The harness also
	// sets KECHO_VM=1, KECHO_KVER (the guest kernel release) and
	// KECHO_VERSION (the version kecho was built with).
	Env map[string]string
	// Script is a shell script (busybox sh) run in the guest after the
	// test binaries, from /tmp; its output goes to the test channel.
	Script string

	// Timeout bounds the whole run including builds; zero means
	// DefaultTimeout. A guest that has not finished by then is killed.
	Timeout time.Duration
	// Memory in MiB (default 1024) and CPUs (default 2) of the guest.
	Memory int
	CPUs   int
	// Cmdline is appended to the kernel command line.
	Cmdline string

	// Output, if set, receives the guest's test channel live (framing
	// markers included). KernelOutput, if set, receives the console.
	Output       io.Writer
	KernelOutput io.Writer
	// LogDir keeps the run's logs (kernel.log, guest.log); empty means a
	// new directory under LogRoot().
	LogDir string
	// Runner runs builds and host tools; nil means ExecRunner.
	Runner Runner
}

// Defaults.
const (
	// GuestTag is the build tag of in-guest test files.
	GuestTag = "kechoguest"
	// DefaultTimeout bounds a run.
	DefaultTimeout = 10 * time.Minute
	// EnvAccel set to "kvm" boots with KVM instead of TCG (opt-in: the
	// stock Debian kernel hangs under KVM on these hosts).
	EnvAccel = "KECHO_VM_ACCEL"
)

// DefaultKernelModules are the in-tree modules the guest gets by default.
var DefaultKernelModules = []string{"veth"}

// Result is what one VM run produced.
type Result struct {
	Kernel Kernel
	// Module is the kecho.ko that was installed ("" with NoModule).
	Module string
	// ModuleCached is true when Module is a cached build (see
	// CachedBuildModule).
	ModuleCached bool
	// ModuleStub is true when the module came from the test stand-in
	// because dkms/ has no dkms.conf yet.
	ModuleStub bool

	// Binaries are the guest test binaries' results, in run order.
	Binaries []*Binary
	// ScriptExit is the exit status of Spec.Script (-1 if none ran).
	ScriptExit int
	// ScriptOutput are the lines the script printed.
	ScriptOutput []string
	// Finished is true when the guest reached the end of /init.
	Finished bool
	// TimedOut is true when the timeout killed the guest.
	TimedOut bool

	// GuestOutput is the raw test channel, KernelLog the raw console.
	GuestOutput string
	KernelLog   string
	// Splats are the kernel log lines matching SplatPatterns; Notices
	// those matching NoticePatterns.
	Splats  []string
	Notices []string
	// LogDir holds kernel.log, guest.log and qemu.log of the run.
	LogDir string
	// BuildTime is spent building; BootTime is from starting qemu to its
	// exit.
	BuildTime time.Duration
	BootTime  time.Duration
	// QemuError is qemu's own failure, if it exited abnormally.
	QemuError error
}

// Failed reports whether the run as a whole failed: a guest binary did
// not exit 0, the script failed, the guest did not finish, or the kernel
// log has a splat.
func (r *Result) Failed() bool {
	if !r.Finished || len(r.Splats) > 0 || r.ScriptExit > 0 {
		return true
	}
	for _, b := range r.Binaries {
		if b.Exit != 0 {
			return true
		}
	}
	return false
}

// Problems lists why the run failed, one line each.
func (r *Result) Problems() []string {
	var p []string
	switch {
	case r.TimedOut:
		p = append(p, "the guest did not finish before the timeout and was killed")
	case !r.Finished:
		msg := "the guest did not finish (crash, panic or early power-off)"
		if r.QemuError != nil {
			msg += ": " + r.QemuError.Error()
		}
		p = append(p, msg)
	}
	for _, b := range r.Binaries {
		if b.Exit != 0 {
			p = append(p, fmt.Sprintf("guest binary %s exited with status %d", b.Name, b.Exit))
		}
	}
	if r.ScriptExit > 0 {
		p = append(p, fmt.Sprintf("guest script exited with status %d", r.ScriptExit))
	}
	for _, s := range r.Splats {
		p = append(p, "kernel log: "+s)
	}
	return p
}

// LogRoot is where runs keep their logs: CacheRoot()/vm-logs.
func LogRoot() string {
	return filepath.Join(CacheRoot(), "vm-logs")
}

// keepLogs is how many runs' log directories LogRoot keeps.
const keepLogs = 30

func newLogDir() (string, error) {
	root := LogRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	if ents, err := os.ReadDir(root); err == nil && len(ents) >= keepLogs {
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents[:len(ents)-keepLogs+1] {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
	return os.MkdirTemp(root, time.Now().UTC().Format("20060102-150405-"))
}

// Run builds everything the spec needs, boots the guest, waits for it to
// finish (or the timeout) and returns what happened. An error means the
// run could not be set up (build failure, missing tool); the guest's own
// failures are in the Result (see Failed and Problems).
func Run(ctx context.Context, spec Spec) (*Result, error) {
	if spec.Timeout == 0 {
		spec.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	r := spec.Runner
	if r == nil {
		r = ExecRunner{}
	}
	res := &Result{ScriptExit: -1}
	start := time.Now()

	k := spec.Kernel
	if k.Release == "" {
		var err error
		if k, err = DefaultKernel(); err != nil {
			return nil, err
		}
	}
	res.Kernel = k
	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	version := Version(repo)
	work, err := os.MkdirTemp("", "kecho-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	if !spec.NoModule {
		res.Module = spec.Module
		if res.Module == "" {
			src := spec.ModuleSource
			if src == "" {
				src, res.ModuleStub = ModuleSource(repo)
			}
			if res.Module, res.ModuleCached, err = CachedBuildModule(ctx, r, k, src, version, work); err != nil {
				return nil, err
			}
		}
	}

	tags := spec.Tags
	if tags == nil {
		tags = []string{GuestTag}
	}
	var bins []guestBinary
	used := map[string]bool{}
	for _, pkg := range spec.TestPackages {
		name := path.Base(strings.TrimSuffix(pkg, "/...")) + ".test"
		for i := 2; used[name]; i++ {
			name = fmt.Sprintf("%s%d.test", path.Base(pkg), i)
		}
		used[name] = true
		out := filepath.Join(work, name)
		if err := BuildTestBinary(ctx, r, repo, pkg, out, tags...); err != nil {
			return nil, err
		}
		bins = append(bins, guestBinary{name: name, hostPath: out})
	}
	extra := map[string]string{}
	for g, h := range spec.ExtraFiles {
		extra[g] = h
	}
	for g, pkg := range spec.Programs {
		out := filepath.Join(work, "prog-"+path.Base(g))
		if err := BuildProgram(ctx, r, repo, pkg, out, spec.ProgramLdflags); err != nil {
			return nil, err
		}
		extra[g] = out
	}

	env := map[string]string{
		"KECHO_VM":      "1",
		"KECHO_KVER":    k.Release,
		"KECHO_VERSION": version,
	}
	for key, v := range spec.Env {
		env[key] = v
	}
	testTimeout := spec.Timeout - time.Since(start) - 45*time.Second
	if testTimeout < 30*time.Second {
		testTimeout = 30 * time.Second
	}
	tools := map[string]string{}
	for _, t := range []string{"busybox", "kmod", "ip", "depmod", "ldd"} {
		if tools[t], err = lookTool(t); err != nil {
			return nil, fmt.Errorf("%w (install busybox-static, kmod, iproute2: `make deps`)", err)
		}
	}
	kmods := spec.KernelModules
	if kmods == nil {
		kmods = DefaultKernelModules
	}
	arch, err := buildArchive(ctx, initramfsInput{
		kernel:      k,
		module:      res.Module,
		kmods:       kmods,
		tests:       bins,
		extraFiles:  extra,
		init:        initScript(bins, spec.RunArgs, testTimeout),
		env:         envFile(env),
		profile:     guestProfile(),
		script:      []byte("#!/bin/sh\n. " + GuestConfDir + "/profile\n" + spec.Script + "\n"),
		workDir:     work,
		busybox:     tools["busybox"],
		hostRunner:  r,
		depmodTool:  tools["depmod"],
		kmodTool:    tools["kmod"],
		ipTool:      tools["ip"],
		libResolver: lddResolver(r),
	})
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(work, "initramfs.cpio")
	if err := writeInitramfs(arch, k, initrd); err != nil {
		return nil, err
	}
	res.BuildTime = time.Since(start)

	res.LogDir = spec.LogDir
	if res.LogDir == "" {
		if res.LogDir, err = newLogDir(); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(res.LogDir, 0o755); err != nil {
		return nil, err
	}
	if err := boot(ctx, spec, k, initrd, res); err != nil {
		return nil, err
	}
	res.analyze()
	return res, nil
}

// analyze fills in the results parsed from the guest output and the
// kernel log.
func (r *Result) analyze() {
	r.Binaries, r.Finished, r.ScriptExit, r.ScriptOutput = ParseGuestOutput(r.GuestOutput)
	r.Splats = Splats(r.KernelLog)
	r.Notices = Notices(r.KernelLog)
}

// guestProfile is sourced by /init and the caller's script: the
// environment, and shell functions that make the real kmod and ip win
// over busybox's applets (Debian's busybox shell runs its own applets
// before searching $PATH).
func guestProfile() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "export PATH=%s HOME=/root TERM=dumb\n. %s/env\n", GuestPath, GuestConfDir)
	for _, t := range KmodTools {
		fmt.Fprintf(&b, "%s() { /sbin/%s \"$@\"; }\n", t, t)
	}
	b.WriteString("ip() { /usr/sbin/ip \"$@\"; }\n")
	return b.Bytes()
}

// writeInitramfs writes the archive gzip-compressed when the kernel
// supports it (CONFIG_RD_GZIP, or no config to tell), else uncompressed.
func writeInitramfs(a *Archive, k Kernel, dst string) error {
	cfg, err := k.KernelConfig()
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if cfg == nil || cfg["CONFIG_RD_GZIP"] == "y" {
		err = a.WriteGzip(f)
	} else {
		err = a.WriteCPIO(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// initScript is the guest's /init: mount the usual filesystems, bring up
// lo, switch output to the test channel (ttyS1), run each test binary,
// then the caller's script, and power off.
func initScript(bins []guestBinary, runArgs []string, testTimeout time.Duration) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `#!/bin/sh
# /init of the kecho VM (generated by test/vm).
export PATH=%s HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname kecho-vm
ip link set lo up
echo 60 >/proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec </dev/null >/dev/ttyS1 2>&1
. %s/profile
echo "%s$(uname -r)"
`, GuestPath, GuestConfDir, markBegin)
	args := []string{"-test.v=test2json", "-test.timeout=" + testTimeout.Round(time.Second).String()}
	for _, a := range runArgs {
		args = append(args, shellQuote(a))
	}
	for _, bin := range bins {
		fmt.Fprintf(&b, "echo %s\n", shellQuote(markRun+bin.name))
		fmt.Fprintf(&b, "(cd /tmp && %s %s)\n", path.Join(GuestTestDir, bin.name), strings.Join(args, " "))
		fmt.Fprintf(&b, "echo \"%s%s $?\"\n", markExit, bin.name)
	}
	fmt.Fprintf(&b, `(cd /tmp && sh %s/script)
echo "%s$?"
echo "%s"
sleep 1
poweroff -f
`, GuestConfDir, markScriptExit, markDone)
	return b.Bytes()
}

// boot runs qemu until the guest powers off, reports done, or the context
// ends.
func boot(ctx context.Context, spec Spec, k Kernel, initrd string, res *Result) error {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return fmt.Errorf("qemu-system-x86_64 not found (install qemu-system-x86: `make deps`): %w", err)
	}
	kernelLog := filepath.Join(res.LogDir, "kernel.log")
	mem, cpus := spec.Memory, spec.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	accel := []string{"-accel", "tcg,thread=multi"}
	if os.Getenv(EnvAccel) == "kvm" {
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	// slab_nomerge keeps every slab cache (UDP, UDPv6, ...) separate in
	// /proc/slabinfo, so the guest tests can see what leaks.
	// watchdog_thresh and rcu_cpu_stall_timeout at their maxima (soft
	// lockup after 120 s, RCU stall after 300 s instead of 20 s and 21 s):
	// under TCG on a busy host a vCPU thread can be descheduled for tens of
	// seconds, which the defaults report as a lockup of the guest. Real
	// lockups still show, only later.
	cmdline := "console=ttyS0 panic=-1 rdinit=/init net.ifnames=0 slab_nomerge " +
		"watchdog_thresh=60 rcupdate.rcu_cpu_stall_timeout=300 " + spec.Cmdline
	args := append(accel,
		"-smp", fmt.Sprint(cpus), "-m", fmt.Sprintf("%dM", mem),
		"-nographic", "-no-reboot", "-monitor", "none", "-nic", "none",
		"-kernel", k.Image, "-initrd", initrd, "-append", strings.TrimSpace(cmdline),
		"-serial", "file:"+kernelLog,
		"-chardev", "stdio,id=tests,signal=off", "-serial", "chardev:tests",
	)
	cmd := exec.Command(qemu, args...)
	var guest bytes.Buffer
	doneSeen := make(chan struct{})
	var once sync.Once
	lw := &LineWriter{Line: func(line string) error {
		if strings.HasPrefix(strings.TrimLeft(line, "\r"), markDone) {
			once.Do(func() { close(doneSeen) })
		}
		return nil
	}}
	outs := []io.Writer{&guest, lw}
	if spec.Output != nil {
		outs = append(outs, spec.Output)
	}
	cmd.Stdout = io.MultiWriter(outs...)
	var qemuErr bytes.Buffer
	cmd.Stderr = &qemuErr
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer stdin.Close()
	cmd.Stdin = stdin

	var tailer *fileTailer
	if spec.KernelOutput != nil {
		tailer = &fileTailer{path: kernelLog, w: spec.KernelOutput, stop: make(chan struct{}), stopped: make(chan struct{})}
	}
	bootStart := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", qemu, err)
	}
	if tailer != nil {
		go tailer.run()
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-doneSeen:
		// The guest reported the end of /init and powers off in a second;
		// don't wait for it much longer than that.
		select {
		case waitErr = <-exited:
		case <-time.After(doneGrace):
			_ = cmd.Process.Kill()
			<-exited
		}
	case <-ctx.Done():
		res.TimedOut = true
		_ = cmd.Process.Kill()
		<-exited
	}
	res.BootTime = time.Since(bootStart)
	if tailer != nil {
		close(tailer.stop)
		<-tailer.stopped
	}
	if waitErr != nil && !res.TimedOut {
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.ExitCode() == -1 {
			waitErr = nil // killed by us after "done"
		} else {
			res.QemuError = fmt.Errorf("%s: %w: %s", qemu, waitErr, strings.TrimSpace(qemuErr.String()))
		}
	}
	res.GuestOutput = strings.ReplaceAll(guest.String(), "\r\n", "\n")
	logBytes, err := os.ReadFile(kernelLog)
	if err != nil {
		return fmt.Errorf("read kernel log: %w (qemu: %s)", err, strings.TrimSpace(qemuErr.String()))
	}
	res.KernelLog = strings.ReplaceAll(string(logBytes), "\r\n", "\n")
	if err := os.WriteFile(filepath.Join(res.LogDir, "guest.log"), []byte(res.GuestOutput), 0o644); err != nil {
		return err
	}
	qlog := fmt.Sprintf("%s %s\n%s", qemu, strings.Join(args, " "), qemuErr.String())
	return os.WriteFile(filepath.Join(res.LogDir, "qemu.log"), []byte(qlog), 0o644)
}

// doneGrace is how long boot waits for qemu to exit after the guest
// reported the end of /init.
var doneGrace = 5 * time.Second

// fileTailer copies a growing file to w until stopped.
type fileTailer struct {
	path    string
	w       io.Writer
	stop    chan struct{}
	stopped chan struct{}
}

func (t *fileTailer) run() {
	defer close(t.stopped)
	var off int64
	copyNew := func() {
		f, err := os.Open(t.path)
		if err != nil {
			return
		}
		defer f.Close()
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return
		}
		n, _ := io.Copy(t.w, f)
		off += n
	}
	for {
		select {
		case <-t.stop:
			copyNew()
			return
		case <-time.After(200 * time.Millisecond):
			copyNew()
		}
	}
}
