package system

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/system/sysimage"
)

// Install lifecycles in a Debian 12 root (debootstrapped once, cached, used
// through a throw-away overlay) that has a Debian kernel and its headers:
// real apt, dpkg, rpm and DKMS, real module builds. systemd does not run in
// a chroot, so this is also the test of the scripts' "no systemd" path.

const howLifecycle = "sudo go test ./test/system -run TestLifecycle -v (debootstrap: 1-3 minutes on the first run, cached in ${KECHO_CACHE_DIR:-~/.cache/kecho})"

type chroot struct {
	t *testing.T
	*sysimage.Root
	kernel string // the root's kernel release
}

func newChroot(t *testing.T) *chroot {
	t.Helper()
	require(t, howLifecycle, "debootstrap", "chroot", "mount")
	ctx := context.Background()
	base, err := sysimage.EnsureBase(ctx, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	r, err := sysimage.NewRoot(ctx, base, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("cleaning up the root: %v", err)
		}
	})
	if err := r.MountAPI(ctx); err != nil {
		t.Fatal(err)
	}
	k := r.Kernels()
	if len(k) != 1 {
		t.Fatalf("want one kernel in the root, got %v", k)
	}
	return &chroot{t: t, Root: r, kernel: k[0]}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// run runs a command in the root; it must succeed.
func (c *chroot) run(name string, args ...string) string {
	c.t.Helper()
	out, err := c.Chroot(context.Background(), nil, name, args...)
	if err != nil {
		c.t.Fatalf("chroot %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// apt runs apt-get in the root; it must succeed. Returns its output.
func (c *chroot) apt(args ...string) string {
	c.t.Helper()
	start := time.Now()
	out, err := c.Apt(context.Background(), args...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("apt-get %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Second))
	return string(out)
}

func (c *chroot) install(extra []string, debs ...string) string {
	c.t.Helper()
	start := time.Now()
	out, err := c.InstallDebs(context.Background(), extra, debs...)
	if err != nil {
		c.t.Fatal(err)
	}
	var names []string
	for _, d := range debs {
		names = append(names, filepath.Base(d))
	}
	c.t.Logf("apt-get install %s %s: %s", strings.Join(extra, " "), strings.Join(names, " "), time.Since(start).Round(time.Second))
	return string(out)
}

// dkmsStatus returns the lines of `dkms status` for kecho.
func (c *chroot) dkmsStatus() []string {
	c.t.Helper()
	var out []string
	for _, l := range strings.Split(c.run("dkms", "status", "kecho"), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// modules lists every kecho module file under /lib/modules.
func (c *chroot) modules() []string {
	var out []string
	filepath.Walk(c.Path("/lib/modules"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && regexp.MustCompile(`^kecho\.ko(\.[gx]z|\.zst)?$`).MatchString(fi.Name()) {
			rel, _ := filepath.Rel(c.Dir, p)
			out = append(out, "/"+rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// expectInstalled checks that exactly kecho/v is in DKMS, installed for the
// root's kernel, and that the one kecho.ko there is v's build.
func (c *chroot) expectInstalled(what, v string) {
	c.t.Helper()
	want := "kecho/" + v + ", " + c.kernel + ", x86_64: installed"
	if got := c.dkmsStatus(); len(got) != 1 || got[0] != want {
		c.t.Errorf("%s: dkms status %q, want exactly %q", what, got, want)
	}
	mods := c.modules()
	wantMod := "/lib/modules/" + c.kernel + "/updates/dkms/kecho.ko"
	if len(mods) != 1 || mods[0] != wantMod {
		c.t.Errorf("%s: kecho modules %q, want exactly %s", what, mods, wantMod)
		return
	}
	if got := strings.TrimSpace(c.run("modinfo", "-F", "version", mods[0])); got != v {
		c.t.Errorf("%s: %s has MODULE_VERSION %q, want %q", what, mods[0], got, v)
	}
	// depmod ran: modprobe can find it by name.
	if dep, err := os.ReadFile(c.Path("/lib/modules/" + c.kernel + "/modules.dep")); err != nil || !strings.Contains(string(dep), "updates/dkms/kecho.ko") {
		c.t.Errorf("%s: modules.dep does not list kecho (depmod not run?)", what)
	}
}

// expectGone checks that no trace of kecho is left in DKMS or /lib/modules.
func (c *chroot) expectGone(what string) {
	c.t.Helper()
	if got := c.dkmsStatus(); len(got) != 0 {
		c.t.Errorf("%s: dkms status still has %q", what, got)
	}
	if m := c.modules(); len(m) != 0 {
		c.t.Errorf("%s: kecho modules left: %q", what, m)
	}
	if _, err := os.Stat(c.Path("/var/lib/dkms/kecho")); err == nil {
		ents, _ := os.ReadDir(c.Path("/var/lib/dkms/kecho"))
		c.t.Errorf("%s: /var/lib/dkms/kecho still exists (%d entries)", what, len(ents))
	}
	if dep, err := os.ReadFile(c.Path("/lib/modules/" + c.kernel + "/modules.dep")); err == nil && strings.Contains(string(dep), "kecho.ko") {
		c.t.Errorf("%s: modules.dep still lists kecho", what)
	}
}

func (c *chroot) exists(p string) bool {
	_, err := os.Lstat(c.Path(p))
	return err == nil
}

func (c *chroot) read(p string) string {
	c.t.Helper()
	b, err := os.ReadFile(c.Path(p))
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

const wantsLink = "/etc/systemd/system/multi-user.target.wants/kechod.service"

// noSystemdCalls checks that the scripts did not try to talk to a systemd
// that is not running.
func noSystemdCalls(t *testing.T, what, out string) {
	t.Helper()
	for _, bad := range []string{"System has not been booted with systemd", "Failed to connect to bus", "did not start", "failed; the package is installed"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s: output has %q although systemd is not running:\n%s", what, bad, out)
		}
	}
}

// The Debian flow: apt install both .debs, edit the config, upgrade,
// reinstall, downgrade, remove, purge.
func TestLifecycleDeb(t *testing.T) {
	requireTools(t, howLifecycle, "dpkg-deb")
	v1 := repoVersion(t)
	v2 := nextPatch(t, v1)
	a1 := build(t, buildOpts{})
	a2 := build(t, buildOpts{Version: v2})
	c := newChroot(t)
	set1 := []string{find(t, a1, "kecho-dkms", "deb", "all"), find(t, a1, "kechod", "deb", "amd64")}
	set2 := []string{find(t, a2, "kecho-dkms", "deb", "all"), find(t, a2, "kechod", "deb", "amd64")}

	// Install: DKMS builds and installs kecho for the root's kernel.
	out := c.install(nil, set1...)
	if !strings.Contains(out, "summary for kecho/"+v1+": installed for: "+c.kernel+";") {
		t.Errorf("install: no build summary naming %s:\n%s", c.kernel, out)
	}
	noSystemdCalls(t, "install", out)
	c.expectInstalled("install", v1)
	if !c.exists(wantsLink) {
		t.Errorf("install: kechod.service not enabled (%s missing)", wantsLink)
	}
	if got := c.run("dpkg-query", "-W", "-f", "${Status}\n", "kecho-dkms", "kechod"); strings.Count(got, "install ok installed") != 2 {
		t.Errorf("install: package states %q", got)
	}

	// The operator edits the config and drops a conf.d file.
	edited := strings.Replace(c.read("/etc/kechod/kechod.yaml"), "interval: 5s", "interval: 2s", 1)
	if !strings.Contains(edited, "interval: 2s") {
		t.Fatal("configs/kechod.yaml has no `interval: 5s` to edit")
	}
	edited = "# edited by the operator\n" + edited
	if err := c.WriteFile("/etc/kechod/kechod.yaml", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile("/etc/kechod/conf.d/50-site.yaml", []byte("log:\n  level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Upgrade: exactly one kecho, the new one; the edited config is kept.
	out = c.install(nil, set2...)
	noSystemdCalls(t, "upgrade", out)
	c.expectInstalled("upgrade", v2)
	if got := c.read("/etc/kechod/kechod.yaml"); got != edited {
		t.Errorf("upgrade replaced the edited /etc/kechod/kechod.yaml")
	}
	if !c.exists("/etc/kechod/conf.d/50-site.yaml") {
		t.Error("upgrade removed /etc/kechod/conf.d/50-site.yaml")
	}
	if !c.exists("/usr/src/kecho-"+v2+"/dkms.conf") || c.exists("/usr/src/kecho-"+v1) {
		t.Errorf("upgrade: /usr/src has the wrong kecho sources: %v", glob(c, "/usr/src/kecho-*"))
	}

	// Reinstall the same version.
	out = c.install([]string{"--reinstall"}, set2...)
	c.expectInstalled("reinstall", v2)
	if got := c.read("/etc/kechod/kechod.yaml"); got != edited {
		t.Errorf("reinstall replaced the edited config")
	}

	// Downgrade.
	out = c.install([]string{"--allow-downgrades"}, set1...)
	noSystemdCalls(t, "downgrade", out)
	c.expectInstalled("downgrade", v1)

	// Remove: module and DKMS entry gone, configuration kept.
	c.apt("remove", "kecho-dkms", "kechod")
	c.expectGone("remove")
	if got := c.read("/etc/kechod/kechod.yaml"); got != edited {
		t.Error("remove did not keep the edited config")
	}
	if c.exists("/usr/bin/kechod") || c.exists("/lib/systemd/system/kechod.service") {
		t.Error("remove left kechod's files")
	}

	// Reinstall from the config-files state keeps the config, then purge.
	c.install(nil, set1...)
	c.expectInstalled("install after remove", v1)
	if got := c.read("/etc/kechod/kechod.yaml"); got != edited {
		t.Error("install after remove replaced the kept config")
	}
	c.apt("purge", "kecho-dkms", "kechod")
	c.expectGone("purge")
	for _, p := range []string{"/etc/kechod", wantsLink, "/var/log/kecho-dkms", "/usr/src/kecho-" + v1} {
		if c.exists(p) {
			t.Errorf("purge left %s", p)
		}
	}
	for _, pkg := range []string{"kecho-dkms", "kechod"} {
		// dpkg-query fails for a package it has forgotten entirely.
		got, _ := c.Chroot(context.Background(), nil, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}", pkg)
		if s := strings.TrimSpace(string(got)); strings.HasPrefix(s, "ii") || strings.HasPrefix(s, "rc") {
			t.Errorf("purge: %s is in state %q", pkg, s)
		}
	}
}

func glob(c *chroot, pattern string) []string {
	m, _ := filepath.Glob(c.Path(pattern))
	for i := range m {
		m[i] = strings.TrimPrefix(m[i], c.Dir)
	}
	return m
}

// A module that does not compile: the installation reports the kernel and
// the build log, leaves kecho only "added" (nothing built, nothing in
// /lib/modules), and removal cleans up.
func TestLifecycleDebBuildFailure(t *testing.T) {
	requireTools(t, howLifecycle, "dpkg-deb")
	broken := t.TempDir()
	stub := filepath.Join(repoRoot(t), "test", "system", "testdata", "dkms-stub")
	ents, err := os.ReadDir(stub)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(stub, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "kecho.c" {
			b = append(b, []byte("\nstatic int kecho_broken(void) { return undeclared_identifier; }\n")...)
		}
		if err := os.WriteFile(filepath.Join(broken, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v := repoVersion(t)
	arts := build(t, buildOpts{DKMSDir: broken, Formats: []string{"deb"}, Packages: []string{"kecho-dkms"}})
	c := newChroot(t)
	out := c.install(nil, find(t, arts, "kecho-dkms", "deb", "all"))
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "kecho-dkms:") || strings.Contains(l, "make.log") {
			t.Logf("apt: %s", l)
		}
	}
	log := "/var/log/kecho-dkms/make-" + c.kernel + ".log"
	if !strings.Contains(out, c.kernel+": BUILD FAILED") || !strings.Contains(out, "build log: "+log) {
		t.Errorf("the failed build is not reported with its kernel and log:\n%s", out)
	}
	if !strings.Contains(out, "failed: "+c.kernel) || !strings.Contains(out, "dkms install -m kecho -v "+v+" -k "+c.kernel) {
		t.Errorf("the summary does not name the failed kernel and how to retry:\n%s", out)
	}
	if b, err := os.ReadFile(c.Path(log)); err != nil || !strings.Contains(string(b), "undeclared_identifier") {
		t.Errorf("%s does not hold the compiler's error: %v\n%s", log, err, b)
	}
	if got := c.dkmsStatus(); len(got) != 1 || got[0] != "kecho/"+v+": added" {
		t.Errorf("after the failed build: dkms status %q, want only %q", got, "kecho/"+v+": added")
	}
	if m := c.modules(); len(m) != 0 {
		t.Errorf("after the failed build: modules %q", m)
	}
	if got := c.run("dpkg-query", "-W", "-f", "${Status}", "kecho-dkms"); got != "install ok installed" {
		t.Errorf("kecho-dkms state %q (the package stays installed so autoinstall can retry)", got)
	}
	c.apt("purge", "kecho-dkms")
	c.expectGone("purge after a failed build")
	if c.exists("/var/log/kecho-dkms") {
		t.Error("purge left /var/log/kecho-dkms")
	}
}

// The rpm flow with rpm's real transaction order (new %post before the
// old %preun/%postun, then %posttrans), real dkms: install, upgrade,
// reinstall, downgrade, erase. The root is Debian with rpm's database
// beside dpkg's; --nodeps because dkms and kmod are dpkg packages there.
func TestLifecycleRPM(t *testing.T) {
	requireTools(t, howLifecycle, "rpm")
	v1 := repoVersion(t)
	v2 := nextPatch(t, v1)
	a1 := build(t, buildOpts{})
	a2 := build(t, buildOpts{Version: v2})
	c := newChroot(t)
	set1 := []string{find(t, a1, "kecho-dkms", "rpm", "all"), find(t, a1, "kechod", "rpm", "amd64")}
	set2 := []string{find(t, a2, "kecho-dkms", "rpm", "all"), find(t, a2, "kechod", "rpm", "amd64")}
	rpm := func(what string, args ...string) string {
		t.Helper()
		start := time.Now()
		out, err := exec.Command("rpm", append([]string{"--root", c.Dir, "--nodeps", "--nosignature"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: rpm %s: %v\n%s", what, strings.Join(args, " "), err, out)
		}
		t.Logf("%s: rpm %s: %s", what, args[0], time.Since(start).Round(time.Second))
		return string(out)
	}
	if out, err := exec.Command("rpm", "--root", c.Dir, "--initdb").CombinedOutput(); err != nil {
		t.Fatalf("rpm --initdb: %v\n%s", err, out)
	}

	out := rpm("install", append([]string{"-i"}, set1...)...)
	noSystemdCalls(t, "rpm -i", out)
	c.expectInstalled("rpm -i", v1)
	if !c.exists(wantsLink) {
		t.Errorf("rpm -i: kechod.service not enabled")
	}
	if !c.exists("/usr/lib/systemd/system/kechod.service") {
		t.Error("rpm -i: no /usr/lib/systemd/system/kechod.service")
	}
	if err := c.WriteFile("/etc/kechod/kechod.yaml", []byte("# edited\nhealth:\n  interval: 2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out = rpm("upgrade", append([]string{"-U"}, set2...)...)
	noSystemdCalls(t, "rpm -U", out)
	c.expectInstalled("rpm -U", v2)
	if got := c.read("/etc/kechod/kechod.yaml"); got != "# edited\nhealth:\n  interval: 2s\n" {
		t.Errorf("rpm -U replaced the edited config (config(noreplace))")
	}
	if !c.exists(wantsLink) {
		t.Errorf("rpm -U: kechod.service no longer enabled")
	}

	rpm("reinstall", append([]string{"-U", "--replacepkgs"}, set2...)...)
	c.expectInstalled("rpm -U --replacepkgs", v2)

	// The old (newer) kecho.ko is still installed when the older %post
	// runs: without care DKMS would keep it and report the old version.
	rpm("downgrade", append([]string{"-U", "--oldpackage"}, set1...)...)
	c.expectInstalled("rpm -U --oldpackage", v1)

	rpm("erase", "-e", "kecho-dkms", "kechod")
	c.expectGone("rpm -e")
	if c.exists(wantsLink) {
		t.Error("rpm -e: kechod.service still enabled")
	}
	if c.exists("/usr/bin/kechod") {
		t.Error("rpm -e left /usr/bin/kechod")
	}
}
