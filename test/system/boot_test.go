package system

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/system/sysimage"
)

const howBoot = "sudo go test ./test/system -run TestBootedSystem -v (4-8 minutes: chroot install, ext4 image, one qemu TCG boot)"

// maxExposure is the highest `systemd-analyze security` exposure the unit
// may have in the booted system (measured: 2.3, "OK"); more means a
// hardening option was lost.
const maxExposure = 3.0

// observeSeconds is how long kechod runs in the guest before the watchdog
// verdict (WatchdogSec=30s: a stalled main loop would have fired twice).
const observeSeconds = 70

// The operator's flow on a real Debian 12 system: apt install both .debs
// (in a chroot; DKMS builds the module for the image's kernel), boot the
// image with its own kernel and initramfs in qemu with systemd as init,
// and check kechod the way an operator would.
func TestBootedSystem(t *testing.T) {
	require(t, howBoot, "debootstrap", "chroot", "mount", "mkfs.ext4", "qemu-system-x86_64")
	requireTools(t, howBoot, "dpkg-deb")
	v := repoVersion(t)
	v2 := nextPatch(t, v)
	arts := build(t, buildOpts{})
	debs := []string{find(t, arts, "kecho-dkms", "deb", "all"), find(t, arts, "kechod", "deb", "amd64")}
	// kechod v2, upgraded to inside the running guest (no module build
	// under TCG): the maintainer scripts with systemd running.
	upgrade := find(t, build(t, buildOpts{Version: v2}), "kechod", "deb", "amd64")
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Now()
	sys, err := sysimage.PrepareSystem(ctx, dir, testLog{t}, debs, []string{upgrade})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sys.InstallLog), "summary for kecho/"+v+": installed for: "+sys.Release+";") {
		t.Errorf("apt install did not build kecho for %s:\n%s", sys.Release, sys.InstallLog)
	}
	t.Logf("image ready in %s", time.Since(start).Round(time.Second))

	consoleLog := filepath.Join(dir, "console.log")
	console, err := os.Create(consoleLog)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sysimage.Boot(ctx, sysimage.BootOptions{
		Image:   sys.Image,
		Cmdline: "kecho.observe=" + strconv.Itoa(observeSeconds),
		Console: console,
		Timeout: 12 * time.Minute, // about 3 minutes on an idle 2-core machine; 6 under heavy load
	})
	console.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest booted, checked and powered off in %s", res.Duration.Round(time.Second))
	rep, err := sysimage.ParseReport(res.Report)
	if err != nil {
		t.Fatalf("%v\nconsole tail:\n%s", err, lastBytes(res.Console, 5000))
	}
	defer func() {
		if t.Failed() {
			t.Logf("guest report:\n%s", res.Report)
			t.Logf("console tail:\n%s", lastBytes(res.Console, 5000))
		}
	}()
	t.Logf("guest timeline (uptime at the end of each step): %s", rep.Timeline())
	if !rep.Done {
		t.Errorf("the check script did not run to its end; steps: %v", rep.Order)
	}
	step := func(name string) sysimage.Step {
		t.Helper()
		s, ok := rep.Steps[name]
		if !ok {
			t.Errorf("no %q step in the guest report", name)
		}
		return s
	}

	// The module: built in the chroot, found and loaded in the guest.
	if s := step("uname"); strings.TrimSpace(s.Out) != sys.Release {
		t.Errorf("guest runs kernel %q, want the image's %s", s.Out, sys.Release)
	}
	if s := step("dkms-status"); !strings.Contains(s.Out, "kecho/"+v+", "+sys.Release+", x86_64: installed") {
		t.Errorf("dkms status in the guest:\n%s", s.Out)
	}
	if s := step("lsmod"); s.RC != 0 || !strings.HasPrefix(s.Out, "kecho ") {
		t.Errorf("kecho is not loaded in the guest (rc %d):\n%s", s.RC, s.Out)
	}
	if s := step("modinfo"); !regexp.MustCompile(`(?m)^version:\s+` + regexp.QuoteMeta(v) + `$`).MatchString(s.Out) {
		t.Errorf("modinfo kecho: version is not %s:\n%s", v, s.Out)
	}
	if s := step("parameters"); !strings.Contains(s.Out, "port=5555") {
		t.Errorf("module parameters:\n%s", s.Out)
	}

	// The service.
	if s := step("failed-units"); strings.TrimSpace(s.Out) != "" {
		t.Errorf("failed units after boot:\n%s", s.Out)
	}
	if s := step("is-active"); s.RC != 0 || strings.TrimSpace(s.Out) != "active" {
		t.Errorf("systemctl is-active kechod: %q (rc %d)", s.Out, s.RC)
	}
	status := step("status")
	t.Logf("systemctl status kechod:\n%s", status.Out)
	if !strings.Contains(status.Out, "Active: active (running)") {
		t.Errorf("systemctl status kechod is not active (running):\n%s", status.Out)
	}
	if !regexp.MustCompile(`Status: "healthy · kecho :5555 · rtt [0-9.]+ ms`).MatchString(status.Out) {
		t.Errorf("systemctl status kechod has no healthy STATUS line:\n%s", status.Out)
	}
	first := step("show-start")
	for k, want := range map[string]string{"ActiveState": "active", "SubState": "running", "NRestarts": "0", "WatchdogUSec": "30s", "NotifyAccess": "main"} {
		if got := first.Prop(k); got != want {
			t.Errorf("after boot: %s=%q, want %q", k, got, want)
		}
	}
	pid := first.Prop("MainPID")

	// The user flow's last line: the echo comes back.
	ping := step("ping")
	t.Logf("kechod ping 127.0.0.1 \"hello world\":\n%s", ping.Out)
	if ping.RC != 0 || !strings.Contains(ping.Out, `"hello world"`) || !strings.Contains(ping.Out, "1 received") {
		t.Errorf("kechod ping (rc %d):\n%s", ping.RC, ping.Out)
	}

	// Reload: quick, the same process, still active and answering.
	reload := step("reload")
	if reload.RC != 0 {
		t.Errorf("systemctl reload kechod: exit status %d", reload.RC)
	}
	if m := regexp.MustCompile(`reload_ms=(\d+)`).FindStringSubmatch(reload.Out); m == nil {
		t.Errorf("reload: no duration in %q", reload.Out)
	} else if ms, _ := strconv.Atoi(m[1]); ms > 15000 {
		t.Errorf("systemctl reload kechod took %d ms, want a few seconds at most", ms)
	} else {
		t.Logf("systemctl reload kechod: %d ms (TCG)", ms)
	}
	if s := step("is-active-after-reload"); strings.TrimSpace(s.Out) != "active" {
		t.Errorf("after reload: is-active %q", s.Out)
	}
	if s := step("show-after-reload"); s.Prop("MainPID") != pid || s.Prop("NRestarts") != "0" {
		t.Errorf("reload restarted kechod: MainPID %s -> %s, NRestarts=%s", pid, s.Prop("MainPID"), s.Prop("NRestarts"))
	}
	if s := step("ping-after-reload"); s.RC != 0 {
		t.Errorf("kechod ping after reload (rc %d):\n%s", s.RC, s.Out)
	}

	// Over a minute of running: no watchdog timeout, no restart.
	obs := step("show-observed")
	startUS, _ := strconv.ParseInt(first.Prop("ExecMainStartTimestampMonotonic"), 10, 64)
	up, _ := strconv.ParseFloat(strings.Fields(step("uptime").Out + " 0")[0], 64)
	ran := up - float64(startUS)/1e6
	if ran < 60 {
		t.Errorf("kechod was observed for only %.0f s, want over a minute", ran)
	} else {
		t.Logf("kechod observed running for %.0f s", ran)
	}
	if obs.Prop("ActiveState") != "active" || obs.Prop("NRestarts") != "0" || obs.Prop("MainPID") != pid {
		t.Errorf("after %.0f s: ActiveState=%s NRestarts=%s MainPID=%s (was %s)", ran, obs.Prop("ActiveState"), obs.Prop("NRestarts"), obs.Prop("MainPID"), pid)
	}
	if !strings.HasPrefix(obs.Prop("StatusText"), "healthy · ") {
		t.Errorf("after %.0f s: STATUS %q", ran, obs.Prop("StatusText"))
	}
	if s := step("watchdog-messages"); s.RC != 1 || strings.TrimSpace(s.Out) != "" {
		t.Errorf("the journal has watchdog timeouts:\n%s", s.Out)
	}
	journal := step("journal")
	if strings.Contains(journal.Out, "Watchdog timeout") || strings.Contains(journal.Out, "Failed with result") {
		t.Errorf("kechod's journal:\n%s", journal.Out)
	}

	// Hardening as measured by systemd itself in the running system.
	sec := step("security")
	if m := regexp.MustCompile(`Overall exposure level for kechod\.service: ([0-9.]+)`).FindStringSubmatch(sec.Out); m == nil {
		t.Errorf("systemd-analyze security kechod.service:\n%s", sec.Out)
	} else if x, _ := strconv.ParseFloat(m[1], 64); x > maxExposure {
		t.Errorf("systemd-analyze security: exposure %s, want at most %.1f:\n%s", m[1], maxExposure, sec.Out)
	} else {
		t.Logf("systemd-analyze security kechod.service (booted guest): exposure %s", m[1])
	}

	// A clean stop: exit 0, inactive, not failed.
	if s := step("stop"); s.RC != 0 {
		t.Errorf("systemctl stop kechod: exit status %d\n%s", s.RC, s.Out)
	}
	stopped := step("show-stopped")
	if stopped.Prop("ActiveState") != "inactive" || stopped.Prop("Result") != "success" {
		t.Errorf("after stop: ActiveState=%s Result=%s", stopped.Prop("ActiveState"), stopped.Prop("Result"))
	}
	if s := step("is-failed"); strings.TrimSpace(s.Out) == "failed" {
		t.Errorf("kechod is failed after stop")
	}

	// The Debian maintainer scripts with systemd running.
	pkg := func(name string) sysimage.Step {
		t.Helper()
		s := step(name)
		if s.RC != 0 {
			t.Errorf("%s: exit status %d\n%s", name, s.RC, s.Out)
		}
		return s
	}
	pkg("pkg-start")
	before := step("pkg-show-before")
	pkg("pkg-upgrade")
	up2 := step("pkg-show-upgraded")
	if up2.Prop("ActiveState") != "active" || up2.Prop("MainPID") == before.Prop("MainPID") {
		t.Errorf("upgrade to %s did not restart kechod: ActiveState=%s MainPID %s -> %s", v2, up2.Prop("ActiveState"), before.Prop("MainPID"), up2.Prop("MainPID"))
	}
	if s := pkg("pkg-version"); !strings.Contains(s.Out, v2) {
		t.Errorf("after the upgrade kechod version says:\n%s", s.Out)
	}
	pkg("pkg-ping")
	pkg("pkg-remove")
	if s := step("pkg-show-removed"); s.Prop("ActiveState") != "inactive" || s.Prop("Result") != "success" {
		t.Errorf("apt remove kechod: ActiveState=%s Result=%s, want inactive/success", s.Prop("ActiveState"), s.Prop("Result"))
	}
	pkg("pkg-reinstall")
	if s := step("pkg-show-reinstalled"); s.Prop("ActiveState") != "active" {
		t.Errorf("reinstalling kechod after its removal did not start it: ActiveState=%s", s.Prop("ActiveState"))
	}
	pkg("pkg-purge")
	if s := step("pkg-show-purged"); s.Prop("ActiveState") != "inactive" {
		t.Errorf("apt purge kechod: ActiveState=%s", s.Prop("ActiveState"))
	}
	if s := step("pkg-left"); strings.Count(s.Out, "No such file or directory") != 3 {
		t.Errorf("apt purge kechod left files behind:\n%s", s.Out)
	}
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
