// Package pkgbuild builds kecho's distribution packages with nfpm: kecho-dkms
// (.deb/.rpm, architecture-independent) and kechod (.deb/.rpm, amd64 and
// arm64). `go run ./packaging` is its command-line front end.
package pkgbuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Package names.
const (
	DKMSPackage   = "kecho-dkms"
	DaemonPackage = "kechod"
)

const (
	defaultHomepage   = "https://github.com/kecho-dev/kecho"
	defaultMaintainer = "kecho maintainers <kecho-dev@users.noreply.github.com>"
	// Both the module and the daemon are GPL-2.0-only: the module must be
	// GPL-compatible to use the kernel's GPL-only symbols, and one license
	// for the whole tree keeps the packages simple.
	license = "GPL-2.0-only"
)

// Options configure a build. Zero values mean the defaults.
type Options struct {
	Root       string   // repository root (go.mod, dkms/, packaging/, ...)
	OutDir     string   // default Root/dist
	Version    string   // default DetectVersion(Root)
	Commit     string   // default DetectCommit(Root)
	Arches     []string // kechod architectures; default amd64, arm64
	Formats    []string // default deb, rpm
	Packages   []string // default kecho-dkms, kechod
	DKMSDir    string   // default Root/dkms
	Maintainer string
	Homepage   string
	Date       time.Time      // default SourceDate(Root)
	Command    CommandFactory // kechod's command tree, for kechod(8) and completions
	Go         string         // go tool; default $GO or "go"
	Log        io.Writer      // progress; default io.Discard
}

// Artifact is one built package file.
type Artifact struct {
	Package string // kecho-dkms | kechod
	Format  string // deb | rpm
	Arch    string // Go/Debian name: all | amd64 | arm64
	Path    string
}

func (o *Options) defaults() error {
	if o.Root == "" {
		return fmt.Errorf("pkgbuild: Options.Root is required")
	}
	var err error
	if o.Root, err = filepath.Abs(o.Root); err != nil {
		return err
	}
	if o.OutDir == "" {
		o.OutDir = filepath.Join(o.Root, "dist")
	}
	if o.Version == "" {
		if o.Version, err = DetectVersion(o.Root); err != nil {
			return err
		}
	} else if o.Version, err = NormalizeVersion(o.Version); err != nil {
		return err
	}
	if o.Commit == "" {
		o.Commit = DetectCommit(o.Root)
	}
	if len(o.Arches) == 0 {
		o.Arches = []string{"amd64", "arm64"}
	}
	if len(o.Formats) == 0 {
		o.Formats = []string{"deb", "rpm"}
	}
	if len(o.Packages) == 0 {
		o.Packages = []string{DKMSPackage, DaemonPackage}
	}
	if o.DKMSDir == "" {
		o.DKMSDir = filepath.Join(o.Root, "dkms")
	}
	if o.Maintainer == "" {
		o.Maintainer = defaultMaintainer
	}
	if o.Homepage == "" {
		o.Homepage = defaultHomepage
	}
	if o.Date.IsZero() {
		o.Date = SourceDate(o.Root)
	}
	if o.Command == nil {
		o.Command = FallbackCommand
	}
	if o.Go == "" {
		o.Go = os.Getenv("GO")
		if o.Go == "" {
			o.Go = "go"
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

func (o *Options) has(pkg string) bool {
	for _, p := range o.Packages {
		if p == pkg {
			return true
		}
	}
	return false
}

// Build compiles, stages and packages. It writes only into OutDir (and a
// temporary staging directory it removes).
func Build(ctx context.Context, o Options) ([]Artifact, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp("", "kecho-pkg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	scriptsDir := filepath.Join(o.Root, "packaging", "scripts")

	var arts []Artifact
	if o.has(DKMSPackage) {
		fmt.Fprintf(o.Log, "staging %s %s from %s\n", DKMSPackage, o.Version, o.DKMSDir)
		contents, err := stageDKMS(o.DKMSDir, filepath.Join(stage, "dkms"), o.Version)
		if err != nil {
			return nil, err
		}
		common, err := o.commonDocs(stage, DKMSPackage)
		if err != nil {
			return nil, err
		}
		contents = append(contents, common...)
		for _, format := range o.Formats {
			info, err := o.dkmsInfo(format, contents, scriptsDir, filepath.Join(stage, "scripts-"+DKMSPackage+"-"+format))
			if err != nil {
				return nil, err
			}
			a, err := o.pack(info, format, DKMSPackage, "all")
			if err != nil {
				return nil, err
			}
			arts = append(arts, a)
		}
	}
	if o.has(DaemonPackage) {
		man, completions, err := GenerateDocs(o.Command, filepath.Join(o.Root, "packaging", "man", "kechod.yaml.5.md"), o.Version, o.Date)
		if err != nil {
			return nil, err
		}
		docDir := filepath.Join(stage, "docs")
		common, err := o.commonDocs(stage, DaemonPackage)
		if err != nil {
			return nil, err
		}
		for _, arch := range o.Arches {
			bin := filepath.Join(stage, "bin-"+arch, "kechod")
			fmt.Fprintf(o.Log, "building kechod %s for linux/%s\n", o.Version, arch)
			if err := o.buildDaemon(ctx, arch, bin); err != nil {
				return nil, err
			}
			for _, format := range o.Formats {
				contents, err := o.daemonContents(format, bin, docDir, man, completions)
				if err != nil {
					return nil, err
				}
				contents = append(contents, common...)
				info, err := o.daemonInfo(format, arch, contents, scriptsDir, filepath.Join(stage, "scripts-"+DaemonPackage+"-"+format))
				if err != nil {
					return nil, err
				}
				a, err := o.pack(info, format, DaemonPackage, arch)
				if err != nil {
					return nil, err
				}
				arts = append(arts, a)
			}
		}
	}
	return arts, nil
}

// buildDaemon cross-compiles a static kechod.
func (o *Options) buildDaemon(ctx context.Context, arch, out string) error {
	ldflags := strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", "github.com/kecho-dev/kecho/internal/version.Version=" + o.Version,
		"-X", "github.com/kecho-dev/kecho/internal/version.Commit=" + o.Commit,
	}, " ")
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/kechod")
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	var stderr bytes.Buffer
	cmd.Stdout = o.Log
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build kechod for %s: %w\n%s", arch, err, stderr.String())
	}
	return nil
}

// commonDocs writes the copyright file and the Debian changelog of pkg.
func (o *Options) commonDocs(stage, pkg string) (files.Contents, error) {
	dir := filepath.Join(stage, "doc-"+pkg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmpl, err := os.ReadFile(filepath.Join(o.Root, "packaging", "doc", "copyright"))
	if err != nil {
		return nil, err
	}
	copyright := strings.NewReplacer("@MAINTAINER_EMAIL@", maintainerEmail(o.Maintainer), "@HOMEPAGE@", o.Homepage).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(dir, "copyright"), []byte(copyright), 0o644); err != nil {
		return nil, err
	}
	changelog := fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Release %s (commit %s).\n\n -- %s  %s\n",
		pkg, o.Version, o.Version, o.Commit, o.Maintainer, o.Date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	gz, err := gzipBytes([]byte(changelog))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "changelog.gz"), gz, 0o644); err != nil {
		return nil, err
	}
	docDir := "/usr/share/doc/" + pkg
	c := files.Contents{
		file(filepath.Join(dir, "copyright"), docDir+"/copyright", 0o644, ""),
		// Native Debian package: the changelog is changelog.gz. rpm keeps
		// its own changelog in the header; the file does no harm there.
		file(filepath.Join(dir, "changelog.gz"), docDir+"/changelog.gz", 0o644, "deb"),
	}
	if lo := filepath.Join(o.Root, "packaging", "lintian", pkg); exists(lo) {
		c = append(c, file(lo, "/usr/share/lintian/overrides/"+pkg, 0o644, "deb"))
	}
	return c, nil
}

func (o *Options) daemonContents(format, bin, docDir string, man Docs, completions map[string][]byte) (files.Contents, error) {
	unitDir := "/lib/systemd/system"
	if format == "rpm" {
		unitDir = "/usr/lib/systemd/system"
	}
	c := files.Contents{
		file(bin, "/usr/bin/kechod", 0o755, ""),
		file(filepath.Join(o.Root, "systemd", "kechod.service"), unitDir+"/kechod.service", 0o644, ""),
		{Source: filepath.Join(o.Root, "configs", "kechod.yaml"), Destination: "/etc/kechod/kechod.yaml",
			Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o644, Owner: "root", Group: "root"}},
		{Destination: "/etc/kechod", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"}},
		{Destination: "/etc/kechod/conf.d", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"}},
	}
	// Generated files: write them once into docDir (shared by all arches).
	write := func(dest string, b []byte) (string, error) {
		p := filepath.Join(docDir, format, filepath.FromSlash(dest))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		return p, os.WriteFile(p, b, 0o644)
	}
	for _, dest := range man.ManPaths() {
		p, err := write(dest, man[dest])
		if err != nil {
			return nil, err
		}
		c = append(c, file(p, dest, 0o644, ""))
	}
	shells := []string{"bash", "zsh", "fish"}
	for _, sh := range shells {
		dest := completionPaths[format][sh]
		p, err := write(dest, completions[sh])
		if err != nil {
			return nil, err
		}
		c = append(c, file(p, dest, 0o644, ""))
	}
	return c, nil
}

func file(src, dst string, mode os.FileMode, packager string) *files.Content {
	return &files.Content{
		Source:      src,
		Destination: dst,
		Packager:    packager,
		FileInfo:    &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"},
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func maintainerEmail(m string) string {
	if i, j := strings.Index(m, "<"), strings.Index(m, ">"); i >= 0 && j > i {
		return m[i+1 : j]
	}
	return m
}

// scripts renders the maintainer scripts of pkg for format into dir and
// returns their paths by kind (postinst, prerm, postrm, post, preun,
// postun, posttrans).
func renderScripts(scriptsDir, outDir, pkg, format, version string) (map[string]string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	kinds := map[string][]string{
		"deb": {"preinst", "postinst", "prerm", "postrm"},
		"rpm": {"pre", "post", "preun", "postun", "pretrans", "posttrans"},
	}[format]
	out := map[string]string{}
	for _, kind := range kinds {
		name := pkg + "." + kind + "." + format
		if !exists(filepath.Join(scriptsDir, name)) {
			continue
		}
		s, err := RenderScript(scriptsDir, name, version)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(outDir, kind)
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			return nil, err
		}
		out[kind] = p
	}
	return out, nil
}

func setScripts(info *nfpm.Info, format string, s map[string]string) {
	switch format {
	case "deb":
		info.Scripts = nfpm.Scripts{PreInstall: s["preinst"], PostInstall: s["postinst"], PreRemove: s["prerm"], PostRemove: s["postrm"]}
	case "rpm":
		info.Scripts = nfpm.Scripts{PreInstall: s["pre"], PostInstall: s["post"], PreRemove: s["preun"], PostRemove: s["postun"]}
		info.RPM.Scripts = nfpm.RPMScripts{PreTrans: s["pretrans"], PostTrans: s["posttrans"]}
	}
}

func (o *Options) baseInfo(name, arch, format string) *nfpm.Info {
	return &nfpm.Info{
		Name:          name,
		Arch:          arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none",
		Maintainer:    o.Maintainer,
		Vendor:        "kecho",
		Homepage:      o.Homepage,
		License:       license,
		Priority:      "optional",
		MTime:         o.Date,
		Overridables:  nfpm.Overridables{Umask: 0o022},
	}
}

func (o *Options) dkmsInfo(format string, contents files.Contents, scriptsDir, outDir string) (*nfpm.Info, error) {
	info := o.baseInfo(DKMSPackage, "all", format)
	info.Section = "kernel"
	info.Description = "kecho in-kernel UDP echo server, DKMS source\n" +
		"kecho is a Linux kernel module that serves UDP echo (by default on port\n" +
		"5555) from inside the kernel.\n" +
		"\n" +
		"This package installs the module's source for DKMS, which builds and\n" +
		"installs it for every installed kernel that has headers. The daemon that\n" +
		"loads, configures and monitors the module is in the kechod package."
	info.Contents = contents
	info.Depends = []string{"dkms"}
	switch format {
	case "deb":
		info.Recommends = []string{"linux-headers-amd64 | linux-headers-arm64 | linux-headers-generic | linux-headers"}
	case "rpm":
		info.Recommends = []string{"kernel-devel"}
		info.RPM.Group = "System Environment/Kernel"
		info.RPM.Summary = "kecho in-kernel UDP echo server, DKMS source"
	}
	s, err := renderScripts(scriptsDir, outDir, DKMSPackage, format, o.Version)
	if err != nil {
		return nil, err
	}
	setScripts(info, format, s)
	return info, nil
}

func (o *Options) daemonInfo(format, arch string, contents files.Contents, scriptsDir, outDir string) (*nfpm.Info, error) {
	info := o.baseInfo(DaemonPackage, arch, format)
	info.Section = "net"
	info.Description = "daemon for the kecho in-kernel UDP echo server\n" +
		"kechod loads the kecho kernel module with the parameters from\n" +
		"/etc/kechod/kechod.yaml, checks its health with UDP probes, reports to\n" +
		"systemd (Type=notify, watchdog, status) and offers `kechod ping`, a UDP\n" +
		"echo client, and `kechod check`, a monitoring plugin."
	info.Contents = contents
	switch format {
	case "deb":
		// procps: /bin/kill for ExecReload.
		info.Depends = []string{"kmod", "procps"}
		info.Recommends = []string{"kecho-dkms"}
	case "rpm":
		info.Depends = []string{"kmod", "/usr/bin/kill"}
		info.Recommends = []string{"kecho-dkms"}
		info.RPM.Group = "System Environment/Daemons"
		info.RPM.Summary = "daemon for the kecho in-kernel UDP echo server"
	}
	s, err := renderScripts(scriptsDir, outDir, DaemonPackage, format, o.Version)
	if err != nil {
		return nil, err
	}
	setScripts(info, format, s)
	return info, nil
}

func (o *Options) pack(info *nfpm.Info, format, pkg, arch string) (Artifact, error) {
	if format == "rpm" {
		// rpm has a separate Summary; the description is the body alone.
		if _, body, ok := strings.Cut(info.Description, "\n"); ok {
			info.Description = body
		}
	}
	info = nfpm.WithDefaults(info)
	packager, err := nfpm.Get(format)
	if err != nil {
		return Artifact{}, err
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return Artifact{}, fmt.Errorf("%s %s: %w", pkg, format, err)
	}
	info.Target = filepath.Join(o.OutDir, packager.ConventionalFileName(info))
	f, err := os.Create(info.Target + ".tmp")
	if err != nil {
		return Artifact{}, err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return Artifact{}, fmt.Errorf("%s %s %s: %w", pkg, format, arch, err)
	}
	if err := f.Close(); err != nil {
		return Artifact{}, err
	}
	if err := os.Rename(f.Name(), info.Target); err != nil {
		return Artifact{}, err
	}
	fmt.Fprintf(o.Log, "wrote %s\n", info.Target)
	return Artifact{Package: pkg, Format: format, Arch: arch, Path: info.Target}, nil
}

// Build products of a kernel module build that must not be shipped.
var buildProducts = regexp.MustCompile(`(^|/)(\.[^/]*\.cmd|[^/]*\.(o|ko|mod|mod\.c|a|order|symvers|dwo)|\.tmp_versions|\.cache\.mk|compat_gen\.h[^/]*|\.compat|modules\.order|Module\.symvers|\.git[^/]*)(/|$)`)

// stageDKMS copies the module sources (without build products) into dst,
// rewriting dkms.conf's PACKAGE_VERSION, and returns their package contents
// under /usr/src/kecho-<version>/.
func stageDKMS(src, dst, version string) (files.Contents, error) {
	conf, err := os.ReadFile(filepath.Join(src, "dkms.conf"))
	if err != nil {
		return nil, fmt.Errorf("DKMS tree %s: %w", src, err)
	}
	rel, err := dkmsSourceFiles(src)
	if err != nil {
		return nil, err
	}
	prefix := "/usr/src/kecho-" + version
	var c files.Contents
	c = append(c, &files.Content{Destination: prefix, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"}})
	dirs := map[string]bool{}
	for _, r := range rel {
		st, err := os.Stat(filepath.Join(src, r))
		if err != nil {
			return nil, err
		}
		mode := os.FileMode(0o644)
		if st.Mode()&0o111 != 0 {
			mode = 0o755
		}
		var body []byte
		if r == "dkms.conf" {
			body, err = RewriteDKMSConf(conf, version)
		} else {
			body, err = os.ReadFile(filepath.Join(src, r))
		}
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dst, filepath.FromSlash(r))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, body, mode); err != nil {
			return nil, err
		}
		for d := filepath.Dir(r); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				c = append(c, &files.Content{Destination: prefix + "/" + filepath.ToSlash(d), Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"}})
			}
		}
		c = append(c, file(p, prefix+"/"+filepath.ToSlash(r), mode, ""))
	}
	return c, nil
}

// dkmsSourceFiles lists the files to ship from the DKMS tree, relative to
// it: what git tracks or would track (honouring .gitignore), minus build
// products; or, outside a git checkout, every file minus build products.
func dkmsSourceFiles(src string) ([]string, error) {
	var rel []string
	out, err := exec.Command("git", "-C", src, "ls-files", "--cached", "--others", "--exclude-standard", "--full-name", "--", ".").Output()
	if err == nil {
		top, err2 := exec.Command("git", "-C", src, "rev-parse", "--show-prefix").Output()
		if err2 != nil {
			return nil, err2
		}
		prefix := strings.TrimSpace(string(top))
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l == "" {
				continue
			}
			r := strings.TrimPrefix(l, prefix)
			if exists(filepath.Join(src, r)) { // deleted but still in the index
				rel = append(rel, r)
			}
		}
	} else {
		err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			r, _ := filepath.Rel(src, p)
			rel = append(rel, filepath.ToSlash(r))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var keep []string
	for _, r := range rel {
		if !buildProducts.MatchString(r) {
			keep = append(keep, r)
		}
	}
	sort.Strings(keep)
	if len(keep) == 0 {
		return nil, fmt.Errorf("DKMS tree %s: no source files", src)
	}
	return keep, nil
}

var packageVersionRE = regexp.MustCompile(`(?m)^[ \t]*PACKAGE_VERSION=.*$`)

// RewriteDKMSConf sets PACKAGE_VERSION in a dkms.conf to version.
func RewriteDKMSConf(conf []byte, version string) ([]byte, error) {
	if !packageVersionRE.Match(conf) {
		return nil, fmt.Errorf("dkms.conf has no PACKAGE_VERSION= line")
	}
	return packageVersionRE.ReplaceAll(conf, []byte(`PACKAGE_VERSION="`+version+`"`)), nil
}
