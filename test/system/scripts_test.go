package system

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The maintainer scripts, as packaged, run against recording stand-ins for
// dkms, systemctl, deb-systemd-helper, deb-systemd-invoke and uname, with
// the arguments dpkg and rpm pass, in the order they call them. A variable
// (KECHO_SYSTEMD_RUNDIR) points the "is systemd running" check at a
// directory that exists or not.

const howScripts = "go test ./test/system -run TestScripts"

const standinDKMS = `#!/bin/sh
echo "dkms $*" >>"$RECORD"
cmd=$1; shift
m= v= k= all=
while [ $# -gt 0 ]; do
	case $1 in
	-m) m=$2; shift ;;
	-v) v=$2; shift ;;
	-k) k=$2; shift ;;
	--all) all=1 ;;
	esac
	shift
done
case $cmd in
status)
	for f in "$STATE"/added-*; do
		[ -e "$f" ] || continue
		ver=${f##*/added-}
		if [ -n "$v" ] && [ "$v" != "$ver" ]; then continue; fi
		if [ -n "$k" ]; then
			if [ -e "$STATE/inst-$ver-$k" ]; then echo "kecho/$ver, $k, x86_64: installed"; fi
		else
			echo "kecho/$ver: added"
		fi
	done ;;
add)
	if [ -e "$STATE/added-$v" ]; then echo "Error! DKMS tree already contains: kecho-$v" >&2; exit 3; fi
	: >"$STATE/added-$v" ;;
install)
	[ -e "$STATE/added-$v" ] || { echo "not added" >&2; exit 2; }
	if [ -e "$STATE/fail-$k" ]; then echo "Error! Bad return status for module build on kernel: $k" >&2; exit 10; fi
	: >"$STATE/inst-$v-$k" ;;
remove)
	[ -n "$all" ] && rm -f "$STATE/added-$v" "$STATE/inst-$v-"* ;;
esac
exit 0
`

const standinSystemctl = `#!/bin/sh
echo "systemctl $*" >>"$RECORD"
case " $* " in
*" is-enabled "*) [ -e "$STATE/enabled" ]; exit $? ;;
*" enable "*) : >"$STATE/enabled" ;;
*" disable "*) rm -f "$STATE/enabled" ;;
*" start "*) [ -e "$STATE/fail-start" ] && exit 1 ;;
esac
exit 0
`

const standinRecorder = `#!/bin/sh
echo "$(basename "$0") $*" >>"$RECORD"
case "$(basename "$0") $*" in
"deb-systemd-invoke start "*) [ -e "$STATE/fail-start" ] && exit 1 ;;
"deb-systemd-helper --quiet was-enabled "*) [ -e "$STATE/dsh-disabled" ] && exit 1 ;;
esac
exit 0
`

// scriptEnv is one simulated system: stand-ins, state, kernels.
type scriptEnv struct {
	t       *testing.T
	dir     string
	bin     string
	state   string
	record  string
	systemd bool
	env     []string
}

func newScriptEnv(t *testing.T, systemd bool) *scriptEnv {
	e := &scriptEnv{t: t, dir: t.TempDir(), systemd: systemd}
	e.bin = filepath.Join(e.dir, "bin")
	e.state = filepath.Join(e.dir, "state")
	e.record = filepath.Join(e.dir, "record")
	for _, d := range []string{e.bin, e.state, filepath.Join(e.dir, "run-systemd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(e.bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("dkms", standinDKMS)
	write("systemctl", standinSystemctl)
	write("deb-systemd-helper", standinRecorder)
	write("deb-systemd-invoke", standinRecorder)
	write("uname", "#!/bin/sh\necho 6.1.0-9-amd64\n")
	// Kernels: the running one and another with headers; one without
	// headers; one outside BUILD_EXCLUSIVE_KERNEL; one that is only a
	// leftover directory.
	mods := filepath.Join(e.dir, "modules")
	for _, d := range []string{
		"6.1.0-9-amd64/kernel", "6.1.0-9-amd64/build", "6.1.0-10-amd64/kernel", "6.1.0-10-amd64/build",
		"6.1.0-8-amd64/kernel", "4.19.0-1-amd64/kernel", "4.19.0-1-amd64/build", "6.0.0-1-amd64/updates",
	} {
		if err := os.MkdirAll(filepath.Join(mods, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rundir := filepath.Join(e.dir, "no-systemd")
	if systemd {
		rundir = filepath.Join(e.dir, "run-systemd")
	}
	e.env = []string{
		"PATH=" + e.bin + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"RECORD=" + e.record, "STATE=" + e.state,
		"KECHO_SYSTEMD_RUNDIR=" + rundir,
		"KECHO_MODULES_DIR=" + mods,
		"KECHO_SRC_DIR=" + filepath.Join(e.dir, "src"),
		"KECHO_DKMS_TREE=" + filepath.Join(e.dir, "dkms-tree"),
		"KECHO_LOG_DIR=" + filepath.Join(e.dir, "log"),
		"KECHO_DPKG_MARK=" + filepath.Join(e.dir, "run", "kechod.dpkg-start"),
	}
	return e
}

// source provides /usr/src/kecho-<v>/dkms.conf for version v.
func (e *scriptEnv) source(v string) {
	d := filepath.Join(e.dir, "src", "kecho-"+v)
	if err := os.MkdirAll(d, 0o755); err != nil {
		e.t.Fatal(err)
	}
	conf := fmt.Sprintf("PACKAGE_NAME=\"kecho\"\nPACKAGE_VERSION=\"%s\"\nBUILD_EXCLUSIVE_KERNEL=\"^(5\\.1[0-9]|6\\.|7\\.)\"\n", v)
	if err := os.WriteFile(filepath.Join(d, "dkms.conf"), []byte(conf), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// run runs one script with args; it must exit 0. Returns its output.
func (e *scriptEnv) run(script string, args ...string) string {
	e.t.Helper()
	if strings.TrimSpace(script) == "" || strings.TrimSpace(script) == "(none)" {
		return ""
	}
	p := filepath.Join(e.dir, "script")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{p}, args...)...)
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("script %v failed: %v\n%s", args, err, out)
	}
	return string(out)
}

// calls returns and resets the recorded calls, without `dkms status` and
// `systemctl is-enabled` (queries).
func (e *scriptEnv) calls() []string {
	b, _ := os.ReadFile(e.record)
	os.Remove(e.record)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" || strings.HasPrefix(l, "dkms status") || strings.Contains(l, " is-enabled ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// registered lists the DKMS state: "added-V" and "inst-V-K" entries.
func (e *scriptEnv) registered() []string {
	ents, _ := os.ReadDir(e.state)
	var out []string
	for _, en := range ents {
		if strings.HasPrefix(en.Name(), "added-") || strings.HasPrefix(en.Name(), "inst-") {
			out = append(out, en.Name())
		}
	}
	return out
}

func (e *scriptEnv) expect(what string, want ...string) {
	e.t.Helper()
	got := e.calls()
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		e.t.Errorf("%s: calls\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (e *scriptEnv) expectState(what string, want ...string) {
	e.t.Helper()
	if got := e.registered(); !reflect.DeepEqual(got, want) {
		e.t.Errorf("%s: dkms state %v, want %v", what, got, want)
	}
}

// rpmScripts extracts the scriptlets of an rpm.
type rpmScripts struct{ pre, post, preun, postun, posttrans string }

func extractRPM(t *testing.T, rpm string) rpmScripts {
	q := func(tag string) string {
		s := rpmq(t, rpm, "--qf", "%{"+tag+"}")
		if s == "(none)" {
			return ""
		}
		return s
	}
	return rpmScripts{pre: q("PREIN"), post: q("POSTIN"), preun: q("PREUN"), postun: q("POSTUN"), posttrans: q("POSTTRANS")}
}

type debScripts struct{ preinst, postinst, prerm, postrm string }

func extractDeb(t *testing.T, deb string) debScripts {
	return debScripts{preinst: control(t, deb, "preinst"), postinst: control(t, deb, "postinst"), prerm: control(t, deb, "prerm"), postrm: control(t, deb, "postrm")}
}

func dkmsRPMs(t *testing.T) (v1 string, s1 rpmScripts, v2 string, s2 rpmScripts) {
	v1 = repoVersion(t)
	v2 = nextPatch(t, v1)
	a1 := build(t, buildOpts{})
	a2 := build(t, buildOpts{Version: v2})
	return v1, extractRPM(t, find(t, a1, "kecho-dkms", "rpm", "all")), v2, extractRPM(t, find(t, a2, "kecho-dkms", "rpm", "all"))
}

func TestScriptsRPMDKMS(t *testing.T) {
	requireTools(t, howScripts, "rpm", "dpkg-deb")
	v1, s1, v2, s2 := dkmsRPMs(t)
	installs := func(v string) []string {
		return []string{
			"dkms install -m kecho -v " + v + " -k 6.1.0-9-amd64", // the running kernel first
			"dkms install -m kecho -v " + v + " -k 6.1.0-10-amd64",
		}
	}
	// On upgrade and downgrade the old kecho.ko is still installed when the
	// new %post runs: --force, or DKMS keeps the old file.
	forced := func(v string) []string {
		return []string{
			"dkms install --force -m kecho -v " + v + " -k 6.1.0-9-amd64",
			"dkms install --force -m kecho -v " + v + " -k 6.1.0-10-amd64",
		}
	}
	e := newScriptEnv(t, false)
	e.source(v1)
	e.source(v2)

	// rpm -i: %post 1, %posttrans.
	out := e.run(s1.post, "1")
	out += e.run(s1.posttrans)
	e.expect("install", append([]string{"dkms add -m kecho -v " + v1}, installs(v1)...)...)
	e.expectState("install", "added-"+v1, "inst-"+v1+"-6.1.0-10-amd64", "inst-"+v1+"-6.1.0-9-amd64")
	for _, want := range []string{
		"6.1.0-8-amd64: skipped: no kernel headers",
		"4.19.0-1-amd64: skipped: outside the supported range",
		"6.0.0-1-amd64: skipped: no kernel image installed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}

	// rpm -U to v2: new %post 2, old %preun 1, old %postun 1, new %posttrans.
	e.run(s2.post, "2")
	e.run(s1.preun, "1")
	e.run(s1.postun, "1")
	e.run(s2.posttrans)
	e.expect("upgrade", append(append([]string{"dkms add -m kecho -v " + v2}, forced(v2)...), "dkms remove -m kecho -v "+v1+" --all")...)
	e.expectState("upgrade", "added-"+v2, "inst-"+v2+"-6.1.0-10-amd64", "inst-"+v2+"-6.1.0-9-amd64")

	// rpm -U --replacepkgs (reinstall v2): the old %preun removes what the
	// new %post found in place; %posttrans puts it back.
	e.run(s2.post, "2")
	e.run(s2.preun, "1")
	e.run(s2.postun, "1")
	e.run(s2.posttrans)
	e.expect("reinstall", append([]string{"dkms remove -m kecho -v " + v2 + " --all", "dkms add -m kecho -v " + v2}, installs(v2)...)...)
	e.expectState("reinstall", "added-"+v2, "inst-"+v2+"-6.1.0-10-amd64", "inst-"+v2+"-6.1.0-9-amd64")

	// rpm -U --oldpackage (downgrade to v1).
	e.run(s1.post, "2")
	e.run(s2.preun, "1")
	e.run(s2.postun, "1")
	e.run(s1.posttrans)
	e.expect("downgrade", append(append([]string{"dkms add -m kecho -v " + v1}, forced(v1)...), "dkms remove -m kecho -v "+v2+" --all")...)
	e.expectState("downgrade", "added-"+v1, "inst-"+v1+"-6.1.0-10-amd64", "inst-"+v1+"-6.1.0-9-amd64")

	// rpm -e: %preun 0, %postun 0 (only the own version, never others).
	if err := os.WriteFile(filepath.Join(e.state, "added-0.0.9"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.run(s1.preun, "0")
	e.run(s1.postun, "0")
	e.expect("erase", "dkms remove -m kecho -v "+v1+" --all")
	e.expectState("erase", "added-0.0.9")
}

func TestScriptsRPMDKMSBuildFailure(t *testing.T) {
	requireTools(t, howScripts, "rpm", "dpkg-deb")
	v1, s1, _, _ := dkmsRPMs(t)
	e := newScriptEnv(t, true)
	e.source(v1)
	os.WriteFile(filepath.Join(e.state, "fail-6.1.0-10-amd64"), nil, 0o644)
	os.WriteFile(filepath.Join(e.state, "enabled"), nil, 0o644) // kechod is enabled
	out := e.run(s1.post, "1")
	if !strings.Contains(out, "6.1.0-10-amd64: BUILD FAILED") || !strings.Contains(out, "build log: ") {
		t.Errorf("a failed build must be named with its log:\n%s", out)
	}
	// The module was built for the running kernel: kechod (enabled) gets
	// its start now that the module exists.
	e.expect("install with a failed build",
		"dkms add -m kecho -v "+v1,
		"dkms install -m kecho -v "+v1+" -k 6.1.0-9-amd64",
		"dkms install -m kecho -v "+v1+" -k 6.1.0-10-amd64",
		"systemctl start kechod.service")
	e.expectState("install with a failed build", "added-"+v1, "inst-"+v1+"-6.1.0-9-amd64")
}

func TestScriptsRPMKechod(t *testing.T) {
	requireTools(t, howScripts, "rpm", "dpkg-deb")
	v1 := repoVersion(t)
	s1 := extractRPM(t, find(t, build(t, buildOpts{}), "kechod", "rpm", "amd64"))
	s2 := extractRPM(t, find(t, build(t, buildOpts{Version: nextPatch(t, v1)}), "kechod", "rpm", "amd64"))

	// Without a running systemd (chroot, image build): only enable.
	e := newScriptEnv(t, false)
	e.run(s1.pre, "1")
	e.run(s1.post, "1")
	e.expect("install without systemd", "systemctl --no-reload enable kechod.service")
	e.run(s1.preun, "0")
	e.run(s1.postun, "0")
	e.expect("erase without systemd", "systemctl --no-reload disable kechod.service")

	e = newScriptEnv(t, true)
	e.run(s1.post, "1")
	e.expect("install", "systemctl --no-reload enable kechod.service", "systemctl daemon-reload", "systemctl start kechod.service")
	// Upgrade: new %post 2, then the old %preun 1 and %postun 1.
	e.run(s2.post, "2")
	e.run(s1.preun, "1")
	e.run(s1.postun, "1")
	e.expect("upgrade", "systemctl daemon-reload", "systemctl daemon-reload", "systemctl try-restart kechod.service")
	e.run(s2.preun, "0")
	e.run(s2.postun, "0")
	e.expect("erase", "systemctl stop kechod.service", "systemctl --no-reload disable kechod.service", "systemctl daemon-reload")

	// A service that fails to start does not fail the transaction.
	e = newScriptEnv(t, true)
	os.WriteFile(filepath.Join(e.state, "fail-start"), nil, 0o644)
	if out := e.run(s1.post, "1"); !strings.Contains(out, "failed") {
		t.Errorf("a failed start must be reported:\n%s", out)
	}
}

func TestScriptsDebKechod(t *testing.T) {
	requireTools(t, howScripts, "dpkg-deb")
	v1 := repoVersion(t)
	v2 := nextPatch(t, v1)
	d1 := extractDeb(t, find(t, build(t, buildOpts{}), "kechod", "deb", "amd64"))
	d2 := extractDeb(t, find(t, build(t, buildOpts{Version: v2}), "kechod", "deb", "amd64"))
	enable := []string{"deb-systemd-helper unmask kechod.service", "deb-systemd-helper --quiet was-enabled kechod.service", "deb-systemd-helper enable kechod.service"}

	// Without a running systemd (chroot, image build): enable only.
	e := newScriptEnv(t, false)
	e.run(d1.preinst, "install")
	e.run(d1.postinst, "configure", "")
	e.expect("install without systemd", enable...)
	e.run(d1.prerm, "remove")
	e.run(d1.postrm, "remove")
	e.run(d1.postrm, "purge")
	e.expect("remove and purge without systemd", "deb-systemd-helper purge kechod.service", "deb-systemd-helper unmask kechod.service")

	// dpkg -i: preinst install, postinst configure "".
	e = newScriptEnv(t, true)
	e.run(d1.preinst, "install")
	e.run(d1.postinst, "configure", "")
	e.expect("install", append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke start kechod.service")...)
	// Upgrade: old prerm upgrade, new preinst upgrade, old postrm upgrade,
	// new postinst configure <old>. The daemon keeps running until the
	// new binary is in place, then restarts only if it was running.
	e.run(d1.prerm, "upgrade", v2)
	e.run(d2.preinst, "upgrade", v1)
	e.run(d1.postrm, "upgrade", v2)
	e.run(d2.postinst, "configure", v1)
	e.expect("upgrade", append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart kechod.service")...)
	// An administrator's `systemctl disable` survives the upgrade.
	os.WriteFile(filepath.Join(e.state, "dsh-disabled"), nil, 0o644)
	e.run(d2.prerm, "upgrade", v2)
	e.run(d2.preinst, "upgrade", v2)
	e.run(d2.postrm, "upgrade", v2)
	e.run(d2.postinst, "configure", v2)
	e.expect("upgrade of a disabled unit", "deb-systemd-helper unmask kechod.service", "deb-systemd-helper --quiet was-enabled kechod.service",
		"deb-systemd-helper update-state kechod.service", "systemctl --system daemon-reload", "deb-systemd-invoke try-restart kechod.service")
	os.Remove(filepath.Join(e.state, "dsh-disabled"))
	// apt remove: stops it; the unit stays enabled (conffile-like state).
	e.run(d2.prerm, "remove")
	e.run(d2.postrm, "remove")
	e.expect("remove", "deb-systemd-invoke stop kechod.service", "systemctl --system daemon-reload")
	// Reinstalled from the config-files state: preinst install <old>,
	// postinst configure <old>: started again, not merely try-restarted.
	e.run(d2.preinst, "install", v2)
	e.run(d2.postinst, "configure", v2)
	e.expect("reinstall after remove", append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke start kechod.service")...)
	// The next upgrade is an upgrade again (the mark is gone).
	e.run(d2.prerm, "upgrade", v2)
	e.run(d2.preinst, "upgrade", v2)
	e.run(d2.postinst, "configure", v2)
	e.expect("upgrade after reinstall", append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart kechod.service")...)
	// A failed upgrade is rolled back: old postinst abort-upgrade.
	// Its prerm did not stop the daemon, so it is only restarted if running.
	e.run(d1.postinst, "abort-upgrade", v2)
	e.expect("abort-upgrade", append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart kechod.service")...)
	// Purge: stop, then disable.
	e.run(d2.prerm, "remove")
	e.run(d2.postrm, "remove")
	e.run(d2.postrm, "purge")
	e.expect("remove and purge", "deb-systemd-invoke stop kechod.service", "systemctl --system daemon-reload",
		"deb-systemd-helper purge kechod.service", "deb-systemd-helper unmask kechod.service", "systemctl --system daemon-reload")

	e = newScriptEnv(t, true)
	os.WriteFile(filepath.Join(e.state, "fail-start"), nil, 0o644)
	if out := e.run(d1.postinst, "configure", ""); !strings.Contains(out, "failed") {
		t.Errorf("a failed start must be reported:\n%s", out)
	}
}

func TestScriptsDebDKMS(t *testing.T) {
	requireTools(t, howScripts, "dpkg-deb", "rpm")
	v1 := repoVersion(t)
	v2 := nextPatch(t, v1)
	d1 := extractDeb(t, find(t, build(t, buildOpts{}), "kecho-dkms", "deb", "all"))
	d2 := extractDeb(t, find(t, build(t, buildOpts{Version: v2}), "kecho-dkms", "deb", "all"))
	installs := func(v string) []string {
		return []string{"dkms install -m kecho -v " + v + " -k 6.1.0-9-amd64", "dkms install -m kecho -v " + v + " -k 6.1.0-10-amd64"}
	}
	e := newScriptEnv(t, false)
	e.source(v1)
	e.source(v2)
	e.run(d1.postinst, "configure", "")
	e.expect("install", append([]string{"dkms add -m kecho -v " + v1}, installs(v1)...)...)
	// Upgrade.
	e.run(d1.prerm, "upgrade", v2)
	e.run(d2.postinst, "configure", v1)
	e.expect("upgrade", append([]string{"dkms remove -m kecho -v " + v1 + " --all", "dkms add -m kecho -v " + v2}, installs(v2)...)...)
	e.expectState("upgrade", "added-"+v2, "inst-"+v2+"-6.1.0-10-amd64", "inst-"+v2+"-6.1.0-9-amd64")
	// Reinstall.
	e.run(d2.prerm, "upgrade", v2)
	e.run(d2.postinst, "configure", v2)
	e.expectState("reinstall", "added-"+v2, "inst-"+v2+"-6.1.0-10-amd64", "inst-"+v2+"-6.1.0-9-amd64")
	e.calls()
	// A failed upgrade rolls back: old postinst abort-upgrade re-registers.
	e.run(d2.prerm, "upgrade", v1)
	e.run(d2.postinst, "abort-upgrade", v1)
	e.expectState("abort-upgrade", "added-"+v2, "inst-"+v2+"-6.1.0-10-amd64", "inst-"+v2+"-6.1.0-9-amd64")
	e.calls()
	// The old prerm failed during an upgrade: dpkg runs the new prerm
	// with failed-upgrade <old-version>, which unregisters the old one.
	e.run(d1.postinst, "configure", "")
	e.calls()
	e.run(d2.prerm, "failed-upgrade", v1)
	e.expect("failed-upgrade", "dkms remove -m kecho -v "+v1+" --all")
	e.expectState("failed-upgrade", "added-"+v2, "inst-"+v2+"-6.1.0-10-amd64", "inst-"+v2+"-6.1.0-9-amd64")
	// Remove.
	e.run(d2.prerm, "remove")
	e.expect("remove", "dkms remove -m kecho -v "+v2+" --all")
	e.expectState("remove")
	// Removing again (e.g. after a failed remove) is a no-op.
	e.run(d2.prerm, "remove")
	e.expect("remove again")
}
