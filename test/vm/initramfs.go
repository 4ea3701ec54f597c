package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Guest layout shared by the initramfs, /init and the guest tests.
const (
	// GuestTestDir holds the guest test binaries (<name>.test).
	GuestTestDir = "/tests"
	// GuestConfDir holds /init's environment and the caller's script.
	GuestConfDir = "/etc/kecho-vm"
	// GuestPath is $PATH inside the guest: real kmod and iproute2 come
	// before busybox.
	GuestPath = "/usr/sbin:/usr/bin:/sbin:/bin"
)

// KmodTools are the kmod commands installed in the guest as links to the
// real /usr/bin/kmod (busybox's versions of them are left out).
var KmodTools = []string{"modprobe", "insmod", "rmmod", "lsmod", "modinfo", "depmod"}

// initramfsInput is everything one initramfs is made of.
type initramfsInput struct {
	kernel      Kernel
	module      string   // host path of kecho.ko ("" = none)
	kmods       []string // in-tree modules to include (names)
	tests       []guestBinary
	extraFiles  map[string]string
	init        []byte
	env         []byte
	profile     []byte
	script      []byte
	workDir     string
	busybox     string
	hostRunner  Runner
	depmodTool  string
	kmodTool    string
	ipTool      string
	libResolver func(ctx context.Context, bin string) ([]string, error)
}

type guestBinary struct {
	name     string // e.g. "guest.test"
	hostPath string
}

// buildArchive assembles the initramfs.
func buildArchive(ctx context.Context, in initramfsInput) (*Archive, error) {
	a := NewArchive()
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/mnt", "/var", GuestTestDir, GuestConfDir} {
		if err := a.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	_ = a.Dir("/tmp", 0o1777)
	steps := []error{
		a.CharDev("/dev/console", 0o600, 5, 1),
		a.CharDev("/dev/null", 0o666, 1, 3),
		a.CharDev("/dev/ttyS0", 0o600, 4, 64),
		a.CharDev("/dev/ttyS1", 0o600, 4, 65),
		a.Symlink("/var/run", "../run"),
		a.Bytes("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644),
		a.Bytes("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644),
		a.Bytes("/etc/hosts", []byte("127.0.0.1 localhost kecho-vm\n::1 localhost ip6-localhost\n"), 0o644),
		a.Bytes("/init", in.init, 0o755),
		a.Bytes(GuestConfDir+"/env", in.env, 0o644),
		a.Bytes(GuestConfDir+"/profile", in.profile, 0o644),
		a.Bytes(GuestConfDir+"/script", in.script, 0o755),
	}
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}

	if err := addBusybox(ctx, a, in); err != nil {
		return nil, err
	}
	dynamic := []string{}
	if err := a.File("/usr/bin/kmod", in.kmodTool); err != nil {
		return nil, err
	}
	dynamic = append(dynamic, in.kmodTool)
	for _, t := range KmodTools {
		if err := a.Symlink("/sbin/"+t, "/usr/bin/kmod"); err != nil {
			return nil, err
		}
	}
	if err := a.File("/usr/sbin/ip", in.ipTool); err != nil {
		return nil, err
	}
	dynamic = append(dynamic, in.ipTool)

	for _, b := range in.tests {
		if err := a.File(path.Join(GuestTestDir, b.name), b.hostPath); err != nil {
			return nil, err
		}
	}
	guestPaths := make([]string, 0, len(in.extraFiles))
	for g := range in.extraFiles {
		guestPaths = append(guestPaths, g)
	}
	sort.Strings(guestPaths)
	for _, g := range guestPaths {
		h := in.extraFiles[g]
		if err := a.File(g, h); err != nil {
			return nil, fmt.Errorf("extra file %s: %w", g, err)
		}
		if isDynamicELF(h) {
			dynamic = append(dynamic, h)
		}
	}
	for _, bin := range dynamic {
		libs, err := in.libResolver(ctx, bin)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if a.Has(l) {
				continue
			}
			if err := a.File(l, l); err != nil {
				return nil, fmt.Errorf("library of %s: %w", bin, err)
			}
		}
	}
	if err := addModules(ctx, a, in); err != nil {
		return nil, err
	}
	return a, nil
}

// addBusybox installs the static busybox with a link per applet, except
// for the commands the real tools provide.
func addBusybox(ctx context.Context, a *Archive, in initramfsInput) error {
	if isDynamicELF(in.busybox) {
		return fmt.Errorf("%s is not statically linked (install busybox-static)", in.busybox)
	}
	if err := a.File("/bin/busybox", in.busybox); err != nil {
		return err
	}
	out, err := in.hostRunner.Run(ctx, Cmd{Name: in.busybox, Args: []string{"--list-full"}})
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	skip := map[string]bool{"ip": true, "busybox": true}
	for _, t := range KmodTools {
		skip[t] = true
	}
	for _, applet := range strings.Fields(string(out)) {
		if skip[path.Base(applet)] {
			continue
		}
		if err := a.Symlink("/"+applet, "/bin/busybox"); err != nil {
			return err
		}
	}
	return nil
}

// isDynamicELF reports whether p is an ELF executable with an interpreter.
func isDynamicELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// parseLdd extracts the absolute library paths from ldd's output.
func parseLdd(out string) []string {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		if m := lddLine.FindStringSubmatch(line); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs
}

// lddResolver returns the shared libraries (and the dynamic loader) that
// bin needs, as absolute host paths, using ldd.
func lddResolver(r Runner) func(ctx context.Context, bin string) ([]string, error) {
	return func(ctx context.Context, bin string) ([]string, error) {
		out, err := r.Run(ctx, Cmd{Name: "ldd", Args: []string{bin}})
		if err != nil {
			return nil, fmt.Errorf("shared libraries of %s: %w", bin, err)
		}
		libs := parseLdd(string(out))
		if len(libs) == 0 {
			return nil, fmt.Errorf("shared libraries of %s: ldd printed none:\n%s", bin, out)
		}
		return libs, nil
	}
}

// addModules lays out /lib/modules/<release> in a staging directory with
// the needed in-tree modules, kecho.ko in updates/ and the kernel's
// modules.order/modules.builtin*, runs the host's depmod on it, and adds
// the result to the archive, so the guest's modprobe resolves modules
// exactly as on an installed system.
func addModules(ctx context.Context, a *Archive, in initramfsInput) error {
	k := in.kernel
	deps, err := readModuleDeps(k.ModulesDir)
	if err != nil {
		return err
	}
	want := append([]string(nil), in.kmods...)
	if in.module != "" {
		info, err := modinfo(in.module)
		if err != nil {
			return err
		}
		if vm := strings.Fields(info["vermagic"]); len(vm) == 0 || vm[0] != k.Release {
			return fmt.Errorf("%s has vermagic %q, not kernel %s", in.module, info["vermagic"], k.Release)
		}
		for _, d := range strings.Split(info["depends"], ",") {
			if d != "" {
				want = append(want, d)
			}
		}
	}
	files, err := deps.closure(want)
	if err != nil {
		return err
	}
	stage := filepath.Join(in.workDir, "modroot")
	modDir := filepath.Join(stage, "lib", "modules", k.Release)
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"} {
		src := filepath.Join(k.ModulesDir, f)
		if !isFile(src) {
			if f == "modules.builtin.modinfo" {
				continue
			}
			return fmt.Errorf("modules tree %s lacks %s", k.ModulesDir, f)
		}
		if err := copyFile(src, filepath.Join(modDir, f)); err != nil {
			return err
		}
	}
	for _, rel := range files {
		src := filepath.Join(k.ModulesDir, rel)
		dst := filepath.Join(modDir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		// The guest's kmod reads .ko, .ko.xz and .ko.zst; gzip it lacks.
		if strings.HasSuffix(rel, ".gz") {
			if err := gunzipFile(src, strings.TrimSuffix(dst, ".gz")); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	}
	if in.module != "" {
		if err := os.MkdirAll(filepath.Join(modDir, "updates"), 0o755); err != nil {
			return err
		}
		if err := copyFile(in.module, filepath.Join(modDir, "updates", "kecho.ko")); err != nil {
			return err
		}
	}
	if _, err := in.hostRunner.Run(ctx, Cmd{Name: in.depmodTool, Args: []string{"-b", stage, k.Release}}); err != nil {
		return fmt.Errorf("depmod for the guest: %w", err)
	}
	return filepath.Walk(stage, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == stage {
			return err
		}
		rel, err := filepath.Rel(stage, p)
		if err != nil {
			return err
		}
		g := "/" + filepath.ToSlash(rel)
		if info.IsDir() {
			return a.Dir(g, 0o755)
		}
		return a.File(g, p)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func gunzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return os.WriteFile(dst, data, 0o644)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// envFile renders the guest environment as shell exports.
func envFile(env map[string]string) []byte {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	return b.Bytes()
}

// lookTool finds a host tool on $PATH or in the usual sbin directories
// (root's PATH is not always complete).
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
			if isFile(filepath.Join(d, name)) {
				p, err = filepath.Join(d, name), nil
				break
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("host tool %s not found", name)
	}
	return p, nil
}
