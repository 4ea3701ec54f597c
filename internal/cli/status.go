package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kecho-dev/kecho/internal/daemon"
	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/state"
)

// Exit statuses of `kechod status`, after LSB's "status" action.
const (
	StatusRunning    = 0 // daemon running, module healthy
	StatusDegraded   = 1 // daemon running, but not healthy or module not loaded
	StatusNotRunning = 3 // no daemon running
)

// statusReport is `kechod status --json`.
type statusReport struct {
	Module moduleReport `json:"module"`
	Daemon daemonReport `json:"daemon"`
}

type moduleReport struct {
	Name   string            `json:"name"`
	Loaded bool              `json:"loaded"`
	Params map[string]string `json:"params,omitempty"`
	// ParamsDiffer lists parameters that differ from the configuration.
	ParamsDiffer []string          `json:"params_differ_from_config,omitempty"`
	Counters     map[string]uint64 `json:"counters,omitempty"`
	Error        string            `json:"error,omitempty"`
}

type daemonReport struct {
	// Running is "running", "stale" (process alive, state not updated),
	// "not running" or "stopped".
	Running   string       `json:"running"`
	StateFile string       `json:"state_file"`
	State     *state.State `json:"state,omitempty"`
	Note      string       `json:"note,omitempty"`
}

func newStatusCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "show the module, its parameters and counters, and the daemon's last state",
		Long: `Show whether the kecho module is loaded, the parameters it runs with and its
counters (from /sys/module/kecho), and the last state the running kechod
daemon published in /run/kechod/state.json: its state and STATUS line, the
probe results, the configuration files in use. A state file whose process
is gone, or that was not updated for three probe intervals, is reported as
such, so the output never presents a dead daemon's state as current.

--json prints the same as one JSON object (module, daemon) for scripts.

Exit status: 0 the daemon runs and the module is healthy, 1 the daemon
runs but the module is not healthy (or not loaded), 3 no daemon runs.`,
		Example: `  kechod status
  kechod status --json | jq .daemon.state.status`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := a.status()
			var err error
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = printStatus(a.stdout, rep, time.Now())
			}
			if err != nil {
				return err
			}
			code := StatusRunning
			switch {
			case rep.Daemon.Running != state.Running.String():
				code = StatusNotRunning
			case !rep.Module.Loaded || rep.Daemon.State.State != state.Healthy:
				code = StatusDegraded
			}
			if code != StatusRunning {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func (a *app) status() statusReport {
	var rep statusReport
	name := "kecho"
	l, cfgErr := a.loadConfig()
	if cfgErr == nil {
		name = l.Config.Module.Name
	} else {
		fmt.Fprintf(a.stderr, "kechod: warning: the configuration has errors (see 'kechod config --validate'); showing module %s\n", name)
	}
	m := &kmod.Manager{Name: name, SysfsRoot: host.sysfsRoot}
	rep.Module = moduleReport{Name: name, Loaded: m.Loaded()}
	if rep.Module.Loaded {
		if p, err := m.Params(); err == nil {
			rep.Module.Params = paramMap(p)
			if cfgErr == nil {
				rep.Module.ParamsDiffer = p.Diff(daemon.Params(l.Config))
			}
		} else {
			rep.Module.Error = err.Error()
		}
		if s, err := m.Stats(); err == nil {
			rep.Module.Counters = s
		} else if rep.Module.Error == "" {
			rep.Module.Error = err.Error()
		}
	}

	rep.Daemon.StateFile = state.Path(host.stateDir)
	st, err := state.Read(host.stateDir)
	switch {
	case errors.Is(err, state.ErrNoState):
		rep.Daemon.Running = state.Gone.String()
		rep.Daemon.Note = "no state file " + state.Path(host.stateDir) + ": kechod is not running"
	case err != nil:
		rep.Daemon.Running = state.Gone.String()
		rep.Daemon.Note = "cannot read the state file: " + err.Error()
	default:
		rep.Daemon.State = &st
		live := state.Check(st, time.Now(), host.procRoot)
		rep.Daemon.Running = live.String()
		switch live {
		case state.Gone:
			rep.Daemon.Note = fmt.Sprintf("kechod (pid %d) is not running; the state below is its last, from %s", st.PID, st.Updated.Local().Format(timeFormat))
		case state.Stale:
			rep.Daemon.Note = fmt.Sprintf("kechod (pid %d) runs but has not updated its state since %s: it may be hung", st.PID, st.Updated.Local().Format(timeFormat))
		case state.Exited:
			rep.Daemon.Note = fmt.Sprintf("kechod (pid %d) stopped at %s", st.PID, st.Updated.Local().Format(timeFormat))
		}
	}
	return rep
}

const timeFormat = "2006-01-02 15:04:05 MST"

func paramMap(p kmod.Params) map[string]string {
	m := map[string]string{}
	for _, a := range p.Args() {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func printStatus(w io.Writer, r statusReport, now time.Time) error {
	var b strings.Builder
	m := r.Module
	if !m.Loaded {
		fmt.Fprintf(&b, "Module:   %s not loaded\n", m.Name)
	} else {
		fmt.Fprintf(&b, "Module:   %s loaded\n", m.Name)
		if m.Params != nil {
			fmt.Fprintf(&b, "  Params:   port=%s bind_addr=%s log_packets=%s max_pps=%s\n",
				m.Params["port"], m.Params["bind_addr"], m.Params["log_packets"], m.Params["max_pps"])
		}
		if len(m.ParamsDiffer) > 0 {
			fmt.Fprintf(&b, "  Differs:  %s\n", strings.Join(m.ParamsDiffer, ", "))
		}
		if m.Counters != nil {
			var cs []string
			for _, n := range kmod.Stats(m.Counters).Names() {
				cs = append(cs, fmt.Sprintf("%s=%d", n, m.Counters[n]))
			}
			fmt.Fprintf(&b, "  Counters: %s\n", strings.Join(cs, " "))
		}
		if m.Error != "" {
			fmt.Fprintf(&b, "  Error:    %s\n", m.Error)
		}
	}
	d := r.Daemon
	st := d.State
	switch {
	case st == nil:
		fmt.Fprintf(&b, "Daemon:   not running (%s)\n", d.Note)
	case d.Running == state.Running.String():
		fmt.Fprintf(&b, "Daemon:   running (pid %d, kechod %s), %s since %s (%s)\n", st.PID, st.Version, st.State,
			st.Since.Local().Format(timeFormat), ago(now, st.Since))
	default:
		fmt.Fprintf(&b, "Daemon:   %s: %s\n", d.Running, d.Note)
	}
	if st != nil {
		fmt.Fprintf(&b, "  Status:   %s\n", st.Status)
		if st.Probes.Total > 0 {
			rtt := ""
			if st.Probes.LastRTT > 0 {
				rtt = fmt.Sprintf(", last good rtt %.2f ms", float64(st.Probes.LastRTT)/float64(time.Millisecond))
			}
			fmt.Fprintf(&b, "  Probes:   %d/%d ok to %s, last %s at %s (%s)%s\n", st.Probes.OK, st.Probes.Total,
				st.Probes.Target, st.Probes.LastResult, st.Probes.LastAt.Local().Format(timeFormat), ago(now, st.Probes.LastAt), rtt)
		}
		cf := strings.Join(st.ConfigFiles, ", ")
		if cf == "" {
			cf = "built-in defaults"
		}
		fmt.Fprintf(&b, "  Config:   %s\n", cf)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
