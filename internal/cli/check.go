package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/daemon"
	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod"
)

// Monitoring-plugin exit statuses of `kechod check`.
const (
	CheckOK       = 0
	CheckWarning  = 1
	CheckCritical = 2
	CheckUnknown  = 3
)

var checkLabel = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

func newCheckCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "one health check of the configured module (monitoring plugin)",
		Long: `Check the kecho module once, as a monitoring plugin (Nagios, Icinga,
Sensu, NRPE): is the module loaded, does it run with the configured
parameters, and does a health probe (health.payload_size random bytes to
the configured target and port, within health.timeout) come back byte for
byte? It prints one line, with the round-trip time as performance data,
and exits with the plugin status:

  0 OK        the echo came back
  1 WARNING   the echo came back, but the module runs with parameters that
              differ from the configuration, or the round trip took more
              than half of health.timeout
  2 CRITICAL  the module is not loaded, or no intact echo came back
  3 UNKNOWN   the configuration is invalid, or the check itself failed

The check works without a running kechod daemon; it does not load or
change the module.`,
		Example: `  kechod check
  # KECHO OK - echo from 127.0.0.1:5555 in 0.21 ms | rtt=0.21ms
  kechod check --config /etc/kechod/kechod.yaml
  # NRPE: command[check_kecho]=/usr/bin/kechod check`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, line := a.check(cmd)
			fmt.Fprintln(a.stdout, "KECHO "+checkLabel[code]+" - "+line)
			if code != CheckOK {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
}

func (a *app) check(cmd *cobra.Command) (int, string) {
	l, err := a.loadConfig()
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			more := ""
			if len(ce.Problems) > 1 {
				more = fmt.Sprintf(" (and %d more; see kechod config --validate)", len(ce.Problems)-1)
			}
			return CheckUnknown, "configuration error: " + firstLine(err.Error()) + more
		}
		return CheckUnknown, "configuration: " + firstLine(err.Error())
	}
	c := l.Config
	m := &kmod.Manager{Name: c.Module.Name, SysfsRoot: host.sysfsRoot}
	if !m.Loaded() {
		return CheckCritical, "module " + c.Module.Name + " is not loaded"
	}
	var notes []string
	have, err := m.Params()
	if err != nil {
		return CheckUnknown, "cannot read the parameters of module " + c.Module.Name + ": " + err.Error()
	}
	if d := have.Diff(daemon.Params(c)); len(d) > 0 {
		notes = append(notes, "module runs with "+strings.Join(d, ", "))
	}
	p, err := health.NewProber(health.Config{Target: c.ProbeTarget(), Timeout: c.Health.Timeout, PayloadSize: c.Health.PayloadSize})
	if err != nil {
		return CheckUnknown, err.Error()
	}
	defer p.Close()
	r := p.Probe(cmd.Context())
	if !r.OK() {
		return CheckCritical, strings.Join(append([]string{r.Reason()}, notes...), "; ")
	}
	if r.RTT > c.Health.Timeout/2 {
		notes = append(notes, "round trip above half the timeout ("+c.Health.Timeout.String()+")")
	}
	ms := strconv.FormatFloat(float64(r.RTT)/float64(time.Millisecond), 'f', 2, 64)
	line := "echo from " + r.Target.String() + " in " + ms + " ms"
	code := CheckOK
	if len(notes) > 0 {
		code = CheckWarning
		line += "; " + strings.Join(notes, "; ")
	}
	return code, line + " | rtt=" + ms + "ms"
}
