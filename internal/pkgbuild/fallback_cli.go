package pkgbuild

import (
	"time"

	"github.com/spf13/cobra"
)

// FallbackCommand is a stand-in for kechod's real command tree, shaped after
// DESIGN.md's command table. The packager uses it only while
// internal/cli.New does not exist yet; packaging/main.go says which one is in
// use, and the package tests check that the real one is used once it exists.
func FallbackCommand() *cobra.Command {
	noop := func(*cobra.Command, []string) error { return nil }
	root := &cobra.Command{
		Use:   "kechod",
		Short: "load, health-check and report on the kecho kernel module",
		Long: "kechod loads the kecho kernel module (an in-kernel UDP echo server) with the\n" +
			"parameters from /etc/kechod/kechod.yaml, checks its health over UDP and\n" +
			"reports to systemd. See kechod.yaml(5) for the configuration.",
	}
	root.PersistentFlags().String("config", "/etc/kechod/kechod.yaml", "main configuration file (also KECHOD_CONFIG)")

	run := &cobra.Command{Use: "run", Short: "run the service in the foreground (systemd ExecStart)", RunE: noop}
	ping := &cobra.Command{Use: "ping [HOST] [MESSAGE]", Short: "send UDP echo requests and print each echo with its round-trip time", RunE: noop}
	ping.Flags().IntP("port", "p", 5555, "UDP port")
	ping.Flags().IntP("count", "c", 1, "number of datagrams to send")
	ping.Flags().DurationP("interval", "i", time.Second, "time between datagrams")
	ping.Flags().IntP("size", "s", 0, "payload size in bytes (pads MESSAGE)")
	ping.Flags().DurationP("timeout", "W", time.Second, "how long to wait for each echo")
	check := &cobra.Command{Use: "check", Short: "one health check; monitoring-plugin exit codes 0/1/2/3", RunE: noop}
	status := &cobra.Command{Use: "status", Short: "module state, parameters, counters and the daemon's last state", RunE: noop}
	status.Flags().Bool("json", false, "print JSON")
	config := &cobra.Command{Use: "config", Short: "print the effective merged configuration", RunE: noop}
	config.Flags().Bool("validate", false, "only validate the configuration")
	version := &cobra.Command{Use: "version", Short: "print version, commit and Go version", RunE: noop}
	root.AddCommand(run, ping, check, status, config, version)
	return root
}
