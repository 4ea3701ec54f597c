package cli

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/ping"
)

// Defaults of kechod ping.
const (
	defaultPingMessage = "hello world"
	defaultPingPort    = 5555
)

// seconds is a duration flag that also takes a plain number of seconds,
// as ping(8) does: "-W 2" is 2s, "-i 0.2" is 200ms, "-i 500ms" works too.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || math.IsNaN(f) || f > math.MaxInt64/float64(time.Second) {
			return fmt.Errorf("want a duration >= 0, got %s", v)
		}
		*s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want seconds (0.5) or a duration (500ms), got %q", v)
	}
	*s.d = d
	return nil
}

func (s seconds) Type() string { return "duration" }

func newPingCmd(a *app) *cobra.Command {
	var (
		port     int
		count    int
		size     int
		interval = time.Second
		timeout  = time.Second
	)
	cmd := &cobra.Command{
		Use:   "ping [HOST] [MESSAGE...]",
		Short: "send UDP echo requests and print each echo with its round-trip time",
		Long: `Send UDP datagrams to an echo server, by default the kecho module on this
machine, and print each echo with its round-trip time, then a summary.

HOST is an IPv4 or IPv6 literal or a name; the default is the health probe
target of the configuration (health.address, else module.bind_address, or for a
wildcard bind the loopback address of its family: 127.0.0.1). The port is -p, by default
module.port of the configuration (5555).

MESSAGE (default "hello world"; several words are joined by spaces) is the
content of the first datagram, sent exactly as given. Every later datagram
n carries MESSAGE + " #n" so that each echo is matched to its datagram by
content: late echoes and duplicates are recognised, an echo that is not
byte-identical is reported as corrupt with the first differing byte.
-s SIZE pads MESSAGE with '.' to SIZE bytes (at least the length of
MESSAGE, at most 65507), with " #n" at the end of the padding when it fits.

Datagram n+1 is sent INTERVAL after datagram n, but not before n's echo is
back or TIMEOUT has passed. Ctrl-C stops and prints the summary; a
datagram still within its timeout then is not counted.

Exit status: 0 if every echo came back intact, 1 if any was lost or
corrupt, 2 on a usage error or a host that does not resolve.`,
		Example: `  kechod ping
  kechod ping 127.0.0.1 "hello world"
  kechod ping -c 5 -i 0.2 ::1
  kechod ping -p 7777 -s 1400 -W 2 192.0.2.10 probe`,
		Args: usageArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, msg := "", defaultPingMessage
			if len(args) > 0 {
				host = args[0]
			}
			if len(args) > 1 {
				msg = strings.Join(args[1:], " ")
			}
			if host == "" || !cmd.Flags().Changed("port") {
				h, p := a.pingDefaults()
				if host == "" {
					host = h
				}
				if !cmd.Flags().Changed("port") {
					port = p
				}
			}
			if port < 1 || port > 65535 {
				return usage(cmd, "-p %d: want a port 1-65535", port)
			}
			opts := ping.Options{
				Message:  []byte(msg),
				Size:     size,
				Count:    count,
				Interval: interval,
				Timeout:  timeout,
			}
			if cmd.Flags().Changed("size") && size == 0 && len(msg) > 0 {
				return usage(cmd, "-s 0 is smaller than MESSAGE (%d bytes)", len(msg))
			}
			if err := opts.Check(); err != nil {
				return usage(cmd, "%v", err)
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			conn, target, err := ping.Dial(ctx, net.DefaultResolver, host, port)
			var re *ping.ResolveError
			if errors.As(err, &re) {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			if err != nil {
				return err
			}
			defer conn.Close()
			opts.Target = target
			st, err := ping.Run(ctx, conn, opts, a.stdout)
			if err != nil {
				return usage(cmd, "%v", err)
			}
			if !st.OK() {
				return &ExitError{Code: ExitFailure}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&port, "port", "p", 0, "UDP `port` (default: module.port of the configuration, 5555)")
	f.IntVarP(&count, "count", "c", 1, "send `N` datagrams; 0 = until interrupted")
	f.VarP(seconds{&interval}, "interval", "i", "time between datagrams, in seconds or with a unit (0.2, 200ms)")
	f.IntVarP(&size, "size", "s", 0, "pad MESSAGE to `SIZE` bytes (at least its length, at most 65507)")
	f.VarP(seconds{&timeout}, "timeout", "W", "how long to wait for each echo, in seconds or with a unit")
	f.SortFlags = false
	return cmd
}

// pingDefaults are the host and port of the configured module, or
// 127.0.0.1:5555 when the configuration cannot be loaded (with a warning:
// ping is a diagnostic tool and works without a valid configuration).
func (a *app) pingDefaults() (string, int) {
	l, err := a.loadConfig()
	if err != nil {
		fmt.Fprintf(a.stderr, "kechod: warning: the configuration has errors (see 'kechod config --validate'); pinging 127.0.0.1:%d\n", defaultPingPort)
		return "127.0.0.1", defaultPingPort
	}
	t := l.Config.ProbeTarget()
	return t.Addr().String(), int(t.Port())
}
