// Package cli is the command line of the kernel matrix (go run
// ./test/matrix): flags, the table on stdout, progress on stderr.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/kecho-dev/kecho/test/matrix/internal/kmatrix"
)

// Main runs the matrix and returns the exit code: 0 all rows passed, 1 a
// row failed, 2 bad usage or the run could not start.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.String("list", "", "kernel list (default test/matrix/kernels.txt)")
	only := fs.String("only", "", "comma-separated series or series/suite to run (default all)")
	noBoot := fs.Bool("no-boot", false, "build only, boot nothing")
	src := fs.String("src", "", "module tree to build (default dkms/, or the test stand-in while dkms/dkms.conf does not exist)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	rows, err := Run(ctx, Options{List: *list, Only: split(*only), NoBoot: *noBoot, Src: *src, Log: log})
	if err != nil {
		fmt.Fprintln(stderr, "matrix:", err)
		return 2
	}
	if err := kmatrix.WriteTable(stdout, rows); err != nil {
		return 2
	}
	if err := kmatrix.Check(rows); err != nil {
		fmt.Fprintln(stderr, "matrix:", err)
		return 1
	}
	return 0
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Options select what a run does; zero values are the defaults.
type Options struct {
	List   string
	Only   []string
	NoBoot bool
	Src    string
	Log    *slog.Logger
	OnRow  func(kmatrix.Row)
}

// Run is a matrix run with the real runner, archive and boot harness, as
// both `make matrix` and the host test do it.
func Run(ctx context.Context, o Options) ([]kmatrix.Row, error) {
	root, err := kmatrix.RepoRoot(".")
	if err != nil {
		return nil, err
	}
	if o.List == "" {
		o.List = filepath.Join(root, "test", "matrix", "kernels.txt")
	}
	if o.Src == "" {
		var stub bool
		o.Src, stub = kmatrix.ModuleTree(root)
		if stub {
			o.Log.Warn("dkms/dkms.conf does not exist yet: building the test stand-in module", "src", o.Src)
		}
	}
	if miss := kmatrix.MissingTools(); miss != "" {
		return nil, fmt.Errorf("needs %s (run as root after `make deps`)", miss)
	}
	r := kmatrix.ExecRunner{}
	cfg := kmatrix.Config{
		List:      o.List,
		Only:      o.Only,
		SrcDir:    o.Src,
		Version:   kmatrix.Version(root),
		CacheDir:  kmatrix.CacheDir(),
		Archive:   kmatrix.DefaultArchive(),
		Run:       r,
		Log:       o.Log,
		HostSuite: kmatrix.HostSuite("/etc/os-release"),
		Installed: kmatrix.InstalledVersion(r),
		OnRow:     o.OnRow,
	}
	if !o.NoBoot {
		b, err := newBooter(root, o.Log)
		if err != nil {
			return nil, err
		}
		cfg.Booter = b
	}
	return kmatrix.Run(ctx, cfg)
}
