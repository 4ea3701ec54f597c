// Package cli is kechod's command line: the cobra command tree, the flags
// every command shares, and how errors become exit statuses and messages
// on stderr ("kechod: ...").
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/logging"
)

// Exit statuses shared by the commands (check has its own, 0-3, by the
// monitoring-plugin convention).
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitConfig  = config.ExitConfig // 78, EX_CONFIG
)

// ExitError makes a command exit with Code. Err, when not nil, is printed
// to stderr as "kechod: <Err>"; a command that printed its own output
// (check's one line, ping's summary) leaves it nil.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// usageError is a wrong invocation: exit 2 with a pointer to --help.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usage wraps err as a usage error of cmd.
func usage(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// usageArgs turns a positional-argument check's error into a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{cmd: cmd, err: err}
		}
		return nil
	}
}

// app is what the commands share: output streams, the environment and
// the root's persistent flags. Commands get it as newXxxCmd(a *app).
type app struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	environ        func() []string

	// Persistent flags of the root command.
	configPath string // --config
	logLevel   string // --log-level
	logFormat  string // --log-format
	root       *cobra.Command
}

func newApp(stdout, stderr io.Writer, lookupEnv func(string) (string, bool), environ func() []string) *app {
	return &app{stdout: stdout, stderr: stderr, lookupEnv: lookupEnv, environ: environ}
}

// configOptions are the options for config.Load that the command line
// selects: --config, the environment, and --log-level/--log-format as
// overrides. A daemon re-reading its configuration (SIGHUP) loads with
// the same options again.
func (a *app) configOptions() config.Options {
	o := config.Options{Path: a.configPath, LookupEnv: a.lookupEnv, Environ: a.environ}
	if a.root != nil {
		for _, fl := range []struct{ name, key, val string }{
			{"log-level", "log.level", a.logLevel},
			{"log-format", "log.format", a.logFormat},
		} {
			if f := a.root.PersistentFlags().Lookup(fl.name); f != nil && f.Changed {
				o.Overrides = append(o.Overrides, config.Override{Key: fl.key, Value: fl.val, Source: "flag --" + fl.name})
			}
		}
	}
	return o
}

// loadConfig loads the configuration as the command line selects it. An
// error is a *config.Error (exit 78). Warnings are the caller's to show:
// see warn, or log them.
func (a *app) loadConfig() (*config.Loaded, error) {
	return config.Load(a.configOptions())
}

// warn prints the configuration's warnings to stderr.
func (a *app) warn(l *config.Loaded) {
	for _, w := range l.Warnings {
		fmt.Fprintf(a.stderr, "kechod: warning: %s\n", w)
	}
}

// logger is the slog logger for a loaded configuration, on stderr.
func (a *app) logger(c config.Config) *slog.Logger {
	return logging.New(a.stderr, c.Log)
}

// Command groups in `kechod --help`.
const (
	groupService = "service"
	groupTools   = "tools"
)

var groupOf = map[string]string{
	"run": groupService, "check": groupService, "status": groupService,
	"ping": groupTools, "config": groupTools, "version": groupTools,
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "kechod",
		Short: "load, health-check and report on the kecho kernel module",
		Long: `kechod runs the kecho kernel module, an in-kernel UDP echo server: it loads
the module with the parameters from /etc/kechod/kechod.yaml, checks its
health with UDP probes and reports to systemd (kechod.service runs
"kechod run"). The other commands are tools for operators.

Configuration is read from /etc/kechod/kechod.yaml (or --config PATH, or
$KECHOD_CONFIG), then the drop-ins conf.d/*.yaml beside it in lexical
order, then environment variables KECHOD_<SECTION>_<KEY>, then flags.
See kechod.yaml(5).

Exit status: 0 success, 1 failure, 2 usage error, 78 configuration error;
"kechod check" uses the monitoring-plugin statuses 0-3.`,
		Example: `  kechod ping 127.0.0.1 "hello world"
  kechod config --validate
  KECHOD_HEALTH_INTERVAL=2s kechod config
  systemctl status kechod`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "main configuration `file` (default $KECHOD_CONFIG, else "+config.DefaultPath+"); drop-ins are read from conf.d/ beside it")
	pf.StringVar(&a.logLevel, "log-level", "", "override log.level: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "", "override log.format: text or json")
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.MarkPersistentFlagFilename("config", "yaml", "yml")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{cmd: c, err: err} })
	a.root = root

	root.AddCommand(
		newPingCmd(a),
		newConfigCmd(a),
		newVersionCmd(a),
	)
	// Service commands (run.go, check.go, status.go) are added here, one
	// line: root.AddCommand(newRunCmd(a), newCheckCmd(a), newStatusCmd(a))
	// ---- service commands: begin ----
	root.AddCommand(newRunCmd(a), newCheckCmd(a), newStatusCmd(a))
	// ---- service commands: end ----

	haveService := false
	for _, c := range root.Commands() {
		if g, ok := groupOf[c.Name()]; ok {
			c.GroupID = g
			haveService = haveService || g == groupService
		}
	}
	if haveService {
		root.AddGroup(&cobra.Group{ID: groupService, Title: "Service commands:"})
	} else {
		for _, c := range root.Commands() {
			if c.GroupID == groupService {
				c.GroupID = ""
			}
		}
	}
	root.AddGroup(&cobra.Group{ID: groupTools, Title: "Tools:"})
	root.SetHelpCommandGroupID(groupTools)
	root.SetCompletionCommandGroupID(groupTools)
	return root
}

// New returns kechod's command tree writing to the process's stdout and
// stderr; the packager renders kechod(8) and the shell completions from it.
func New() *cobra.Command {
	return newRoot(newApp(os.Stdout, os.Stderr, os.LookupEnv, os.Environ))
}

// Main runs kechod with args (without the program name) and returns the
// exit status. Errors are printed to stderr prefixed "kechod: ".
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, newApp(stdout, stderr, os.LookupEnv, os.Environ), args)
}

func execute(ctx context.Context, a *app, args []string) int {
	root := newRoot(a)
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	return exitStatus(root.ExecuteContext(ctx), a.stderr)
}

// exitStatus prints err and maps it to an exit status.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var (
		ee *ExitError
		ce *config.Error
		ue *usageError
	)
	switch {
	case errors.As(err, &ee):
		if ee.Err != nil {
			printErr(stderr, ee.Err)
		}
		return ee.Code
	case errors.As(err, &ce):
		printErr(stderr, ce)
		return ExitConfig
	case errors.As(err, &ue):
		printErr(stderr, ue)
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", ue.cmd.CommandPath())
		return ExitUsage
	case strings.HasPrefix(err.Error(), "unknown command "):
		printErr(stderr, err)
		fmt.Fprintln(stderr, "Run 'kechod --help' for usage.")
		return ExitUsage
	}
	printErr(stderr, err)
	return ExitFailure
}

// printErr writes each line of err prefixed "kechod: ".
func printErr(w io.Writer, err error) {
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(w, "kechod: %s\n", line)
	}
}
