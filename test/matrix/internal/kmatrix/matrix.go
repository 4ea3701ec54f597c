package kmatrix

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// BootSpec is what a boot test needs of one kernel.
type BootSpec struct {
	Name       string // entry name, "6.12/trixie"
	Release    string // uname -r of the kernel
	Kernel     string // vmlinuz on the host
	ModulesDir string // the kernel's own /lib/modules/<release> (veth, …)
	HeadersDir string // the headers on the host (inside the extracted tree)
	Module     string // kecho.ko built for this kernel
}

// BootResult is the outcome of booting one kernel and running the
// in-guest tests there.
type BootResult struct {
	OK       bool
	Err      error
	Summary  string // e.g. "14 passed"
	Duration time.Duration
}

// Booter boots kernels. Boots run one at a time.
type Booter interface {
	Boot(ctx context.Context, s BootSpec) BootResult
}

// Config is one matrix run.
type Config struct {
	List     string   // kernel list file
	Only     []string // series or series/suite to run; empty = all
	SrcDir   string   // module tree (dkms/)
	Version  string   // module version (KECHO_VERSION)
	CacheDir string   // ${KECHO_CACHE_DIR:-~/.cache/kecho}/matrix
	Archive  Archive
	Run      Runner
	Log      *slog.Logger
	Booter   Booter // nil = build only
	// HostSuite is the host's release (VERSION_CODENAME); its kernels are
	// built on the host.
	HostSuite string
	// AptMaxAge is how old the cached package lists may be (default 6h).
	AptMaxAge time.Duration
	// Installed reports the installed version of a Debian package ("" if
	// not installed); kernels installed on the host are used in place.
	Installed func(pkg string) string
	// OnRow is called as each row completes.
	OnRow func(Row)
}

// Row is one kernel's result.
type Row struct {
	Entry    Entry
	Kernel   *Kernel // nil if it could not be resolved
	Tree     *Tree
	Env      string // "host" or "chroot <suite>"
	KernelCC string // CONFIG_CC_VERSION_TEXT
	Err      error  // resolving, fetching or preparing failed
	Build    BuildResult
	Boot     *BootResult // nil = not booted
	LogFile  string
}

// OK reports whether the row built and, if booted, passed.
func (r Row) OK() bool {
	return r.Err == nil && r.Build.OK && (r.Boot == nil || r.Boot.OK)
}

// Run builds (and boots) every selected kernel of the list. Rows fail
// individually; the error is for the run as a whole (bad list, cache).
func Run(ctx context.Context, c Config) ([]Row, error) {
	if c.AptMaxAge == 0 {
		c.AptMaxAge = 6 * time.Hour
	}
	all, err := ReadList(c.List)
	if err != nil {
		return nil, err
	}
	sel, err := Filter(all, c.Only)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.CacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(c.CacheDir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Resolve every line, not only the selected ones: a chroot's recipe
	// has the compilers of all kernels built in it, so it is the same
	// whichever rows a run selects.
	kernels := map[string]*Kernel{}
	rerr := map[string]error{}
	apts := map[string]*Apt{}
	for _, e := range all {
		a, ok := apts[e.Suite]
		if !ok {
			a = &Apt{Dir: filepath.Join(c.CacheDir, "apt", e.Suite), Suite: e.Suite, Archive: c.Archive, Run: c.Run, MaxAge: c.AptMaxAge}
			apts[e.Suite] = a
			c.Log.Info("update package lists", "suite", e.Suite)
			if err := a.Update(ctx); err != nil {
				rerr[e.Suite] = err
			}
		}
		if err := rerr[e.Suite]; err != nil {
			rerr[e.Name()] = err
			continue
		}
		k, err := Resolve(ctx, a, e)
		if err != nil {
			rerr[e.Name()] = err
			continue
		}
		c.Log.Info("resolved kernel", "kernel", e.Name(), "release", k.Release, "version", k.Version, "compiler", k.Compiler, "via", k.Via)
		kernels[e.Name()] = k
	}
	compilers := map[string][]string{}
	for _, e := range all {
		if k := kernels[e.Name()]; k != nil {
			b := BaseSuite(e.Suite)
			if !contains(compilers[b], k.Compiler) {
				compilers[b] = append(compilers[b], k.Compiler)
			}
		}
	}

	var rows []Row
	used := map[string]bool{}
	for _, e := range sel {
		row := Row{Entry: e, Kernel: kernels[e.Name()], Err: rerr[e.Name()]}
		if row.Err == nil {
			row = runRow(ctx, c, apts[e.Suite], row, compilers[BaseSuite(e.Suite)], used)
		}
		if row.Err != nil {
			c.Log.Error("kernel failed", "kernel", e.Name(), "err", row.Err)
		}
		rows = append(rows, row)
		if c.OnRow != nil {
			c.OnRow(row)
		}
	}
	if len(c.Only) == 0 && c.Booter != nil {
		prune(c.Log, c.CacheDir, used)
	}
	return rows, nil
}

func runRow(ctx context.Context, c Config, a *Apt, row Row, compilers []string, used map[string]bool) Row {
	k := row.Kernel
	boot := row.Entry.Boot && c.Booter != nil
	var err error
	if c.Installed != nil && c.Installed(k.Headers[0]) == k.Version && (!boot || c.Installed(k.Image) == k.ImageVer) {
		row.Tree = &Tree{Root: "/", K: k}
		c.Log.Info("kernel installed on the host", "kernel", row.Entry.Name(), "release", k.Release)
	} else {
		c.Log.Info("fetch kernel packages", "kernel", row.Entry.Name(), "release", k.Release, "image", boot)
		var debs []string
		row.Tree, debs, err = Fetch(ctx, a, c.Run, k, filepath.Join(c.CacheDir, "debs"), filepath.Join(c.CacheDir, "kernels"), boot)
		if err != nil {
			row.Err = err
			return row
		}
		used[row.Tree.Root] = true
		for _, d := range debs {
			used[d] = true
		}
	}
	if row.KernelCC, err = row.Tree.CompilerText(); err != nil {
		row.Err = err
		return row
	}
	if m := CCMajor(row.KernelCC); m != "" && "gcc-"+m != k.Compiler {
		row.Err = fmt.Errorf("%s: the headers depend on %s but the kernel was built with %q", row.Entry.Name(), k.Compiler, row.KernelCC)
		return row
	}
	env := Env{Tree: row.Tree.Root}
	base := BaseSuite(row.Entry.Suite)
	row.Env = "host"
	if base != c.HostSuite {
		dir, err := EnsureChroot(ctx, c.Run, c.Log, c.CacheDir, base, compilers, c.Archive)
		if err != nil {
			row.Err = err
			return row
		}
		used[dir] = true
		env.Chroot = dir
		row.Env = "chroot " + base
	}
	work := filepath.Join(c.CacheDir, "work", k.Release)
	c.Log.Info("build kecho", "kernel", row.Entry.Name(), "release", k.Release, "env", row.Env, "compiler", k.Compiler)
	row.Build = Build(ctx, c.Run, env, row.Tree, c.SrcDir, work, c.Version)
	row.LogFile = filepath.Join(c.CacheDir, "logs", k.Release+".build.log")
	if err := os.MkdirAll(filepath.Dir(row.LogFile), 0o755); err == nil {
		text := row.Build.Log
		if row.Build.Err != nil {
			text += "\n" + row.Build.Err.Error() + "\n"
		}
		_ = os.WriteFile(row.LogFile, []byte(text), 0o644)
	}
	c.Log.Info("built kecho", "kernel", row.Entry.Name(), "ok", row.Build.OK, "size", row.Build.Size, "duration", row.Build.Duration.Round(time.Millisecond), "log", row.LogFile)
	if !row.Build.OK || !boot {
		return row
	}
	spec := BootSpec{
		Name: row.Entry.Name(), Release: k.Release, Kernel: row.Tree.Vmlinuz(),
		ModulesDir: row.Tree.ModulesDir(), HeadersDir: filepath.Join(row.Tree.Root, row.Tree.HeadersDir()),
		Module: row.Build.Module,
	}
	c.Log.Info("boot kernel", "kernel", row.Entry.Name(), "vmlinuz", spec.Kernel)
	start := time.Now()
	br := c.Booter.Boot(ctx, spec)
	if br.Duration == 0 {
		br.Duration = time.Since(start)
	}
	row.Boot = &br
	c.Log.Info("booted kernel", "kernel", row.Entry.Name(), "ok", br.OK, "summary", br.Summary, "duration", br.Duration.Round(time.Second))
	return row
}

// prune removes cached kernels, packages and chroots that a full run (all
// rows, with boots) did not use (older versions the suites no longer serve).
func prune(log *slog.Logger, cache string, used map[string]bool) {
	var cands []string
	for _, pat := range []string{"kernels/*", "debs/*.deb", "chroots/*"} {
		m, _ := filepath.Glob(filepath.Join(cache, pat))
		cands = append(cands, m...)
	}
	sort.Strings(cands)
	for _, p := range cands {
		if used[p] || strings.HasSuffix(p, ".tmp") {
			continue
		}
		log.Info("prune unused cache entry", "path", p)
		os.RemoveAll(p)
	}
}

// lock takes an exclusive lock on path, waiting for another run to end.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// ErrFailed says that at least one row failed.
var ErrFailed = errors.New("kernel matrix failed")

// Check is nil when every row is OK, else an error naming the failures.
func Check(rows []Row) error {
	var bad []string
	for _, r := range rows {
		if !r.OK() {
			bad = append(bad, r.Entry.Name())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrFailed, strings.Join(bad, ", "))
	}
	return nil
}
