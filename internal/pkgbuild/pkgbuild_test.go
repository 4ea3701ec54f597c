package pkgbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for !exists(filepath.Join(dir, "go.mod")) {
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
	return dir
}

func TestNormalizeVersion(t *testing.T) {
	for in, want := range map[string]string{
		"0.1.0":                "0.1.0",
		"v0.1.0\n":             "0.1.0",
		"v0.1.0-3-gabc1234":    "0.1.0+git3.gabc1234",
		"v0.2.0-rc1":           "0.2.0~rc1",
		"v0.2.0-rc1-2-gdeadbe": "0.2.0~rc1+git2.gdeadbe",
		"0.1.1":                "0.1.1",
	} {
		got, err := NormalizeVersion(in)
		if err != nil || got != want {
			t.Errorf("NormalizeVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "vfoo", "1.0 beta", "1.0/2"} {
		if got, err := NormalizeVersion(bad); err == nil {
			t.Errorf("NormalizeVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// Versions must order the same way for dpkg and for the packages' users:
// a git-describe build sorts after its tag and before the next release.
func TestNormalizedVersionsOrderForDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	order := []string{"v0.2.0-rc1", "v0.2.0", "v0.2.0-3-gabc", "v0.2.1"}
	for i := 0; i+1 < len(order); i++ {
		a, _ := NormalizeVersion(order[i])
		b, _ := NormalizeVersion(order[i+1])
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: want %s < %s", a, b)
		}
	}
}

func TestRewriteDKMSConf(t *testing.T) {
	in := "PACKAGE_NAME=\"kecho\"\nPACKAGE_VERSION=\"0.0.1\"\nAUTOINSTALL=yes\n"
	out, err := RewriteDKMSConf([]byte(in), "1.2.3+git4.gabc")
	if err != nil {
		t.Fatal(err)
	}
	want := "PACKAGE_NAME=\"kecho\"\nPACKAGE_VERSION=\"1.2.3+git4.gabc\"\nAUTOINSTALL=yes\n"
	if string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if _, err := RewriteDKMSConf([]byte("PACKAGE_NAME=kecho\n"), "1"); err == nil {
		t.Error("no PACKAGE_VERSION line: want an error")
	}
}

func TestDKMSSourceFilesSkipsBuildProducts(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{
		"dkms.conf", "Makefile", "Kbuild", "kecho.c", "compat/probe.c", "scripts/gen.sh",
		"kecho.o", "kecho.ko", "kecho.mod", "kecho.mod.c", ".kecho.o.cmd", "modules.order",
		"Module.symvers", "compat_gen.h", ".tmp_versions/x", "compat/.probe.o.cmd",
		".compat/base.log", ".compat/skb_recv_udp_noblock.o", "compat_gen.h.tmp.123",
	} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := dkmsSourceFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Kbuild", "Makefile", "compat/probe.c", "dkms.conf", "kecho.c", "scripts/gen.sh"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRenderScriptInlinesAndSubstitutes(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "packaging", "scripts")
	s, err := RenderScript(dir, "kecho-dkms.postinst.deb", "9.8.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#!/bin/sh\n", "KECHO_VERSION='9.8.7'", "kecho_build_all()", "set -e"} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered postinst lacks %q", want)
		}
	}
	if strings.Contains(s, "@VERSION@") || strings.Contains(s, "#INCLUDE") {
		t.Error("rendered postinst still has a placeholder or an #INCLUDE")
	}
}

// Every maintainer script is POSIX sh: it must parse with dash (Debian's
// /bin/sh) and, where installed, pass checkbashisms and shellcheck.
func TestScriptsArePOSIXSh(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "packaging", "scripts")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".deb") && !strings.HasSuffix(name, ".rpm") {
			continue
		}
		n++
		s, err := RenderScript(dir, name, "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, "#!/bin/sh\n") && strings.HasSuffix(name, ".deb") {
			t.Errorf("%s: a Debian maintainer script must start with #!/bin/sh", name)
		}
		if !strings.Contains(s, "\nset -e\n") {
			t.Errorf("%s: no set -e", name)
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, tool := range [][]string{{"dash", "-n"}, {"checkbashisms", "--posix"}, {"shellcheck", "-s", "sh", "-S", "warning"}} {
			if _, err := exec.LookPath(tool[0]); err != nil {
				continue
			}
			if out, err := exec.Command(tool[0], append(tool[1:], p)...).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", tool[0], name, err, out)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d scripts, want the deb and rpm scripts of both packages", n)
	}
}

func TestFallbackDocs(t *testing.T) {
	root := repoRoot(t)
	man, comp, err := GenerateDocs(FallbackCommand, filepath.Join(root, "packaging", "man", "kechod.yaml.5.md"), "1.2.3", SourceDate(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/usr/share/man/man8/kechod.8.gz", "/usr/share/man/man8/kechod-run.8.gz", "/usr/share/man/man8/kechod-ping.8.gz", "/usr/share/man/man5/kechod.yaml.5.gz"} {
		if _, ok := man[p]; !ok {
			t.Errorf("no %s in %v", p, man.ManPaths())
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if len(comp[sh]) == 0 {
			t.Errorf("no %s completion", sh)
		}
	}
}

// kechod.yaml(5) documents every key of the shipped default configuration.
func TestYAMLManPageCoversEveryKey(t *testing.T) {
	root := repoRoot(t)
	cfg, err := os.ReadFile(filepath.Join(root, "configs", "kechod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := os.ReadFile(filepath.Join(root, "packaging", "man", "kechod.yaml.5.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := ""
	keys := 0
	for _, line := range strings.Split(string(cfg), "\n") {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			section = name
			if !strings.Contains(string(man), "# SECTION "+section) {
				t.Errorf("kechod.yaml(5) has no SECTION %s", section)
			}
			continue
		}
		keys++
		if !strings.Contains(string(man), "**"+name+"**") {
			t.Errorf("kechod.yaml(5) does not document %s.%s", section, name)
		}
	}
	if keys < 15 {
		t.Errorf("parsed only %d keys from configs/kechod.yaml", keys)
	}
}
