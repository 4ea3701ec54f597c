// Package system holds kecho's package, install-lifecycle and booted-system
// tests. Package tests need dpkg-deb, rpm and lintian; lifecycle and boot
// tests need root, debootstrap and qemu (`make deps` installs all of them).
// Without them the tests skip, except under KECHO_REQUIRE_VM=1 (`make
// test`), where a missing prerequisite is a failure.
package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kecho-dev/kecho/internal/pkgbuild"
	"github.com/kecho-dev/kecho/test/system/sysimage"
	"github.com/kecho-dev/kecho/test/vm"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// require skips (or, under KECHO_REQUIRE_VM=1, fails) the test when the
// host lacks root or one of the tools.
func require(t *testing.T, how string, tools ...string) {
	t.Helper()
	if miss := sysimage.Missing(tools...); miss != "" {
		msg := fmt.Sprintf("needs %s; run as root after `make deps`: %s", miss, how)
		vm.Unmet(t, msg)
	}
}

// requireTools is require without the root requirement.
func requireTools(t *testing.T, how string, tools ...string) {
	t.Helper()
	var miss []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			miss = append(miss, tool)
		}
	}
	if len(miss) > 0 {
		msg := fmt.Sprintf("needs %s (`make deps` installs them): %s", strings.Join(miss, ", "), how)
		vm.Unmet(t, msg)
	}
}

// dkmsTree is the DKMS source tree to package: the real dkms/. (The stub
// in testdata/dkms-stub only serves the failing-build test.)
func dkmsTree(t testing.TB) string {
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "dkms", "dkms.conf")); err != nil {
		t.Fatalf("the module's DKMS tree: %v", err)
	}
	return filepath.Join(root, "dkms")
}

// daemonReady reports whether kechod is implemented (internal/cli exists);
// the booted-system test is only meaningful then.
func daemonReady(t testing.TB) bool {
	m, _ := filepath.Glob(filepath.Join(repoRoot(t), "internal", "cli", "*.go"))
	return len(m) > 0
}

type builtSet struct {
	dir  string
	arts []pkgbuild.Artifact
	err  error
}

// artifact is a built package file.
type artifact = pkgbuild.Artifact

var (
	buildMu    sync.Mutex
	buildCache = map[string]*builtSet{}
	buildRoot  string
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "kecho-system-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildRoot = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// buildOpts describe one package build for the tests.
type buildOpts struct {
	Version  string   // "" = the repository's version
	DKMSDir  string   // "" = dkmsTree()
	Arches   []string // default amd64, arm64 (as `make packages`)
	Formats  []string // default deb, rpm
	Packages []string // default both
}

// All tests share as few builds as possible: the defaults (everything, as
// `make packages` builds it) and the same with the next version.

// build builds packages once per distinct buildOpts and returns them.
func build(t *testing.T, o buildOpts) []pkgbuild.Artifact {
	t.Helper()
	if o.DKMSDir == "" {
		o.DKMSDir = dkmsTree(t)
	}
	if len(o.Arches) == 0 {
		o.Arches = []string{"amd64", "arm64"}
	}
	key := fmt.Sprintf("%+v", o)
	buildMu.Lock()
	defer buildMu.Unlock()
	b, ok := buildCache[key]
	if !ok {
		b = &builtSet{dir: filepath.Join(buildRoot, strconv.Itoa(len(buildCache)))}
		b.arts, b.err = runPackager(t, b.dir, o)
		buildCache[key] = b
	}
	if b.err != nil {
		t.Fatalf("building packages: %v", b.err)
	}
	return b.arts
}

var (
	packagerOnce sync.Once
	packagerBin  string
	packagerErr  error
)

// runPackager runs the packager exactly as `make packages` does (the same
// main, so the same command tree for the man pages), into dir.
func runPackager(t *testing.T, dir string, o buildOpts) ([]pkgbuild.Artifact, error) {
	packagerOnce.Do(func() {
		packagerBin = filepath.Join(buildRoot, "packager")
		cmd := exec.Command("go", "build", "-o", packagerBin, "./packaging")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			packagerErr = fmt.Errorf("go build ./packaging: %v\n%s", err, out)
		}
	})
	if packagerErr != nil {
		return nil, packagerErr
	}
	args := []string{"--root", repoRoot(t), "--out", dir, "--dkms-dir", o.DKMSDir, "--arch", strings.Join(o.Arches, ",")}
	if o.Version != "" {
		args = append(args, "--version", o.Version)
	}
	if len(o.Formats) > 0 {
		args = append(args, "--format", strings.Join(o.Formats, ","))
	}
	if len(o.Packages) > 0 {
		args = append(args, "--package", strings.Join(o.Packages, ","))
	}
	cmd := exec.CommandContext(context.Background(), packagerBin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("packager %v: %v\n%s", args, err, out)
	}
	var arts []pkgbuild.Artifact
	for _, pat := range []struct{ glob, pkg, format, arch string }{
		{"kecho-dkms_*_all.deb", pkgbuild.DKMSPackage, "deb", "all"},
		{"kecho-dkms-*.noarch.rpm", pkgbuild.DKMSPackage, "rpm", "all"},
		{"kechod_*_amd64.deb", pkgbuild.DaemonPackage, "deb", "amd64"},
		{"kechod_*_arm64.deb", pkgbuild.DaemonPackage, "deb", "arm64"},
		{"kechod-*.x86_64.rpm", pkgbuild.DaemonPackage, "rpm", "amd64"},
		{"kechod-*.aarch64.rpm", pkgbuild.DaemonPackage, "rpm", "arm64"},
	} {
		m, _ := filepath.Glob(filepath.Join(dir, pat.glob))
		for _, p := range m {
			arts = append(arts, pkgbuild.Artifact{Package: pat.pkg, Format: pat.format, Arch: pat.arch, Path: p})
		}
	}
	return arts, nil
}

// find returns the one artifact of pkg/format/arch.
func find(t *testing.T, arts []pkgbuild.Artifact, pkg, format, arch string) string {
	t.Helper()
	for _, a := range arts {
		if a.Package == pkg && a.Format == format && (arch == "" || a.Arch == arch) {
			return a.Path
		}
	}
	t.Fatalf("no %s %s %s among %v", pkg, format, arch, arts)
	return ""
}

// repoVersion is the version `make packages` would use.
func repoVersion(t testing.TB) string {
	v, err := pkgbuild.DetectVersion(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// nextPatch returns X.Y.(Z+1) for a version starting with X.Y.Z.
func nextPatch(t testing.TB, v string) string {
	core := v
	if i := strings.IndexAny(core, "+~"); i >= 0 {
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		t.Fatalf("version %q is not X.Y.Z", v)
	}
	z, err := strconv.Atoi(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s.%s.%d", parts[0], parts[1], z+1)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
