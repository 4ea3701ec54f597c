package system

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kecho-dev/kecho/test/vm"
)

const howPackages = "go test ./test/system -run 'Test(Packages|Deb|RPM|Lintian|Unit)'"

// `make packages`: six files, named as the distributions expect.
func TestPackagesAllSix(t *testing.T) {
	arts := build(t, buildOpts{})
	v := repoVersion(t)
	want := []string{
		"kecho-dkms_" + v + "_all.deb",
		"kecho-dkms-" + v + "-1.noarch.rpm",
		"kechod_" + v + "_amd64.deb",
		"kechod-" + v + "-1.x86_64.rpm",
		"kechod_" + v + "_arm64.deb",
		"kechod-" + v + "-1.aarch64.rpm",
	}
	var got []string
	for _, a := range arts {
		got = append(got, filepath.Base(a.Path))
	}
	if len(got) != 6 {
		t.Fatalf("got %d packages %v, want 6", len(got), got)
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, " "), w) {
			t.Errorf("missing %s among %v", w, got)
		}
	}
	// The binaries are built for their package's architecture.
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		requireTools(t, howPackages, "dpkg-deb")
		dir := t.TempDir()
		sh(t, "dpkg-deb", "-x", find(t, arts, "kechod", "deb", arch), dir)
		f, err := elf.Open(filepath.Join(dir, "usr/bin/kechod"))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s package: kechod is %v, want %v", arch, f.Machine, machine)
		}
		if f.Section(".interp") != nil {
			t.Errorf("%s kechod is dynamically linked (CGO_ENABLED=0 expected)", arch)
		}
		f.Close()
	}
}

func field(t *testing.T, deb, name string) string {
	return strings.TrimSpace(sh(t, "dpkg-deb", "-f", deb, name))
}

// listing maps each path in a .deb to "mode owner/group".
func listing(t *testing.T, deb string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(sh(t, "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if p == "" {
			p = "/"
		}
		m[p] = f[0] + " " + f[1]
	}
	return m
}

func control(t *testing.T, deb, member string) string {
	dir := t.TempDir()
	sh(t, "dpkg-deb", "-e", deb, dir)
	b, err := os.ReadFile(filepath.Join(dir, member))
	if err != nil {
		return ""
	}
	return string(b)
}

func TestDebKechod(t *testing.T) {
	requireTools(t, howPackages, "dpkg-deb", "tar")
	arts := build(t, buildOpts{})
	deb := find(t, arts, "kechod", "deb", "amd64")
	v := repoVersion(t)
	for name, want := range map[string]string{
		"Package": "kechod", "Version": v, "Architecture": "amd64", "Section": "net",
		"Priority": "optional", "Homepage": "https://github.com/kecho-dev/kecho",
	} {
		if got := field(t, deb, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if d := field(t, deb, "Depends"); !regexp.MustCompile(`\bkmod\b`).MatchString(d) || !strings.Contains(d, "procps") {
		t.Errorf("Depends: %q, want kmod and procps (/bin/kill for ExecReload)", d)
	}
	if r := field(t, deb, "Recommends"); !strings.Contains(r, "kecho-dkms") {
		t.Errorf("Recommends: %q, want kecho-dkms", r)
	}
	if m := field(t, deb, "Maintainer"); !strings.Contains(m, "@") {
		t.Errorf("Maintainer: %q", m)
	}
	if d := field(t, deb, "Description"); !strings.Contains(d, "kecho") || !strings.Contains(d, "\n ") {
		t.Errorf("Description needs a synopsis and a long description: %q", d)
	}

	ls := listing(t, deb)
	for path, mode := range map[string]string{
		"/usr/bin/kechod":                                  "-rwxr-xr-x root/root",
		"/lib/systemd/system/kechod.service":               "-rw-r--r-- root/root",
		"/etc/kechod/kechod.yaml":                          "-rw-r--r-- root/root",
		"/etc/kechod/conf.d":                               "drwxr-xr-x root/root",
		"/usr/share/man/man8/kechod.8.gz":                  "-rw-r--r-- root/root",
		"/usr/share/man/man5/kechod.yaml.5.gz":             "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/kechod":    "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_kechod":        "-rw-r--r-- root/root",
		"/usr/share/fish/vendor_completions.d/kechod.fish": "-rw-r--r-- root/root",
		"/usr/share/doc/kechod/copyright":                  "-rw-r--r-- root/root",
		"/usr/share/doc/kechod/changelog.gz":               "-rw-r--r-- root/root",
	} {
		if got, ok := ls[path]; !ok {
			t.Errorf("%s missing", path)
		} else if got != mode {
			t.Errorf("%s: %s, want %s", path, got, mode)
		}
	}
	for _, sub := range []string{"run", "ping", "check", "status", "config", "version"} {
		if _, ok := ls["/usr/share/man/man8/kechod-"+sub+".8.gz"]; !ok {
			t.Errorf("no man page for kechod %s", sub)
		}
	}
	if c := control(t, deb, "conffiles"); strings.TrimSpace(c) != "/etc/kechod/kechod.yaml" {
		t.Errorf("conffiles: %q, want exactly /etc/kechod/kechod.yaml", c)
	}
	// Maintainer scripts: present, executable, and doing what they must.
	info := sh(t, "dpkg-deb", "-I", deb)
	for _, member := range []string{"conffiles", "control", "md5sums"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+` + member + `\s*$`).MatchString(info) {
			t.Errorf("dpkg-deb -I: no %s member:\n%s", member, info)
		}
	}
	for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+` + script + `\s+#!/bin/sh$`).MatchString(info) {
			t.Errorf("dpkg-deb -I: %s missing, not executable or not #!/bin/sh:\n%s", script, info)
		}
	}
	ctrl := sh(t, "sh", "-c", "dpkg-deb --ctrl-tarfile '"+deb+"' | tar tvf -")
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`-rwxr-xr-x .* \./` + s + `\n`).MatchString(ctrl + "\n") {
			t.Errorf("control archive: %s missing or not 0755:\n%s", s, ctrl)
		}
	}
	postinst := control(t, deb, "postinst")
	for _, want := range []string{"deb-systemd-helper enable", "daemon-reload", "try-restart", "/run/systemd/system"} {
		if !strings.Contains(postinst, want) {
			t.Errorf("postinst lacks %q", want)
		}
	}
	if !strings.Contains(control(t, deb, "prerm"), "deb-systemd-invoke stop") {
		t.Error("prerm does not stop the service")
	}
	if !strings.Contains(control(t, deb, "postrm"), "deb-systemd-helper purge") {
		t.Error("postrm does not disable on purge")
	}
	// The shipped unit and config are the repository's.
	dir := t.TempDir()
	sh(t, "dpkg-deb", "-x", deb, dir)
	for inPkg, inRepo := range map[string]string{
		"lib/systemd/system/kechod.service": "systemd/kechod.service",
		"etc/kechod/kechod.yaml":            "configs/kechod.yaml",
	} {
		a, _ := os.ReadFile(filepath.Join(dir, inPkg))
		b, _ := os.ReadFile(filepath.Join(repoRoot(t), inRepo))
		if !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s differs from %s", inPkg, inRepo)
		}
	}
	if daemonReady(t) {
		out, err := exec.Command(filepath.Join(dir, "usr/bin/kechod"), "version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), v) {
			t.Errorf("kechod version: %v\n%s\nwant %s in it", err, out, v)
		}
	}
}

func TestDebDKMS(t *testing.T) {
	requireTools(t, howPackages, "dpkg-deb", "tar")
	arts := build(t, buildOpts{})
	deb := find(t, arts, "kecho-dkms", "deb", "all")
	v := repoVersion(t)
	for name, want := range map[string]string{"Package": "kecho-dkms", "Version": v, "Architecture": "all", "Section": "kernel"} {
		if got := field(t, deb, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if d := field(t, deb, "Depends"); !regexp.MustCompile(`\bdkms\b`).MatchString(d) {
		t.Errorf("Depends: %q, want dkms", d)
	}
	if r := field(t, deb, "Recommends"); !strings.Contains(r, "linux-headers-amd64") {
		t.Errorf("Recommends: %q, want a headers hint", r)
	}
	ls := listing(t, deb)
	src := "/usr/src/kecho-" + v
	if ls[src+"/dkms.conf"] != "-rw-r--r-- root/root" {
		t.Errorf("%s/dkms.conf: %q", src, ls[src+"/dkms.conf"])
	}
	nsrc := 0
	for p := range ls {
		if strings.HasPrefix(p, "/usr/src/") && !strings.HasPrefix(p, src) {
			t.Errorf("%s outside %s", p, src)
		}
		if regexp.MustCompile(`\.(o|ko|mod|mod\.c|cmd)$|Module\.symvers|modules\.order`).MatchString(p) {
			t.Errorf("build product shipped: %s", p)
		}
		if strings.HasPrefix(p, src+"/") && strings.HasSuffix(p, ".c") {
			nsrc++
		}
	}
	if nsrc == 0 {
		t.Errorf("no C sources under %s", src)
	}
	dir := t.TempDir()
	sh(t, "dpkg-deb", "-x", deb, dir)
	conf, err := os.ReadFile(filepath.Join(dir, src, "dkms.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^PACKAGE_VERSION="` + regexp.QuoteMeta(v) + `"$`).Match(conf) {
		t.Errorf("dkms.conf PACKAGE_VERSION is not %s:\n%s", v, conf)
	}
	if !regexp.MustCompile(`(?m)^PACKAGE_NAME="?kecho"?$`).Match(conf) {
		t.Errorf("dkms.conf PACKAGE_NAME is not kecho")
	}
	postinst := control(t, deb, "postinst")
	prerm := control(t, deb, "prerm")
	if !strings.Contains(postinst, "KECHO_VERSION='"+v+"'") || !strings.Contains(prerm, "KECHO_VERSION='"+v+"'") {
		t.Error("maintainer scripts do not carry the package version")
	}
	if !strings.Contains(prerm, `kecho_remove_version "$KECHO_VERSION"`) || !strings.Contains(prerm, `dkms remove -m "$KECHO_MODULE" -v "$ver" --all`) {
		t.Error("prerm does not remove exactly its own version")
	}
}

func rpmq(t *testing.T, rpm string, args ...string) string {
	return sh(t, "rpm", append([]string{"-qp", "--nosignature"}, append(args, rpm)...)...)
}

func TestRPMKechod(t *testing.T) {
	requireTools(t, howPackages, "rpm")
	arts := build(t, buildOpts{})
	v := repoVersion(t)
	for arch, rpmArch := range map[string]string{"amd64": "x86_64", "arm64": "aarch64"} {
		rpm := find(t, arts, "kechod", "rpm", arch)
		if got := strings.TrimSpace(rpmq(t, rpm, "--qf", "%{NAME} %{VERSION} %{ARCH} %{LICENSE} %{GROUP}")); got != "kechod "+v+" "+rpmArch+" GPL-2.0-only System Environment/Daemons" {
			t.Errorf("header: %q", got)
		}
		req := rpmq(t, rpm, "--requires")
		if !regexp.MustCompile(`(?m)^kmod$`).MatchString(req) {
			t.Errorf("requires: %s", req)
		}
		if rec := rpmq(t, rpm, "--recommends"); !strings.Contains(rec, "kecho-dkms") {
			t.Errorf("recommends: %q", rec)
		}
		if prov := rpmq(t, rpm, "--provides"); !strings.Contains(prov, "kechod = "+v+"-1\n") {
			t.Errorf("provides: %q, want kechod = %s-1", prov, v)
		}
		if cf := strings.TrimSpace(rpmq(t, rpm, "--configfiles")); cf != "/etc/kechod/kechod.yaml" {
			t.Errorf("configfiles: %q", cf)
		}
		flags := rpmq(t, rpm, "--qf", `[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]`)
		for _, want := range []string{
			"/etc/kechod/kechod.yaml cn -rw-r--r-- root:root",
			"/etc/kechod/conf.d  drwxr-xr-x root:root",
			"/usr/bin/kechod  -rwxr-xr-x root:root",
			"/usr/lib/systemd/system/kechod.service  -rw-r--r-- root:root",
			"/usr/share/zsh/site-functions/_kechod  -rw-r--r-- root:root",
			"/usr/share/bash-completion/completions/kechod  -rw-r--r-- root:root",
			"/usr/share/fish/vendor_completions.d/kechod.fish  -rw-r--r-- root:root",
			"/usr/share/man/man8/kechod.8.gz  -rw-r--r-- root:root",
			"/usr/share/man/man5/kechod.yaml.5.gz  -rw-r--r-- root:root",
		} {
			if !strings.Contains(flags, want+"\n") {
				t.Errorf("%s: no line %q in\n%s", arch, want, flags)
			}
		}
		if strings.Contains(flags, "/lib/systemd/system/kechod.service ") && !strings.Contains(flags, "/usr/lib/systemd") {
			t.Error("rpm unit must be in /usr/lib/systemd/system")
		}
		dump := rpmq(t, rpm, "--dump")
		if !strings.Contains(dump, "/etc/kechod/kechod.yaml ") {
			t.Errorf("--dump lacks the config file:\n%s", dump)
		}
		scripts := rpmq(t, rpm, "--scripts")
		for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "try-restart", "--no-reload enable", "--no-reload disable"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("scripts lack %q", want)
			}
		}
	}
}

func TestRPMDKMS(t *testing.T) {
	requireTools(t, howPackages, "rpm")
	arts := build(t, buildOpts{})
	rpm := find(t, arts, "kecho-dkms", "rpm", "all")
	v := repoVersion(t)
	if got := strings.TrimSpace(rpmq(t, rpm, "--qf", "%{NAME} %{VERSION} %{ARCH}")); got != "kecho-dkms "+v+" noarch" {
		t.Errorf("header: %q", got)
	}
	if req := rpmq(t, rpm, "--requires"); !regexp.MustCompile(`(?m)^dkms$`).MatchString(req) {
		t.Errorf("requires: %s", req)
	}
	if prov := rpmq(t, rpm, "--provides"); !strings.Contains(prov, "kecho-dkms = "+v+"-1\n") {
		t.Errorf("provides: %q", prov)
	}
	files := rpmq(t, rpm, "--list")
	if !strings.Contains(files, "/usr/src/kecho-"+v+"/dkms.conf\n") {
		t.Errorf("no dkms.conf in\n%s", files)
	}
	scripts := rpmq(t, rpm, "--scripts")
	for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "posttrans scriptlet", "KECHO_VERSION='" + v + "'"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("scripts lack %q", want)
		}
	}
}

// lintian reports no error and no warning (overrides are shipped, each
// with its justification).
func TestLintian(t *testing.T) {
	requireTools(t, howPackages, "lintian")
	arts := build(t, buildOpts{})
	var debs []string
	for _, a := range arts {
		if a.Format == "deb" {
			debs = append(debs, a.Path)
		}
	}
	cmd := exec.Command("lintian", append([]string{"--fail-on", "error,warning", "--display-info", "--pedantic", "--allow-root"}, debs...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		} else if l != "" {
			t.Logf("lintian: %s", l)
		}
	}
}

// The unit passes `systemd-analyze verify` and has what DESIGN.md and the
// daemon need.
func TestUnit(t *testing.T) {
	requireTools(t, howPackages, "systemd-analyze")
	root := repoRoot(t)
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "kechod.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify", "NotifyAccess=main", "ExecStart=/usr/bin/kechod run",
		"ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=30s", "Restart=on-failure",
		"RestartPreventExitStatus=78", "RuntimeDirectory=kechod",
		"After=network-online.target systemd-modules-load.service", "Wants=network-online.target",
		"CapabilityBoundingSet=CAP_SYS_MODULE", "WantedBy=multi-user.target",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(unit) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^ProtectKernelModules=`).Match(unit) {
		t.Error("ProtectKernelModules= would forbid loading the module")
	}
	// verify checks that ExecStart= exists: point it at a stand-in.
	dir := t.TempDir()
	stub := filepath.Join(dir, "kechod")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "kechod.service")
	if err := os.WriteFile(p, bytes.ReplaceAll(unit, []byte("/usr/bin/kechod"), []byte(stub)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/bin/kill"); err != nil {
		// verify checks ExecReload='s /bin/kill too.
		msg := "/bin/kill missing on this host: install procps (`make deps`), then " + howPackages
		vm.Unmet(t, msg)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	sec, err := exec.Command("systemd-analyze", "security", "--offline=yes", p).CombinedOutput()
	if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(sec); m != nil {
		t.Logf("systemd-analyze security --offline=yes: exposure %s", m[1])
	} else {
		t.Logf("systemd-analyze security: %v\n%s", err, sec)
	}
}
