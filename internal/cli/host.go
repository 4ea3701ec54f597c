package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/state"
)

// hostDeps is what the service commands (run, check, status) touch on the
// host besides the configuration: modprobe, sysfs, the state directory,
// /proc and the process's signals. Tests replace host.
type hostDeps struct {
	runner    kmod.Runner
	sysfsRoot string
	stateDir  string
	procRoot  string
	// signals subscribes to SIGHUP, SIGTERM and SIGINT; stop undoes it.
	signals func() (ch <-chan os.Signal, stop func())
}

var host = hostDeps{
	runner:    kmod.ExecRunner{},
	sysfsRoot: kmod.DefaultSysfsRoot,
	stateDir:  state.DefaultDir,
	procRoot:  "/proc",
	signals: func() (<-chan os.Signal, func()) {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		return ch, func() { signal.Stop(ch) }
	},
}
