package pkgbuild

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Main is the packager's command line (`go run ./packaging`). It returns
// the process exit status.
func Main(ctx context.Context, args []string, newCmd CommandFactory, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("packaging", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var arches, formats, pkgs string
	fs.StringVar(&o.Root, "root", ".", "repository root")
	fs.StringVar(&o.OutDir, "out", "", "output directory (default ROOT/dist)")
	fs.StringVar(&o.Version, "version", os.Getenv("KECHO_PKG_VERSION"), "package version (default: git describe --tags, else VERSION)")
	fs.StringVar(&o.Commit, "commit", "", "commit recorded in kechod (default: git rev-parse HEAD)")
	fs.StringVar(&arches, "arch", "amd64,arm64", "kechod architectures, comma-separated")
	fs.StringVar(&formats, "format", "deb,rpm", "package formats, comma-separated")
	fs.StringVar(&pkgs, "package", DKMSPackage+","+DaemonPackage, "packages to build, comma-separated")
	fs.StringVar(&o.DKMSDir, "dkms-dir", "", "DKMS source tree (default ROOT/dkms)")
	fs.StringVar(&o.Maintainer, "maintainer", os.Getenv("KECHO_MAINTAINER"), "Maintainer field")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./packaging [flags]\n\nBuilds kecho-dkms (.deb/.rpm) and kechod (.deb/.rpm per architecture) into dist/.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Arches = splitList(arches)
	o.Formats = splitList(formats)
	o.Packages = splitList(pkgs)
	o.Command = newCmd
	o.Log = stdout
	arts, err := Build(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "packaging: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d packages:\n", len(arts))
	for _, a := range arts {
		fmt.Fprintf(stdout, "  %s\n", a.Path)
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
