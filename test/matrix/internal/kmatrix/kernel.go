package kmatrix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Kernel is a list entry resolved to concrete Debian packages.
type Kernel struct {
	Entry
	ABI      string   // "6.12.117+deb13" (packages are linux-*-<ABI>-amd64)
	Release  string   // uname -r: "6.12.117+deb13-amd64"
	Version  string   // package version of the headers: "6.12.117-1"
	Headers  []string // linux-headers-<ABI>-amd64, its -common, linux-kbuild-*, linux-base-<release>
	Image    string   // linux-image-<release>
	ImageVer string   // its candidate version
	// ImagePkgs are the packages that make up the installed image: the
	// image itself and, from 7.x on, the linux-binary-, linux-modules- and
	// linux-base-<release> packages it depends on (same version).
	ImagePkgs []string
	Compiler  string // the compiler package the headers depend on: "gcc-14"
	Via       string // how the ABI was found: "linux-headers-amd64 6.12.117-1" or a fallback note
}

// apt-cache pkgnames prefix for linux-headers of a series, and the pattern
// that keeps only the generic amd64 flavour (not -cloud, -rt).
func headersNameRe(series string) *regexp.Regexp {
	return regexp.MustCompile(`^linux-headers-(` + regexp.QuoteMeta(series) + `(?:\.[0-9]+)?(?:[-+][0-9a-z.]+)?)-amd64$`)
}

var compilerDepRe = regexp.MustCompile(`^(?:gcc-([0-9]+)(?:-for-host)?|linux-compiler-gcc-([0-9]+)-x86)$`)

// Resolve finds the kernel of e in its suite's package lists.
func Resolve(ctx context.Context, a *Apt, e Entry) (*Kernel, error) {
	k := &Kernel{Entry: e}
	metaVer, err := a.Candidate(ctx, "linux-headers-amd64")
	if err != nil {
		return nil, err
	}
	var hdr string
	if metaVer != "" && SeriesOf(metaVer) == e.Series {
		deps, err := a.Depends(ctx, "linux-headers-amd64", metaVer)
		if err != nil {
			return nil, err
		}
		re := headersNameRe(e.Series)
		for _, d := range deps {
			if re.MatchString(d) {
				hdr = d
				break
			}
		}
		if hdr == "" {
			return nil, fmt.Errorf("%s: linux-headers-amd64 %s depends on no linux-headers-%s*-amd64 (%s)", e.Name(), metaVer, e.Series, strings.Join(deps, ", "))
		}
		k.Via = "linux-headers-amd64 " + metaVer
	} else {
		// The metapackage has moved on (or never pointed at this series):
		// take the newest headers of the series the suite still serves.
		names, err := a.PkgNames(ctx, "linux-headers-"+e.Series)
		if err != nil {
			return nil, err
		}
		re := headersNameRe(e.Series)
		best, bestVer := "", ""
		for _, n := range names {
			if !re.MatchString(n) {
				continue
			}
			v, err := a.Candidate(ctx, n)
			if err != nil {
				return nil, err
			}
			if v != "" && (bestVer == "" || CompareVersions(v, bestVer) > 0) {
				best, bestVer = n, v
			}
		}
		if best == "" {
			if metaVer == "" {
				return nil, fmt.Errorf("%s: %s serves neither linux-headers-amd64 nor linux-headers-%s*-amd64", e.Name(), e.Suite, e.Series)
			}
			return nil, fmt.Errorf("%s: %s's linux-headers-amd64 is %s and no linux-headers-%s*-amd64 is left there; update the kernel list", e.Name(), e.Suite, metaVer, e.Series)
		}
		hdr = best
		k.Via = fmt.Sprintf("newest linux-headers-%s* (linux-headers-amd64 is %s)", e.Series, orNone(metaVer))
	}
	k.ABI = headersNameRe(e.Series).FindStringSubmatch(hdr)[1]
	k.Release = k.ABI + "-amd64"
	if k.Version, err = a.Candidate(ctx, hdr); err != nil {
		return nil, err
	}
	if k.Version == "" {
		return nil, fmt.Errorf("%s: %s has no candidate in %s", e.Name(), hdr, e.Suite)
	}
	deps, err := a.Depends(ctx, hdr, k.Version)
	if err != nil {
		return nil, err
	}
	k.Headers = []string{hdr}
	for _, d := range deps {
		switch {
		case strings.HasPrefix(d, "linux-headers-") && strings.HasSuffix(d, "-common"),
			strings.HasPrefix(d, "linux-kbuild-"),
			d == "linux-base-"+k.Release:
			if !contains(k.Headers, d) {
				k.Headers = append(k.Headers, d)
			}
		}
		if m := compilerDepRe.FindStringSubmatch(d); m != nil && k.Compiler == "" {
			k.Compiler = "gcc-" + m[1] + m[2]
		}
	}
	if k.Compiler == "" {
		return nil, fmt.Errorf("%s: %s=%s names no compiler (gcc-N) in its Depends: %s", e.Name(), hdr, k.Version, strings.Join(deps, ", "))
	}
	k.Image = "linux-image-" + k.Release
	if k.ImageVer, err = a.Candidate(ctx, k.Image); err != nil {
		return nil, err
	}
	if k.ImageVer != "" {
		ideps, err := a.Depends(ctx, k.Image, k.ImageVer)
		if err != nil {
			return nil, err
		}
		k.ImagePkgs = []string{k.Image}
		for _, d := range ideps {
			for _, p := range []string{"linux-binary-", "linux-modules-", "linux-base-"} {
				if d == p+k.Release && !contains(k.ImagePkgs, d) {
					k.ImagePkgs = append(k.ImagePkgs, d)
				}
			}
		}
	}
	return k, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// SeriesOf is MAJOR.MINOR of a kernel package version ("6.12.117-1",
// "7.3~rc7-1~exp1", "1:6.1.0" all work).
func SeriesOf(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	m := regexp.MustCompile(`^[0-9]+\.[0-9]+`).FindString(v)
	return m
}

// Tree is a kernel's packages extracted under one root directory (the
// layout they would have on an installed system).
type Tree struct {
	Root string // cache/matrix/kernels/<release>_<version>
	K    *Kernel
}

// HeadersDir is where the headers sit on an installed system (and so in
// the build environment).
func (t *Tree) HeadersDir() string { return "/usr/src/linux-headers-" + t.K.Release }

// Vmlinuz is the kernel image inside the tree: /boot/vmlinuz-<release>,
// or, in the 7.x packages (linux-binary-<release>), the modules
// directory's vmlinuz.
func (t *Tree) Vmlinuz() string {
	p := filepath.Join(t.Root, "boot", "vmlinuz-"+t.K.Release)
	if _, err := os.Stat(p); err != nil {
		if q := filepath.Join(t.ModulesDir(), "vmlinuz"); fileExists(q) {
			return q
		}
	}
	return p
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// ModulesDir is /lib/modules/<release> inside the tree (bullseye packages
// ship /lib, newer ones /usr/lib).
func (t *Tree) ModulesDir() string {
	for _, d := range []string{"usr/lib/modules", "lib/modules"} {
		p := filepath.Join(t.Root, d, t.K.Release)
		if _, err := os.Stat(filepath.Join(p, "kernel")); err == nil {
			return p
		}
	}
	return filepath.Join(t.Root, "lib", "modules", t.K.Release)
}

// Fetch downloads the kernel's headers (and, with image, its image) into
// debs and extracts them into a tree under kernels, reusing what earlier
// runs left there. It returns the tree and the .deb files used.
func Fetch(ctx context.Context, a *Apt, r Runner, k *Kernel, debs, kernels string, image bool) (*Tree, []string, error) {
	t := &Tree{Root: filepath.Join(kernels, k.Release+"_"+k.Version), K: k}
	type pv struct{ pkg, ver string }
	var pkgs []pv
	for _, h := range k.Headers {
		pkgs = append(pkgs, pv{h, k.Version})
	}
	if image {
		if k.ImageVer == "" {
			return nil, nil, fmt.Errorf("%s: %s serves no %s", k.Name(), k.Suite, k.Image)
		}
		for _, p := range k.ImagePkgs {
			if !contains(k.Headers, p) {
				pkgs = append(pkgs, pv{p, k.ImageVer})
			}
		}
	}
	var files []string
	fresh := false
	for _, p := range pkgs {
		deb, err := a.Download(ctx, debs, p.pkg, p.ver)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, deb)
		stamp := filepath.Join(t.Root, ".extracted", filepath.Base(deb))
		if _, err := os.Stat(stamp); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
			return nil, nil, err
		}
		if _, err := r.Run(ctx, Cmd{Name: "dpkg-deb", Args: []string{"-x", deb, t.Root}}); err != nil {
			return nil, nil, fmt.Errorf("extracting %s: %w", filepath.Base(deb), err)
		}
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			return nil, nil, err
		}
		fresh = true
	}
	if image {
		if err := depmod(ctx, r, t, fresh); err != nil {
			return nil, nil, err
		}
	}
	return t, files, nil
}

// depmod writes modules.dep & co. into the tree's modules directory (the
// image package leaves that to its postinst), again whenever packages were
// just extracted into the tree. depmod -b looks in <root>/lib/modules, so
// a merged-/usr tree gets a lib -> usr/lib link.
func depmod(ctx context.Context, r Runner, t *Tree, fresh bool) error {
	md := t.ModulesDir()
	if _, err := os.Stat(filepath.Join(md, "modules.dep")); err == nil && !fresh {
		return nil
	}
	lib := filepath.Join(t.Root, "lib")
	if _, err := os.Lstat(lib); os.IsNotExist(err) {
		if err := os.Symlink("usr/lib", lib); err != nil {
			return err
		}
	}
	if _, err := r.Run(ctx, Cmd{Name: "depmod", Args: []string{"-b", t.Root, t.K.Release}}); err != nil {
		return fmt.Errorf("depmod for %s: %w", t.K.Release, err)
	}
	return nil
}

// CompilerText is the kernel's CONFIG_CC_VERSION_TEXT: the compiler it was
// built with, e.g. "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0".
func (t *Tree) CompilerText() (string, error) {
	p := filepath.Join(t.Root, t.HeadersDir(), ".config")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("kernel config: %w", err)
	}
	return configString(string(b), "CONFIG_CC_VERSION_TEXT")
}

func configString(cfg, key string) (string, error) {
	for _, l := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", fmt.Errorf("%s not in the kernel config", key)
}

// CCMajor is N of the gcc-N in a CONFIG_CC_VERSION_TEXT.
func CCMajor(text string) string {
	m := regexp.MustCompile(`(?:^|[-/ ])gcc-([0-9]+)\b`).FindStringSubmatch(text)
	if m == nil {
		m = regexp.MustCompile(`\) ([0-9]+)\.`).FindStringSubmatch(text)
	}
	if m == nil {
		return ""
	}
	return m[1]
}
