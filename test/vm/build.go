package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Cmd is one external command the harness runs to completion.
type Cmd struct {
	Dir  string
	Env  []string // added to the harness's own environment
	Name string
	Args []string
}

func (c Cmd) String() string {
	return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " "))
}

// Runner runs external commands (make, go, depmod, ldd). The default runs
// them with os/exec; tests substitute a fake.
type Runner interface {
	// Run runs c and returns its combined output. A failure is an error
	// that names the command and carries its output.
	Run(ctx context.Context, c Cmd) ([]byte, error)
}

// ExecRunner is the Runner that runs real processes.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, c Cmd) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s (in %s): %w\n%s", c, c.Dir, err, tail(out.String(), 8000))
	}
	return out.Bytes(), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// RepoRoot returns the root of the kecho source tree (the directory with
// go.mod) at or above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// EnvModuleSource overrides the module source tree ModuleSource returns.
const EnvModuleSource = "KECHO_VM_MODULE_SRC"

// ModuleSource returns the module source tree to build: $KECHO_VM_MODULE_SRC
// if set, else <repo>/dkms once it has a dkms.conf, else the test
// stand-in under test/system/testdata/dkms-stub (which loads but serves
// nothing), with stub true.
func ModuleSource(repo string) (dir string, stub bool) {
	if d := os.Getenv(EnvModuleSource); d != "" {
		return d, strings.Contains(d, "dkms-stub")
	}
	if isFile(filepath.Join(repo, "dkms", "dkms.conf")) {
		return filepath.Join(repo, "dkms"), false
	}
	return filepath.Join(repo, "test", "system", "testdata", "dkms-stub"), true
}

// Version returns the product version kecho is built with: $KECHO_VERSION
// (the Makefile exports it), else the VERSION file at the repo root.
func Version(repo string) string {
	if v := os.Getenv("KECHO_VERSION"); v != "" {
		return v
	}
	b, err := os.ReadFile(filepath.Join(repo, "VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// BuildModule builds kecho.ko from a copy of src (never in src itself)
// against the kernel's headers and returns the path of the built module,
// which lies inside workDir. A tree with a Makefile is built with
// `make -C <copy> KDIR=<headers> KVER=<release>`; a bare Kbuild tree with
// `make -C <headers> M=<copy> modules`.
func BuildModule(ctx context.Context, r Runner, k Kernel, src, version, workDir string) (string, error) {
	if k.Headers == "" {
		return "", fmt.Errorf("kernel %s has no headers tree to build kecho against (install linux-headers-%s)", k.Release, k.Release)
	}
	dst := filepath.Join(workDir, "kecho-src")
	if err := CopyModuleTree(src, dst); err != nil {
		return "", fmt.Errorf("copy module source: %w", err)
	}
	env := []string{"KECHO_VERSION=" + version}
	jobs := fmt.Sprintf("-j%d", min(numCPU(), 2))
	var c Cmd
	if isFile(filepath.Join(dst, "Makefile")) {
		c = Cmd{Dir: dst, Env: env, Name: "make", Args: []string{jobs, "-C", dst, "KDIR=" + k.Headers, "KVER=" + k.Release}}
	} else {
		c = Cmd{Dir: dst, Env: env, Name: "make", Args: []string{jobs, "-C", k.Headers, "M=" + dst, "KECHO_VERSION=" + version, "modules"}}
	}
	if _, err := r.Run(ctx, c); err != nil {
		return "", fmt.Errorf("build kecho for %s: %w", k.Release, err)
	}
	ko := filepath.Join(dst, "kecho.ko")
	if !isFile(ko) {
		return "", fmt.Errorf("build kecho for %s: %s produced no kecho.ko", k.Release, c)
	}
	return ko, nil
}

// CopyModuleTree copies a module source tree (regular files, directories
// and symlinks) from src to dst, leaving out build outputs, as DKMS gets a
// clean tree to build in.
func CopyModuleTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if p != src && isBuildOutput(d.Name()) {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case !d.Type().IsRegular():
			return nil
		}
		if isBuildOutput(d.Name()) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// isBuildOutput reports whether a file name is something a module build
// generates (and a copy must not inherit from an earlier build for another
// kernel).
func isBuildOutput(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "compat_gen.h") {
		return true // kbuild's .cmd files, .tmp_versions, the probes' .compat
	}
	for _, suf := range []string{".o", ".ko", ".mod", ".mod.c", ".cmd", ".a", ".dwo", ".symvers", ".order", ".tmp"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// staticEnv is the environment for guest binaries: static, linux/amd64.
var staticEnv = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}

// BuildTestBinary compiles the tests of a Go package (a path relative to
// repo such as "./test/guest") into a static test binary for the guest,
// with the given build tags (Spec uses "kechoguest").
func BuildTestBinary(ctx context.Context, r Runner, repo, pkg, out string, tags ...string) error {
	args := []string{"test", "-c", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, pkg)
	if _, err := r.Run(ctx, Cmd{Dir: repo, Env: staticEnv, Name: goTool(), Args: args}); err != nil {
		return fmt.Errorf("build guest test binary %s: %w", pkg, err)
	}
	if !isFile(out) {
		return fmt.Errorf("build guest test binary %s: package has no tests for the guest (missing build tag %q?)", pkg, strings.Join(tags, ","))
	}
	return nil
}

// BuildProgram compiles a Go main package (e.g. "./cmd/kechod") into a
// static binary for the guest. ldflags may be empty.
func BuildProgram(ctx context.Context, r Runner, repo, pkg, out, ldflags string) error {
	args := []string{"build", "-trimpath", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	args = append(args, pkg)
	if _, err := r.Run(ctx, Cmd{Dir: repo, Env: staticEnv, Name: goTool(), Args: args}); err != nil {
		return fmt.Errorf("build guest program %s: %w", pkg, err)
	}
	return nil
}

// EnvNoCache set to 1 makes Run rebuild kecho.ko instead of reusing a
// cached build.
const EnvNoCache = "KECHO_VM_NOCACHE"

// CacheRoot is ${KECHO_CACHE_DIR:-~/.cache/kecho}.
func CacheRoot() string {
	if d := os.Getenv("KECHO_CACHE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "kecho")
}

// moduleCacheKey hashes everything a module build depends on: the source
// files (names, modes, contents; build outputs excluded), the kernel
// release, the headers tree (path, and size and time of the files that
// change with it), the compiler on $PATH and the version. Any change
// gives a new key.
func moduleCacheKey(k Kernel, src, version string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "kecho-module-v1\nrelease=%s\nheaders=%s\nversion=%s\n", k.Release, k.Headers, version)
	for _, f := range []string{"Makefile", ".config", "Module.symvers", "include/generated/utsrelease.h", "include/generated/autoconf.h"} {
		if st, err := os.Stat(filepath.Join(k.Headers, f)); err == nil {
			fmt.Fprintf(h, "hdr %s %d %d\n", f, st.Size(), st.ModTime().UnixNano())
		}
	}
	for _, cc := range []string{"gcc", "cc"} {
		if p, err := exec.LookPath(cc); err == nil {
			if rp, err := filepath.EvalSymlinks(p); err == nil {
				if st, err := os.Stat(rp); err == nil {
					fmt.Fprintf(h, "cc %s %s %d %d\n", cc, rp, st.Size(), st.ModTime().UnixNano())
				}
			}
		}
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != src && isBuildOutput(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if isBuildOutput(d.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		if d.Type()&fs.ModeSymlink != 0 {
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "link %s %s\n", rel, l)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file %s %o %d\n", rel, info.Mode().Perm(), len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// CachedBuildModule is BuildModule with a cache under
// CacheRoot()/vm-modules keyed by moduleCacheKey; it returns the module
// path and whether it came from the cache. KECHO_VM_NOCACHE=1 disables
// the cache.
func CachedBuildModule(ctx context.Context, r Runner, k Kernel, src, version, workDir string) (string, bool, error) {
	if os.Getenv(EnvNoCache) == "1" || k.Headers == "" {
		ko, err := BuildModule(ctx, r, k, src, version, workDir)
		return ko, false, err
	}
	key, err := moduleCacheKey(k, src, version)
	if err != nil {
		return "", false, fmt.Errorf("module cache key: %w", err)
	}
	dir := filepath.Join(CacheRoot(), "vm-modules", k.Release+"-"+key)
	cached := filepath.Join(dir, "kecho.ko")
	if isFile(cached) {
		return cached, true, nil
	}
	ko, err := BuildModule(ctx, r, k, src, version, workDir)
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ko, false, nil // caching is best effort
	}
	tmp := cached + fmt.Sprintf(".tmp%d", os.Getpid())
	if err := copyFile(ko, tmp); err != nil {
		os.Remove(tmp)
		return ko, false, nil
	}
	if err := os.Rename(tmp, cached); err != nil {
		os.Remove(tmp)
	}
	return ko, false, nil
}

func numCPU() int { return runtime.NumCPU() }
