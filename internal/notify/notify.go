// Package notify speaks the systemd service notification protocol
// (sd_notify(3)) through go-systemd's daemon package, with kechod's exact
// messages: READY=1, STATUS=..., WATCHDOG=1, RELOADING=1 with
// MONOTONIC_USEC=..., STOPPING=1.
//
// Outside systemd (no NOTIFY_SOCKET) every call does nothing. Failures to
// send are logged once and otherwise ignored: the service must not stop
// because the manager is not listening.
package notify

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends notifications to the service manager.
type Notifier struct {
	Logger *slog.Logger // nil: slog.Default()

	once sync.Once
}

// New returns a Notifier logging to logger.
func New(logger *slog.Logger) *Notifier { return &Notifier{Logger: logger} }

// Enabled reports whether a service manager listens (NOTIFY_SOCKET is set).
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Send sends one raw notification; the other methods use it.
func (n *Notifier) Send(msg string) {
	if n == nil {
		return
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		n.once.Do(func() {
			l := n.Logger
			if l == nil {
				l = slog.Default()
			}
			l.Warn("cannot notify the service manager", "socket", os.Getenv("NOTIFY_SOCKET"), "err", err)
		})
	}
}

// Ready sends READY=1: startup or a reload is complete.
func (n *Notifier) Ready() { n.Send(daemon.SdNotifyReady) }

// Status sends STATUS=s, the one-line status `systemctl status` shows.
func (n *Notifier) Status(s string) { n.Send("STATUS=" + s) }

// Watchdog sends WATCHDOG=1.
func (n *Notifier) Watchdog() { n.Send(daemon.SdNotifyWatchdog) }

// Stopping sends STOPPING=1.
func (n *Notifier) Stopping() { n.Send(daemon.SdNotifyStopping) }

// Reloading sends RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC time
// of the reload's start that Type=notify-reload services must send.
func (n *Notifier) Reloading() {
	msg := daemon.SdNotifyReloading
	if us, err := MonotonicUsec(); err == nil {
		msg += "\nMONOTONIC_USEC=" + strconv.FormatInt(us, 10)
	}
	n.Send(msg)
}

// MonotonicUsec is CLOCK_MONOTONIC in microseconds.
func MonotonicUsec() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	return ts.Nano() / 1000, nil
}

// WatchdogInterval is how often to send WATCHDOG=1: half of the service's
// WatchdogSec (WATCHDOG_USEC, for this process per WATCHDOG_PID), or 0 when
// the watchdog is off.
func WatchdogInterval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("watchdog: %w", err)
	}
	return d / 2, nil
}
