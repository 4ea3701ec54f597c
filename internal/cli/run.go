package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/daemon"
	"github.com/kecho-dev/kecho/internal/logging"
	"github.com/kecho-dev/kecho/internal/notify"
	"github.com/kecho-dev/kecho/internal/version"
)

func newRunCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "run the service: load kecho, health-check it, report to systemd",
		Long: `Run kechod in the foreground, as kechod.service does (Type=notify). Logs go
to stderr, which systemd hands to the journal.

At start kechod loads the module with modprobe and the configured
parameters (port, bind_addr, log_packets, max_pps). A module that is
already loaded with the same parameters is used as it is; one loaded with
other parameters is reloaded, since the configuration is the source of
truth. kechod then sends a health probe, a datagram of
health.payload_size random bytes, to health.address (default: module.bind_address,
or the loopback address of its family for a wildcard bind) at module.port, and only when the
byte-identical echo came back does it tell systemd READY=1. If the module
cannot be loaded (the reason and a hint are logged and sent as STATUS=) or
no echo comes back within three probe timeouts, kechod exits 1 without
READY; a configuration error exits 78.

Then it probes every health.interval. After health.failure_threshold
consecutive failed probes the state is "unhealthy" and, with
health.recovery: reload, kechod reloads the module and probes again. A
module removed behind its back (rmmod) or reloaded with other parameters
is noticed at the next probe and loaded again with the configured ones.
Every state change and every probe updates the STATUS= line shown by
"systemctl status kechod", e.g.

  healthy · kecho :5555 · rtt 0.21 ms · 1200/1200 probes ok

and the state file /run/kechod/state.json that "kechod status" reads. With
WatchdogSec= set, WATCHDOG=1 is sent at half that interval from the main
loop, so a hung kechod is restarted.

SIGHUP (systemctl reload kechod) re-reads the configuration: RELOADING=1,
then the new configuration is applied (the module is reloaded if its
parameters changed) and READY=1. A configuration that is rejected, or a
module that cannot be loaded with the new parameters, leaves the previous
configuration in force and STATUS= says why. SIGTERM or SIGINT stops:
STOPPING=1, the module is unloaded if module.unload_on_stop is set and
kechod loaded it, exit 0.

With metrics.listen set, Prometheus metrics are served on /metrics.`,
		Example: `  systemctl start kechod        # runs: kechod run
  kechod run --log-level debug
  kechod run --config /tmp/kechod.yaml
  systemctl reload kechod       # SIGHUP: re-read the configuration`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			sigs, stop := host.signals()
			defer stop()
			n := notify.New(nil)
			l, err := a.loadConfig()
			if err != nil {
				var ce *config.Error
				if errors.As(err, &ce) {
					n.Status("failed · configuration error: " + firstLine(err.Error()))
				}
				return err
			}
			lv := new(slog.LevelVar)
			lv.Set(logging.Level(l.Config.Log.Level))
			format := l.Config.Log.Format
			log := slog.New(logging.NewHandler(a.stderr, format, lv))
			n.Logger = log
			for _, w := range l.Warnings {
				log.Warn("configuration warning", "warning", w)
			}
			err = daemon.Run(cmd.Context(), daemon.Options{
				Config: l,
				Reload: a.loadConfig,
				OnConfig: func(l *config.Loaded) {
					lv.Set(logging.Level(l.Config.Log.Level))
					if l.Config.Log.Format != format {
						log.Warn("log.format changes take effect when kechod restarts", "format", format, "configured", l.Config.Log.Format)
					}
				},
				Runner:    host.runner,
				SysfsRoot: host.sysfsRoot,
				StateDir:  host.stateDir,
				Signals:   sigs,
				Notifier:  n,
				Logger:    log,
				Version:   version.Version,
				Commit:    version.Commit,
			})
			var se *daemon.StartupError
			if errors.As(err, &se) {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s", se.Reason)}
			}
			return err
		},
	}
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
