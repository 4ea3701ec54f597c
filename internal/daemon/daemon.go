// Package daemon is kechod's service loop (`kechod run`): it loads the kecho
// module with the configured parameters, health-checks it with UDP probes,
// recovers it when it fails or disappears, re-reads the configuration on
// SIGHUP, and reports to systemd (READY, STATUS, WATCHDOG, RELOADING,
// STOPPING), to the state file under /run/kechod and to the metrics.
//
// Everything that touches the host is injected (modprobe runner, sysfs
// root, prober, clock, signals, notification socket through NOTIFY_SOCKET),
// so the loop is tested without root.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kecho-dev/kecho/internal/config"
	"github.com/kecho-dev/kecho/internal/health"
	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/metrics"
	"github.com/kecho-dev/kecho/internal/notify"
	"github.com/kecho-dev/kecho/internal/state"
)

// Prober sends health probes; *health.Prober is one.
type Prober interface {
	Probe(ctx context.Context) health.Result
	Close() error
}

// Options are what Run needs. Config, Runner and Signals are required.
type Options struct {
	// Config is the configuration loaded at start.
	Config *config.Loaded
	// Reload re-reads the configuration on SIGHUP; nil refuses reloads.
	Reload func() (*config.Loaded, error)
	// OnConfig is called with each configuration taken into use (at start
	// and after each accepted reload), e.g. to apply log.level.
	OnConfig func(*config.Loaded)

	Runner    kmod.Runner
	SysfsRoot string // "" = /sys
	// StateDir is where state.json is written; "" writes none.
	StateDir string
	// Signals delivers SIGHUP (reload), SIGTERM and SIGINT (stop).
	Signals <-chan os.Signal

	Notifier  *notify.Notifier // nil: notify.New(Logger)
	Logger    *slog.Logger     // nil: slog.Default()
	Clock     Clock            // nil: RealClock
	NewProber func(health.Config) (Prober, error)
	// Watchdog is the WATCHDOG=1 interval; 0 takes half of WATCHDOG_USEC,
	// negative disables it.
	Watchdog time.Duration
	// StartupTimeout bounds the wait for the first good probe; 0 means
	// three probe timeouts.
	StartupTimeout time.Duration
	// Version and Commit are reported in the state file and metrics.
	Version, Commit string
}

// StartupError is a start that could not complete: no READY was sent and
// kechod exits 1. Reason is the operator-facing line, also sent as STATUS.
type StartupError struct {
	Reason string
	Err    error
}

func (e *StartupError) Error() string { return e.Reason }
func (e *StartupError) Unwrap() error { return e.Err }

// States lists every state, for metrics.
var States = []string{state.Starting, state.Loading, state.Healthy, state.Unhealthy, state.Recovering,
	state.Reloading, state.Failed, state.Stopping}

type daemon struct {
	o       Options
	log     *slog.Logger
	n       *notify.Notifier
	clk     Clock
	loaded  *config.Loaded
	cfg     config.Config
	mod     atomic.Pointer[kmod.Manager]
	prober  Prober
	track   health.Tracker
	met     *metrics.Metrics
	msrv    *metrics.Server
	mlisten string

	st        string // current state
	reason    string
	since     time.Time
	rejected  string // why the last reload was rejected, until one is accepted
	stateWarn bool
	probeTick Ticker

	pid         int
	stateFile   *state.Writer
	writeEvery  int // write the state file after this many probes without a state change
	unwritten   int // probes since the state file was written
	seen        *moduleView
	endpointStr string
}

// stateRefresh bounds how old the probe counts in the state file get when
// nothing else changes: at probe intervals shorter than this the file is
// rewritten every stateRefresh/interval probes instead of after each one.
// It is far below the staleness limit of `kechod status` (three intervals
// plus a minute, state.Check).
const stateRefresh = time.Second

// moduleView is what one tick read of the module from sysfs, reused for
// the state file written at the end of the same tick.
type moduleView struct {
	loaded    bool
	params    kmod.Params
	paramsErr error
}

// Run runs the service until SIGTERM/SIGINT or ctx ends (nil error) or the
// start fails (*StartupError).
func Run(ctx context.Context, o Options) error {
	d := &daemon{o: o, log: o.Logger, n: o.Notifier, clk: o.Clock, pid: os.Getpid()}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.n == nil {
		d.n = notify.New(d.log)
	}
	if d.clk == nil {
		d.clk = RealClock
	}
	if d.o.NewProber == nil {
		d.o.NewProber = func(c health.Config) (Prober, error) { return health.NewProber(c) }
	}
	d.met = metrics.New(metrics.Options{
		Module:  func() metrics.ModuleSource { return d.mod.Load() },
		Version: o.Version, Commit: o.Commit, States: States,
	})
	d.take(o.Config)
	return d.run(ctx)
}

// take makes l the configuration in use.
func (d *daemon) take(l *config.Loaded) {
	d.loaded, d.cfg = l, l.Config
	d.track.Threshold = d.cfg.Health.FailureThreshold
	d.writeEvery = max(1, int(stateRefresh/max(d.cfg.Health.Interval, 1)))
	d.endpointStr = d.endpoint()
	if d.stateFile == nil && d.o.StateDir != "" {
		d.stateFile = state.NewWriter(d.o.StateDir)
	}
	if m := d.mod.Load(); m == nil || m.Name != d.cfg.Module.Name {
		d.mod.Store(&kmod.Manager{Name: d.cfg.Module.Name, Runner: d.o.Runner, SysfsRoot: d.o.SysfsRoot, Logger: d.log})
	}
	if d.o.OnConfig != nil {
		d.o.OnConfig(l)
	}
}

// Params are the module parameters of c.
func Params(c config.Config) kmod.Params {
	return kmod.Params{Port: uint16(c.Module.Port), BindAddr: c.Module.BindAddress,
		LogPackets: c.Module.LogPackets, MaxPPS: c.Module.MaxPPS}
}

func (d *daemon) run(ctx context.Context) error {
	d.setState(state.Starting, "")
	d.log.Info("starting", "version", d.o.Version, "config", strings.Join(d.loaded.Files, ","),
		"module", d.cfg.Module.Name, "params", Params(d.cfg).String())

	d.setState(state.Loading, "")
	if err := d.ensureModule(ctx); err != nil {
		return d.failStart(ctx, kmod.Summary(err), err)
	}
	d.startMetrics()
	if err := d.openProber(); err != nil {
		return d.failStart(ctx, err.Error(), err)
	}
	r, stop, hup := d.firstProbe(ctx)
	if stop {
		return d.stop(ctx)
	}
	if !r.OK() {
		return d.failStart(ctx, "no echo at start: "+r.Reason(), errors.New(r.Reason()))
	}
	wd := d.o.Watchdog
	if wd == 0 {
		var err error
		if wd, err = notify.WatchdogInterval(); err != nil {
			d.log.Warn("watchdog disabled", "err", err)
		}
	}
	var wdTick Ticker = nopTicker{}
	if wd > 0 {
		wdTick = d.clk.NewTicker(wd)
		d.log.Debug("watchdog enabled", "interval", wd)
	}
	defer wdTick.Stop()
	d.probeTick = d.clk.NewTicker(d.cfg.Health.Interval)
	defer d.probeTick.Stop()

	d.setState(state.Healthy, "")
	d.n.Ready()
	d.log.Info("ready", "module", d.cfg.Module.Name, "target", r.Target.String(), "rtt", r.RTT)
	if hup {
		d.reload(ctx)
	}

	for {
		select {
		case <-ctx.Done():
			return d.stop(ctx)
		case <-wdTick.C():
			d.n.Watchdog()
		case <-d.probeTick.C():
			d.check(ctx)
		case sig := <-d.o.Signals:
			switch sig {
			case syscall.SIGHUP:
				d.reload(ctx)
			case syscall.SIGTERM, os.Interrupt:
				d.log.Info("stopping", "signal", sig.String())
				return d.stop(ctx)
			}
		}
	}
}

// ensureModule makes the module run with the configured parameters.
func (d *daemon) ensureModule(ctx context.Context) error {
	m := d.mod.Load()
	act, err := m.Ensure(ctx, Params(d.cfg))
	if err != nil {
		d.log.Error("cannot load module", "module", m.Name, "params", Params(d.cfg).String(),
			"cause", kmod.Summary(err), "err", err)
		return err
	}
	d.log.Info("module running", "module", m.Name, "action", act.String(), "params", Params(d.cfg).String(),
		"loaded_by_kechod", m.LoadedByUs())
	return nil
}

func (d *daemon) openProber() error {
	if d.prober != nil {
		d.prober.Close()
		d.prober = nil
	}
	p, err := d.o.NewProber(health.Config{
		Target:      d.cfg.ProbeTarget(),
		Timeout:     d.cfg.Health.Timeout,
		PayloadSize: d.cfg.Health.PayloadSize,
		Clock:       d.clk,
	})
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	d.prober = p
	return nil
}

// firstProbe probes until an echo comes back or the startup time is over.
// stop reports a SIGTERM/SIGINT or ctx end meanwhile.
// A SIGHUP meanwhile is reported as hup, to be handled once ready.
func (d *daemon) firstProbe(ctx context.Context) (r health.Result, stop, hup bool) {
	limit := d.o.StartupTimeout
	if limit <= 0 {
		limit = 3 * d.cfg.Health.Timeout
	}
	deadline := time.Now().Add(limit)
	pause := min(d.cfg.Health.Timeout/4, 250*time.Millisecond)
	for {
		r = d.probe(ctx)
		if r.OK() || !time.Now().Add(pause).Before(deadline) {
			return r, false, hup
		}
		d.log.Debug("first probe failed, retrying", "reason", r.Reason())
		select {
		case <-ctx.Done():
			return r, true, hup
		case sig := <-d.o.Signals:
			if sig != syscall.SIGHUP {
				return r, true, hup
			}
			hup = true
		case <-time.After(pause):
		}
	}
}

// probe sends one probe and records its result.
func (d *daemon) probe(ctx context.Context) health.Result {
	r := d.prober.Probe(ctx)
	d.track.Observe(r)
	d.met.ObserveProbe(r, d.track.Consecutive)
	if r.OK() {
		if d.log.Enabled(ctx, slog.LevelDebug) {
			d.log.Debug("probe ok", "target", r.Target.String(), "rtt", r.RTT)
		}
	} else {
		d.log.Warn("probe failed", "target", r.Target.String(), "result", string(r.Outcome),
			"reason", r.Reason(), "consecutive", d.track.Consecutive, "threshold", d.track.Threshold)
	}
	if r.Stale > 0 || r.Mismatched > 0 {
		d.log.Warn("ignored datagrams that are not the probe's echo", "stale", r.Stale, "other", r.Mismatched)
	}
	return r
}

// check is one tick of the health loop.
func (d *daemon) check(ctx context.Context) {
	m := d.mod.Load()
	v := moduleView{loaded: m.Loaded()}
	if v.loaded {
		v.params, v.paramsErr = m.Params()
	}
	d.seen = &v
	defer func() { d.seen = nil }()
	if !v.loaded {
		reason := "module " + m.Name + " is not loaded (removed behind kechod's back)"
		d.log.Warn("module disappeared", "module", m.Name)
		d.recover(ctx, reason)
		return
	}
	if have, err := v.params, v.paramsErr; err == nil && !have.Equal(Params(d.cfg)) {
		reason := "module " + m.Name + " runs with " + strings.Join(have.Diff(Params(d.cfg)), ", ")
		d.log.Warn("module parameters changed behind kechod's back", "module", m.Name,
			"running", have.String(), "config", Params(d.cfg).String())
		d.recover(ctx, reason)
		return
	}
	r := d.probe(ctx)
	switch {
	case r.OK():
		if d.st != state.Healthy {
			d.log.Info("module healthy", "module", m.Name, "after", d.st)
		}
		d.setState(state.Healthy, "")
	case d.track.Failing():
		if d.st != state.Unhealthy {
			d.log.Error("module unhealthy", "module", m.Name, "reason", r.Reason(), "failures", d.track.Consecutive)
		}
		d.setState(state.Unhealthy, r.Reason())
		// Recover when the threshold is reached, and again after each
		// further threshold's worth of failures.
		if d.cfg.Health.Recovery == config.RecoveryReload &&
			(d.track.Consecutive-d.track.Threshold)%max(d.track.Threshold, 1) == 0 {
			d.recover(ctx, r.Reason())
		}
	default:
		d.setState(d.st, d.reason) // counts changed
	}
}

// recover reloads the module (recovery: reload) and probes it again; with
// recovery: none it only reports the problem.
func (d *daemon) recover(ctx context.Context, reason string) {
	d.seen = nil // what check read of the module is about to change
	m := d.mod.Load()
	if d.cfg.Health.Recovery != config.RecoveryReload {
		d.setState(state.Unhealthy, reason)
		return
	}
	d.setState(state.Recovering, reason)
	d.log.Info("recovering module", "module", m.Name, "reason", reason)
	if err := m.Unload(ctx); err != nil {
		d.log.Error("recovery failed", "module", m.Name, "step", "unload", "cause", kmod.Summary(err), "err", err)
		d.setState(state.Unhealthy, reason+"; recovery failed: "+kmod.Summary(err))
		return
	}
	if err := m.Load(ctx, Params(d.cfg)); err != nil {
		d.log.Error("recovery failed", "module", m.Name, "step", "load", "cause", kmod.Summary(err), "err", err)
		d.setState(state.Unhealthy, reason+"; recovery failed: "+kmod.Summary(err))
		return
	}
	r := d.probe(ctx)
	if !r.OK() {
		d.log.Error("recovery failed", "module", m.Name, "step", "probe", "reason", r.Reason())
		d.setState(state.Unhealthy, "reloaded "+m.Name+" but "+r.Reason())
		return
	}
	d.log.Info("module recovered", "module", m.Name, "rtt", r.RTT)
	d.setState(state.Healthy, "")
}

// reload is SIGHUP: re-read the configuration and apply it.
func (d *daemon) reload(ctx context.Context) {
	d.log.Info("reloading configuration")
	d.n.Reloading()
	prevState, prevReason := d.st, d.reason
	d.setState(state.Reloading, "")
	defer d.n.Ready()

	var l *config.Loaded
	err := errors.New("reloading is not supported")
	if d.o.Reload != nil {
		l, err = d.o.Reload()
	}
	if err != nil {
		d.rejected = "config rejected: " + oneLine(err.Error())
		d.log.Error("configuration rejected, keeping the previous one", "err", oneLine(err.Error()))
		d.setState(prevState, prevReason)
		return
	}
	for _, w := range l.Warnings {
		d.log.Warn("configuration warning", "warning", w)
	}
	old := d.loaded
	oldMod := d.mod.Load()
	modChanged := l.Config.Module.Name != d.cfg.Module.Name || !Params(l.Config).Equal(Params(d.cfg))
	d.take(l)
	d.rejected = ""
	if modChanged {
		d.log.Info("module parameters changed, reloading the module", "module", d.cfg.Module.Name,
			"old", Params(old.Config).String(), "new", Params(d.cfg).String())
		if err := d.applyModule(ctx, oldMod); err != nil {
			d.rejected = "config rejected: " + kmod.Summary(err)
			d.log.Error("configuration rejected, keeping the previous one", "err", kmod.Summary(err))
			d.take(old)
			if err := d.applyModule(ctx, d.mod.Load()); err != nil {
				d.log.Error("cannot restore the previous module parameters", "cause", kmod.Summary(err), "err", err)
			}
		}
	}
	d.log.Info("configuration applied", "config", strings.Join(d.loaded.Files, ","), "params", Params(d.cfg).String())
	if d.mlisten != d.cfg.Metrics.Listen {
		d.stopMetrics()
		d.startMetrics()
	}
	d.probeTick.Reset(d.cfg.Health.Interval)
	if err := d.openProber(); err != nil {
		d.setState(state.Unhealthy, err.Error())
		return
	}
	r := d.probe(ctx)
	if r.OK() {
		d.setState(state.Healthy, "")
	} else {
		d.setState(state.Unhealthy, r.Reason())
	}
}

// applyModule switches from the module managed by prev to the configured
// one: a changed name unloads the old module (when kechod loaded it).
func (d *daemon) applyModule(ctx context.Context, prev *kmod.Manager) error {
	cur := d.mod.Load()
	if prev != cur && prev.LoadedByUs() {
		if err := prev.Unload(ctx); err != nil {
			d.log.Warn("cannot unload the previous module", "module", prev.Name, "err", err)
		}
	}
	return d.ensureModule(ctx)
}

func (d *daemon) startMetrics() {
	d.mlisten = d.cfg.Metrics.Listen
	if d.mlisten == "" {
		return
	}
	s, err := metrics.Listen(d.mlisten, d.met.Handler(), d.log)
	if err != nil {
		d.log.Error("metrics endpoint disabled", "listen", d.mlisten, "err", err)
		return
	}
	d.msrv = s
}

func (d *daemon) stopMetrics() {
	if d.msrv != nil {
		d.msrv.Close()
		d.msrv = nil
	}
}

func (d *daemon) cleanup(ctx context.Context) {
	d.stopMetrics()
	if d.prober != nil {
		d.prober.Close()
	}
	m := d.mod.Load()
	if d.cfg.Module.UnloadOnStop && m.LoadedByUs() {
		if err := m.Unload(ctx); err != nil {
			d.log.Error("cannot unload module", "module", m.Name, "cause", kmod.Summary(err), "err", err)
		}
	}
}

func (d *daemon) failStart(ctx context.Context, reason string, err error) error {
	d.setState(state.Failed, reason)
	d.cleanup(context.WithoutCancel(ctx))
	d.writeState()
	return &StartupError{Reason: reason, Err: err}
}

func (d *daemon) stop(ctx context.Context) error {
	d.n.Stopping()
	d.setState(state.Stopping, "")
	d.cleanup(context.WithoutCancel(ctx))
	d.st = state.Stopped
	d.writeState()
	d.log.Info("stopped")
	return nil
}

// setState records the state, sends STATUS and rewrites the state file:
// at once when the state or its reason changed, else (only the probe
// counts changed) after writeEvery such calls.
func (d *daemon) setState(st, reason string) {
	changed := st != d.st || reason != d.reason
	if changed {
		d.since = d.clk.Now()
	}
	d.st, d.reason = st, reason
	d.met.SetState(st)
	status := d.status()
	if d.unwritten++; changed || d.unwritten >= d.writeEvery {
		d.writeStateStatus(status)
	}
	d.n.Status(status)
}

// status is the STATUS= line.
func (d *daemon) status() string {
	counts := strconv.FormatUint(d.track.OK, 10) + "/" + strconv.FormatUint(d.track.Total, 10) + " probes ok"
	var s string
	switch d.st {
	case state.Starting:
		s = "starting…"
	case state.Loading:
		s = "loading module"
	case state.Reloading:
		s = "reloading…"
	case state.Stopping:
		s = "stopping…"
	case state.Healthy:
		rtt := "rtt " + msec(d.track.LastOK.RTT)
		s = "healthy · " + d.endpointStr + " · " + rtt + " · " + counts
	case state.Unhealthy:
		s = "unhealthy · " + d.reason + " · " + counts
	case state.Recovering:
		s = "recovering · " + d.reason
	case state.Failed:
		s = "failed · " + d.reason
	default:
		s = d.st
	}
	if d.rejected != "" && d.st != state.Reloading {
		s += " · " + d.rejected
	}
	return s
}

// endpoint is "kecho :5555", or "kecho 192.0.2.1:5555" for a specific
// bind address.
func (d *daemon) endpoint() string {
	port := strconv.Itoa(d.cfg.Module.Port)
	a, err := netip.ParseAddr(d.cfg.Module.BindAddress)
	if err == nil && a.IsUnspecified() && a.Is4() {
		return d.cfg.Module.Name + " :" + port
	}
	if err == nil {
		return d.cfg.Module.Name + " " + netip.AddrPortFrom(a, uint16(d.cfg.Module.Port)).String()
	}
	return d.cfg.Module.Name + " " + d.cfg.Module.BindAddress + ":" + port
}

func msec(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (d *daemon) writeState() { d.writeStateStatus(d.status()) }

// writeStateStatus writes the state file with status as its STATUS line.
// The module is read from sysfs unless this tick's check already did.
func (d *daemon) writeStateStatus(status string) {
	d.unwritten = 0
	if d.stateFile == nil {
		return
	}
	m := d.mod.Load()
	v := d.seen
	if v == nil {
		v = &moduleView{loaded: m.Loaded()}
		v.params, v.paramsErr = m.Params()
	}
	s := state.State{
		State: d.st, Reason: d.reason, Status: status, Since: d.since, Updated: d.clk.Now(),
		PID: d.pid, Version: d.o.Version, ConfigFiles: d.loaded.Files,
		Module: state.Module{Name: m.Name, Loaded: v.loaded, ByKechod: m.LoadedByUs()},
		Probes: state.Probes{
			Target: d.cfg.ProbeTarget().String(), Interval: state.Duration(d.cfg.Health.Interval),
			OK: d.track.OK, Total: d.track.Total, Consecutive: d.track.Consecutive,
		},
	}
	if d.st == state.Stopped {
		s.Status = "stopped"
	}
	if s.ConfigFiles == nil {
		s.ConfigFiles = []string{}
	}
	if p, err := v.params, v.paramsErr; err == nil {
		s.Module.Params = map[string]string{}
		for _, a := range p.Args() {
			k, v, _ := strings.Cut(a, "=")
			s.Module.Params[k] = v
		}
	}
	if d.track.Total > 0 {
		s.Probes.LastAt = d.track.Last.At
		s.Probes.LastResult = string(d.track.Last.Outcome)
		s.Probes.LastRTT = state.Duration(d.track.LastOK.RTT)
	}
	if err := d.stateFile.Write(s); err != nil && !d.stateWarn {
		d.stateWarn = true
		d.log.Warn("cannot write state file", "err", err)
	}
}
