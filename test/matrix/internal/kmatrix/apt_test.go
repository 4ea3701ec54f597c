package kmatrix

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testApt(t *testing.T, f *fakeRunner, suite string) *Apt {
	return &Apt{
		Dir: t.TempDir(), Suite: suite, Run: f, MaxAge: time.Hour,
		Archive: Archive{Mirror: "http://m/debian", SecurityMirror: "http://m/debian-security", Keyring: "/k.gpg"},
	}
}

func TestSourcesList(t *testing.T) {
	a := testApt(t, newFake(t), "bookworm")
	want := "deb [signed-by=/k.gpg] http://m/debian bookworm main\n" +
		"deb [signed-by=/k.gpg] http://m/debian bookworm-updates main\n" +
		"deb [signed-by=/k.gpg] http://m/debian-security bookworm-security main\n"
	if got := a.SourcesList(); got != want {
		t.Errorf("bookworm:\n%s\nwant:\n%s", got, want)
	}
	for _, s := range []string{"trixie-backports", "sid", "experimental"} {
		a.Suite = s
		if got, want := a.SourcesList(), "deb [signed-by=/k.gpg] http://m/debian "+s+" main\n"; got != want {
			t.Errorf("%s: %q, want %q", s, got, want)
		}
	}
}

// Update uses only the private configuration, and skips apt-get update
// while the lists are fresh and the sources unchanged.
func TestAptUpdate(t *testing.T) {
	f := newFake(t)
	a := testApt(t, f, "trixie")
	now := time.Now()
	a.Now = func() time.Time { return now }
	f.on("apt-get -o Dir::Etc::SourceList="+filepath.Join(a.Dir, "sources.list")+" -o Dir::Etc::SourceParts="+filepath.Join(a.Dir, "sources.list.d")+" Dir::State="+filepath.Join(a.Dir, "state")+" Dir::Cache="+filepath.Join(a.Dir, "cache")+" update", "")
	for i := 0; i < 2; i++ {
		if err := a.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.calls) != 1 {
		t.Errorf("apt-get ran %d times, want once: %q", len(f.calls), f.calls)
	}
	for _, c := range f.calls {
		if strings.Contains(c, "/etc/apt") {
			t.Errorf("command uses the host's apt configuration: %s", c)
		}
	}
	b, err := os.ReadFile(filepath.Join(a.Dir, "sources.list"))
	if err != nil || string(b) != a.SourcesList() {
		t.Errorf("sources.list = %q, %v", b, err)
	}
	now = now.Add(2 * time.Hour)
	if err := a.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 2 {
		t.Errorf("stale lists were not updated: %q", f.calls)
	}
	a.Now = nil
	f.onErr("update", "E: The repository 'http://m/debian trixie Release' does not have a Release file.")
	a.MaxAge = 0
	err = a.Update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "apt-get update for trixie") || !strings.Contains(err.Error(), "does not have a Release file") {
		t.Errorf("failing update: %v", err)
	}
}

func policy(pkg, cand string) string {
	return pkg + ":\n  Installed: (none)\n  Candidate: " + cand + "\n  Version table:\n     " + cand + " 500\n        500 http://m/debian x/main amd64 Packages\n"
}

const showHeaders612 = `Package: linux-headers-6.12.117+deb13-amd64
Source: linux
Version: 6.12.117-1
Depends: linux-base (>= 4.12~), linux-headers-6.12.117+deb13-common (= 6.12.117-1),
 linux-image-6.12.117+deb13-amd64 (= 6.12.117-1) | linux-image-6.12.117+deb13-amd64-unsigned (= 6.12.117-1), linux-kbuild-6.12.117+deb13, gcc-14
Description: Header files for Linux 6.12.117+deb13-amd64

Package: linux-headers-6.12.117+deb13-amd64
Version: 6.12.117-1
Depends: something-else
`

func TestResolveMetapackage(t *testing.T) {
	f := newFake(t)
	a := testApt(t, f, "trixie")
	f.on("apt-cache policy linux-headers-amd64", policy("linux-headers-amd64", "6.12.117-1"))
	f.on("apt-cache show linux-headers-amd64=6.12.117-1", "Package: linux-headers-amd64\nVersion: 6.12.117-1\nDepends: linux-headers-6.12.117+deb13-amd64 (= 6.12.117-1)\n")
	f.on("apt-cache policy linux-headers-6.12.117+deb13-amd64", policy("linux-headers-6.12.117+deb13-amd64", "6.12.117-1"))
	f.on("apt-cache show linux-headers-6.12.117+deb13-amd64=6.12.117-1", showHeaders612)
	f.on("apt-cache policy linux-image-6.12.117+deb13-amd64", policy("linux-image-6.12.117+deb13-amd64", "6.12.117-1"))
	f.on("apt-cache show linux-image-6.12.117+deb13-amd64=6.12.117-1", "Package: linux-image-6.12.117+deb13-amd64\nDepends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n")
	k, err := Resolve(context.Background(), a, Entry{Series: "6.12", Suite: "trixie"})
	if err != nil {
		t.Fatal(err)
	}
	if k.ABI != "6.12.117+deb13" || k.Release != "6.12.117+deb13-amd64" || k.Version != "6.12.117-1" || k.Compiler != "gcc-14" ||
		k.Image != "linux-image-6.12.117+deb13-amd64" || k.ImageVer != "6.12.117-1" {
		t.Errorf("got %+v", k)
	}
	want := []string{"linux-headers-6.12.117+deb13-amd64", "linux-headers-6.12.117+deb13-common", "linux-kbuild-6.12.117+deb13"}
	if strings.Join(k.Headers, " ") != strings.Join(want, " ") {
		t.Errorf("Headers = %q, want %q", k.Headers, want)
	}
	if strings.Join(k.ImagePkgs, " ") != "linux-image-6.12.117+deb13-amd64" {
		t.Errorf("ImagePkgs = %q", k.ImagePkgs)
	}
}

// 5.10's headers name their compiler through linux-compiler-gcc-10-x86;
// 7.x's through gcc-N-for-host and add linux-base-<release>.
func TestResolveCompilerForms(t *testing.T) {
	for _, c := range []struct {
		series, hdr, ver, depends, cc, extra string
		imageDepends, imagePkgs              string
	}{
		{"5.10", "linux-headers-5.10.0-32-amd64", "5.10.223-1", "linux-headers-5.10.0-32-common (= 5.10.223-1), linux-kbuild-5.10 (>= 5.10.223-1), linux-compiler-gcc-10-x86", "gcc-10", "linux-kbuild-5.10",
			"kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool", "linux-image-5.10.0-32-amd64"},
		{"7.3", "linux-headers-7.3.4+deb13-amd64", "7.3.4-1~bpo13+1", "gcc-14-for-host, linux-base (>= 4.12~), linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-headers-7.3.4+deb13-common (= 7.3.4-1~bpo13+1), linux-kbuild-7.3.4+deb13", "gcc-14", "linux-base-7.3.4+deb13-amd64",
			"dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)",
			"linux-image-7.3.4+deb13-amd64 linux-base-7.3.4+deb13-amd64 linux-binary-7.3.4+deb13-amd64 linux-modules-7.3.4+deb13-amd64"},
	} {
		f := newFake(t)
		a := testApt(t, f, "s")
		f.on("apt-cache policy linux-headers-amd64", policy("linux-headers-amd64", c.ver))
		f.on("apt-cache show linux-headers-amd64=", "Package: linux-headers-amd64\nDepends: "+c.hdr+" (= "+c.ver+")\n")
		f.on("apt-cache policy "+c.hdr, policy(c.hdr, c.ver))
		f.on("apt-cache show "+c.hdr+"=", "Package: "+c.hdr+"\nDepends: "+c.depends+"\n")
		f.on("apt-cache policy linux-image-", policy("linux-image", c.ver))
		f.on("apt-cache show linux-image-", "Package: linux-image\nDepends: "+c.imageDepends+"\n")
		k, err := Resolve(context.Background(), a, Entry{Series: c.series, Suite: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(k.ImagePkgs, " ") != c.imagePkgs {
			t.Errorf("%s: ImagePkgs = %q, want %q", c.series, k.ImagePkgs, c.imagePkgs)
		}
		if k.Compiler != c.cc || !contains(k.Headers, c.extra) {
			t.Errorf("%s: compiler %q headers %q, want %s and %s", c.series, k.Compiler, k.Headers, c.cc, c.extra)
		}
	}
}

// When the suite's metapackage has moved to a newer series, the newest
// generic headers of the listed series are used (not -cloud, not -rt).
func TestResolveFallback(t *testing.T) {
	f := newFake(t)
	a := testApt(t, f, "trixie-backports")
	f.on("apt-cache policy linux-headers-amd64", policy("linux-headers-amd64", "7.3.4-1~bpo13+1"))
	f.on("apt-cache pkgnames linux-headers-7.2", "linux-headers-7.2.9+deb13-amd64\nlinux-headers-7.2.12+deb13-cloud-amd64\nlinux-headers-7.2.12+deb13-amd64\nlinux-headers-7.2.12+deb13-common\nlinux-headers-7.2.6+deb13-amd64\nlinux-headers-7.2.12+deb13-rt-amd64\n")
	f.on("apt-cache policy linux-headers-7.2.9+deb13-amd64", policy("x", "7.2.9-1~bpo13+1"))
	f.on("apt-cache policy linux-headers-7.2.12+deb13-amd64", policy("x", "7.2.12-1~bpo13+1"))
	f.on("apt-cache policy linux-headers-7.2.6+deb13-amd64", policy("x", "7.2.6-1~bpo13+1"))
	f.on("apt-cache show linux-headers-7.2.12+deb13-amd64=7.2.12-1~bpo13+1", "Package: x\nDepends: gcc-14-for-host, linux-headers-7.2.12+deb13-common (= 7.2.12-1~bpo13+1), linux-kbuild-7.2.12+deb13\n")
	f.on("apt-cache policy linux-image-7.2.12+deb13-amd64", policy("x", "7.2.12-1~bpo13+1"))
	f.on("apt-cache show linux-image-7.2.12+deb13-amd64=7.2.12-1~bpo13+1", "Package: x\nDepends: linux-binary-7.2.12+deb13-amd64 (= 7.2.12-1~bpo13+1)\n")
	k, err := Resolve(context.Background(), a, Entry{Series: "7.2", Suite: "trixie-backports"})
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "7.2.12+deb13-amd64" || k.Version != "7.2.12-1~bpo13+1" || !strings.Contains(k.Via, "newest linux-headers-7.2*") {
		t.Errorf("got %+v", k)
	}
	for _, c := range f.calls {
		if strings.Contains(c, "cloud") || strings.Contains(c, "-rt-") || strings.Contains(c, "common") && strings.Contains(c, "policy") {
			t.Errorf("looked at a non-generic flavour: %s", c)
		}
	}
}

func TestResolveSeriesGone(t *testing.T) {
	f := newFake(t)
	a := testApt(t, f, "sid")
	f.on("apt-cache policy linux-headers-amd64", policy("linux-headers-amd64", "7.3.1-1"))
	f.on("apt-cache pkgnames linux-headers-7.2", "")
	_, err := Resolve(context.Background(), a, Entry{Series: "7.2", Suite: "sid"})
	if err == nil || !strings.Contains(err.Error(), "linux-headers-amd64 is 7.3.1-1 and no linux-headers-7.2*-amd64 is left there") {
		t.Errorf("err = %v", err)
	}
}

func TestDownloadCachesByVersion(t *testing.T) {
	f := newFake(t)
	a := testApt(t, f, "trixie")
	debs := t.TempDir()
	const file = "linux-kbuild-6.12.117+deb13_6.12.117-1_amd64.deb"
	f.on("apt-get download --print-uris linux-kbuild-6.12.117+deb13=6.12.117-1", "'http://m/debian/pool/main/l/linux/"+file+"' "+file+" 1445000 SHA256:00\n")
	f.onDo("apt-get -q download linux-kbuild-6.12.117+deb13=6.12.117-1", func(c Cmd) {
		if filepath.Dir(c.Dir) != debs {
			t.Errorf("downloads into %s, want a temporary directory in %s", c.Dir, debs)
		}
		os.WriteFile(filepath.Join(c.Dir, file), []byte("deb"), 0o644)
	})
	for i := 0; i < 2; i++ {
		p, err := a.Download(context.Background(), debs, "linux-kbuild-6.12.117+deb13", "6.12.117-1")
		if err != nil {
			t.Fatal(err)
		}
		if p != filepath.Join(debs, file) {
			t.Errorf("path %s", p)
		}
	}
	n := 0
	for _, c := range f.calls {
		if strings.Contains(c, "-q download") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("downloaded %d times, want once", n)
	}
	if m, _ := filepath.Glob(filepath.Join(debs, ".download-*")); len(m) != 0 {
		t.Errorf("left %v behind", m)
	}
}

func TestFirstRecordField(t *testing.T) {
	got := firstRecordField(showHeaders612, "Depends")
	if !strings.HasPrefix(got, "linux-base (>= 4.12~), linux-headers-6.12.117+deb13-common") || !strings.HasSuffix(got, "gcc-14") {
		t.Errorf("continuation lines not joined, or the second record leaked in: %q", got)
	}
	deps := parseDepends(got)
	want := "linux-base linux-headers-6.12.117+deb13-common linux-image-6.12.117+deb13-amd64 linux-image-6.12.117+deb13-amd64-unsigned linux-kbuild-6.12.117+deb13 gcc-14"
	if strings.Join(deps, " ") != want {
		t.Errorf("parseDepends = %q", deps)
	}
}
