package kmatrix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kecho-dev/kecho/test/vm"
)

// Env is where a module is built: on the host or in a chroot, with a
// kernel tree's /usr/src and /usr/lib laid over the environment's own
// (read-only overlays in a private mount namespace) so the headers are at
// the absolute paths their Makefiles and symlinks expect.
type Env struct {
	Chroot string // "" = the host
	Tree   string // extracted kernel packages to overlay; "" or "/" = none (installed on the host)
}

// SrcPath is where the module tree at src is seen inside the environment.
func (e Env) SrcPath(src string) string {
	if e.Chroot != "" {
		return "/build"
	}
	return src
}

// nsScript sets up the environment and execs the command given after its
// three arguments: ROOT TREE SRC.
const nsScript = `root=$1 tree=$2 src=$3; shift 3
if [ -n "$tree" ]; then
	for d in usr/src usr/lib; do
		if [ -d "$tree/$d" ]; then
			mount -t overlay kecho-matrix -o "ro,lowerdir=$tree/$d:$root/$d" "$root/$d"
		fi
	done
fi
if [ "$root" != / ]; then
	mount --bind "$src" "$root/build"
	mount -t proc proc "$root/proc"
	mount --rbind /dev "$root/dev"
	exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C "$@"
fi
exec /usr/bin/env LC_ALL=C "$@"
`

// Command is argv run inside the environment, with the module tree src.
func (e Env) Command(src string, argv ...string) Cmd {
	tree := e.Tree
	if tree == "/" {
		tree = ""
	}
	if e.Chroot == "" && tree == "" {
		return Cmd{Name: argv[0], Args: argv[1:], Env: []string{"LC_ALL=C"}}
	}
	root := e.Chroot
	if root == "" {
		root = "/"
	}
	args := append([]string{"--mount", "--propagation", "private", "--", "sh", "-ec", nsScript, "kecho-matrix", root, tree, src}, argv...)
	where := "on the host with " + tree
	if e.Chroot != "" {
		where = "in " + e.Chroot
	}
	return Cmd{Name: "unshare", Args: args, Show: strings.Join(argv, " ") + " (" + where + ")"}
}

// BuildResult is the outcome of one module build.
type BuildResult struct {
	OK       bool
	Err      error
	Module   string // path of kecho.ko on the host
	Size     int64
	Duration time.Duration
	Compiler string // first line of `gcc-N --version` in the build environment
	Log      string // the full build log
	Vermagic string
}

// Build copies the sources of the module tree src to work and builds it for t in env
// with the kernel's compiler. It fails when the build fails, when its log
// has a warning, or when the module's vermagic is not the kernel's.
func Build(ctx context.Context, r Runner, env Env, t *Tree, src, work, version string) BuildResult {
	start := time.Now()
	res := build(ctx, r, env, t, src, work, version)
	res.Duration = time.Since(start)
	return res
}

var warningRe = regexp.MustCompile(`(?i)\bwarning:`)

// Warnings are the lines of a build log that report a warning (compiler,
// modpost, kbuild).
func Warnings(log string) []string {
	var w []string
	for _, l := range strings.Split(log, "\n") {
		if warningRe.MatchString(l) {
			w = append(w, strings.TrimSpace(l))
		}
	}
	return w
}

func build(ctx context.Context, r Runner, env Env, t *Tree, src, work, version string) (res BuildResult) {
	fail := func(err error) BuildResult {
		res.Err = err
		return res
	}
	if err := os.RemoveAll(work); err != nil {
		return fail(err)
	}
	if err := vm.CopyModuleTree(src, work); err != nil {
		return fail(fmt.Errorf("copying the module tree: %w", err))
	}
	cc := t.K.Compiler
	out, err := r.Run(ctx, env.Command(work, cc, "--version"))
	if err != nil {
		return fail(fmt.Errorf("the kernel's compiler %s is not in the build environment (install %s): %w", cc, cc, err))
	}
	res.Compiler = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	p := env.SrcPath(work)
	var argv []string
	if _, err := os.Stat(filepath.Join(src, "Makefile")); err == nil {
		argv = []string{"nice", "-n", "10", "make", "-j2", "-C", p, "KDIR=" + t.HeadersDir(), "KECHO_VERSION=" + version}
	} else {
		argv = []string{"nice", "-n", "10", "make", "-j2", "-C", t.HeadersDir(), "M=" + p, "KECHO_VERSION=" + version, "modules"}
	}
	out, err = r.Run(ctx, env.Command(work, argv...))
	res.Log = string(out)
	if err != nil {
		return fail(fmt.Errorf("build failed: %w", err))
	}
	if w := Warnings(res.Log); len(w) > 0 {
		return fail(fmt.Errorf("build has %d warning(s): %s", len(w), strings.Join(w, " | ")))
	}
	ko := filepath.Join(work, "kecho.ko")
	st, err := os.Stat(ko)
	if err != nil {
		return fail(fmt.Errorf("build succeeded but made no kecho.ko: %w", err))
	}
	res.Module, res.Size = ko, st.Size()
	out, err = r.Run(ctx, Cmd{Name: "modinfo", Args: []string{"-F", "vermagic", ko}})
	if err != nil {
		return fail(err)
	}
	res.Vermagic = strings.TrimSpace(string(out))
	if !strings.HasPrefix(res.Vermagic, t.K.Release+" ") {
		return fail(fmt.Errorf("kecho.ko has vermagic %q, want %s", res.Vermagic, t.K.Release))
	}
	res.OK = true
	return res
}
