package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newConfigCmd(a *app) *cobra.Command {
	var validate, sources bool
	cmd := &cobra.Command{
		Use:   "config [--validate]",
		Short: "print the effective merged configuration, or only validate it",
		Long: `Print the effective configuration as YAML: the main file, the conf.d drop-ins,
the KECHOD_<SECTION>_<KEY> environment variables and the flags merged over
the built-in defaults, with every key, durations with units. The output is
itself a valid kechod.yaml.

With --validate only one line is printed, "ok: <files read>" on stdout,
and the exit status is 0. On any problem each one is
printed to stderr as "kechod: FILE:LINE: KEY: what is wrong and what is
allowed" and the exit status is 78, the status with which "kechod run"
refuses the same configuration. Use it as a validate hook of configuration
management; a drop-in alone can be checked as if it were the main file.`,
		Example: `  kechod config
  kechod config --sources
  kechod config --validate
  kechod config --validate --config /tmp/kechod.yaml.new
  KECHOD_MODULE_PORT=7777 kechod config --validate
  # Ansible: template: ... validate: "kechod config --validate --config %s"`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validate && sources {
				return usage(cmd, "--validate prints no configuration: drop --sources")
			}
			l, err := a.loadConfig()
			if err != nil {
				return err
			}
			a.warn(l)
			if validate {
				files := strings.Join(l.Files, ", ")
				if files == "" {
					files = "no files, built-in defaults"
				}
				_, err := fmt.Fprintf(a.stdout, "ok: %s\n", files)
				return err
			}
			out := l.Config.Marshal()
			if sources {
				out = l.MarshalSources()
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().BoolVar(&validate, "validate", false, "only validate: print \"ok: FILES\" and exit 0, or the problems and exit 78")
	cmd.Flags().BoolVar(&sources, "sources", false, "annotate each key with where its value comes from")
	return cmd
}
