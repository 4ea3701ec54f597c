package sysimage

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// The system check that runs inside a booted image: a oneshot unit after
// multi-user.target and kechod.service runs checkScript, which writes each
// step's output and exit status to /dev/ttyS1 (a file on the host) and then
// powers the guest off. The host side parses that report and asserts; the
// guest only observes.

const checkUnitPath = "/etc/systemd/system/kecho-systemcheck.service"
const checkScriptPath = "/usr/local/libexec/kecho-systemcheck"

// guestPkgDir holds packages the check installs inside the running guest.
const guestPkgDir = "/var/cache/kecho-test/guest"

const checkUnit = `[Unit]
Description=kecho system check (report on ttyS1, then power off)
After=multi-user.target kechod.service
Wants=kechod.service

[Service]
Type=oneshot
ExecStart=` + checkScriptPath + `
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`

// checkScript observes kechod the way an operator would. kecho.observe=N on
// the kernel command line keeps kechod running for at least N seconds
// before the watchdog/restart verdict and the stop.
const checkScript = `#!/bin/bash
set +e
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null
export SYSTEMD_COLORS=0 SYSTEMD_PAGER='' LC_ALL=C.UTF-8
observe=$(sed -n 's/.*kecho\.observe=\([0-9]*\).*/\1/p' /proc/cmdline)
observe=${observe:-0}

# section NAME CMD...: the command's output and exit status.
section() {
	name=$1
	shift
	echo "=== begin $name" >&3
	"$@" >&3 2>&1
	rc=$?
	echo "=== end $name rc=$rc t=$(cut -d' ' -f1 /proc/uptime)" >&3
	echo "kecho-systemcheck: $name: exit status $rc"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
show() { systemctl show kechod.service -p ActiveState -p SubState -p Result -p NRestarts -p MainPID -p StatusText -p WatchdogUSec -p NotifyAccess -p ExecMainStartTimestampMonotonic; }

echo "=== report kecho-systemcheck" >&3
# kechod.service's start job is done (After=), but a failing daemon may be
# in auto-restart: give it up to 60 s to settle.
for _ in $(seq 60); do
	s=$(systemctl show -p ActiveState --value kechod.service)
	[ "$s" = activating ] || [ "$s" = deactivating ] || break
	sleep 1
done
section uname uname -r
section boot-time systemd-analyze time
section failed-units systemctl --failed --no-legend --plain
section is-active systemctl is-active kechod.service
section status systemctl status kechod.service --no-pager --full --lines=15
section show-start show
section dkms-status dkms status
section lsmod sh -c 'grep "^kecho " /proc/modules'
section modinfo modinfo kecho
section parameters sh -c 'for p in /sys/module/kecho/parameters/*; do echo "${p##*/}=$(cat "$p")"; done'
section ping kechod ping 127.0.0.1 "hello world"
section kechod-status kechod status
t0=$(now_ms)
timeout 60 systemctl reload kechod.service
rc=$?
t1=$(now_ms)
echo "=== begin reload" >&3
echo "reload_ms=$((t1 - t0))" >&3
echo "=== end reload rc=$rc t=$(cut -d" " -f1 /proc/uptime)" >&3
sleep 2
section is-active-after-reload systemctl is-active kechod.service
section show-after-reload show
section ping-after-reload kechod ping 127.0.0.1 "hello world"
# Let it run: the watchdog (WatchdogSec=30s) would fire within this time.
start=$(systemctl show -p ExecMainStartTimestampMonotonic --value kechod.service)
start_s=$(( ${start:-0} / 1000000 ))
up=$(cut -d. -f1 /proc/uptime)
wait=$(( start_s + observe - up ))
if [ "$wait" -gt 0 ]; then
	echo "kecho-systemcheck: observing kechod for another $wait s"
	sleep "$wait"
fi
section uptime cat /proc/uptime
section show-observed show
section journal journalctl -b --no-pager -o short-monotonic -u kechod.service
section watchdog-messages sh -c 'journalctl -b --no-pager | grep -i "watchdog timeout"'
section security systemd-analyze security --no-pager kechod.service
section stop timeout 60 systemctl stop kechod.service
section show-stopped show
section is-failed systemctl is-failed kechod.service
# The maintainer scripts with systemd running: upgrade, remove, reinstall
# and purge of kechod (` + guestPkgDir + `/kechod_*.deb, if there is one).
upgrade=$(ls ` + guestPkgDir + `/kechod_*.deb 2>/dev/null | head -n 1)
if [ -n "$upgrade" ]; then
	apt() { DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "$@"; }
	section pkg-start systemctl start kechod.service
	section pkg-show-before show
	section pkg-upgrade apt install "$upgrade"
	section pkg-show-upgraded show
	section pkg-version kechod version
	section pkg-ping kechod ping 127.0.0.1 "hello world"
	section pkg-remove apt remove kechod
	section pkg-show-removed show
	section pkg-reinstall apt install "$upgrade"
	section pkg-show-reinstalled show
	section pkg-purge apt purge kechod
	section pkg-show-purged show
	section pkg-left sh -c 'ls -d /etc/kechod /etc/systemd/system/multi-user.target.wants/kechod.service /usr/bin/kechod 2>&1'
fi
echo "=== done" >&3
sync
systemctl --no-block poweroff
`

// InstallSystemCheck puts the check unit and script into the root and
// enables the unit.
func (r *Root) InstallSystemCheck(ctx context.Context) error {
	if err := r.WriteFile(checkScriptPath, []byte(checkScript), 0o755); err != nil {
		return err
	}
	if err := r.WriteFile(checkUnitPath, []byte(checkUnit), 0o644); err != nil {
		return err
	}
	wants := r.Path("/etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	link := wants + "/kecho-systemcheck.service"
	os.Remove(link)
	return os.Symlink(checkUnitPath, link)
}

// Step is one step of the guest's report.
type Step struct {
	Out    string
	RC     int
	Uptime float64 // guest uptime (s) when the step ended
}

// Timeline is "name@uptime" for every step, in order: where a slow boot
// spent its time.
func (r *Report) Timeline() string {
	var b strings.Builder
	for _, n := range r.Order {
		fmt.Fprintf(&b, " %s@%.0fs", n, r.Steps[n].Uptime)
	}
	return strings.TrimSpace(b.String())
}

// Report is the parsed guest report.
type Report struct {
	Steps map[string]Step
	Order []string
	Done  bool // the script ran to its end
}

var endRE = regexp.MustCompile(`^=== end (\S+) rc=(\d+)(?: t=([0-9.]+))?$`)

// ParseReport parses what the check script wrote to ttyS1.
func ParseReport(b []byte) (*Report, error) {
	r := &Report{Steps: map[string]Step{}}
	text := strings.ReplaceAll(string(b), "\r", "")
	if !strings.Contains(text, "=== report kecho-systemcheck") {
		return r, fmt.Errorf("no report from the guest (the check unit did not run)")
	}
	var name string
	var body []string
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "=== begin "):
			name, body = strings.TrimPrefix(line, "=== begin "), nil
		case endRE.MatchString(line):
			m := endRE.FindStringSubmatch(line)
			rc, _ := strconv.Atoi(m[2])
			up, _ := strconv.ParseFloat(m[3], 64)
			r.Steps[m[1]] = Step{Out: strings.Join(body, "\n"), RC: rc, Uptime: up}
			r.Order = append(r.Order, m[1])
			name = ""
		case line == "=== done":
			r.Done = true
		case name != "":
			body = append(body, line)
		}
	}
	return r, nil
}

// Prop returns KEY's value from a `systemctl show` step.
func (s Step) Prop(key string) string {
	for _, l := range strings.Split(s.Out, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}
