package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/version"
)

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print version, commit and Go version",
		Long: `Print kechod's version (the package version, the same as the kecho module's
MODULE_VERSION), the commit it was built from and the Go release and
platform it was built with.`,
		Example: "  $ kechod version\n  kechod 1.0.0 (commit 586d5df, go1.26.8, linux/amd64)",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(a.stdout, "kechod %s (commit %s, %s, %s/%s)\n",
				version.Version, version.Commit, version.GoVersion(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
