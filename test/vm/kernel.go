package vm

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Kernel names one kernel to boot: its image, its modules tree and the
// headers to build kecho against.
type Kernel struct {
	// Release is the kernel release (uname -r), e.g. "6.1.0-57-amd64".
	Release string
	// Image is the bootable kernel image (vmlinuz / bzImage).
	Image string
	// ModulesDir is the kernel's modules tree, the directory that holds
	// modules.dep, modules.order, modules.builtin and kernel/
	// (normally /lib/modules/<Release>).
	ModulesDir string
	// Headers is the kernel build tree kecho is built against (KDIR).
	// It may be empty when Spec.Module gives a prebuilt kecho.ko.
	Headers string
	// Config is the kernel's .config (normally /boot/config-<Release>);
	// optional, used to pick the initramfs compression.
	Config string
}

// Environment variables that choose the kernel DefaultKernel returns.
const (
	// EnvKernelRelease picks an installed (or, with EnvKernelRoot,
	// extracted) kernel release instead of the newest one.
	EnvKernelRelease = "KECHO_VM_KVER"
	// EnvKernelRoot is a directory that holds boot/, lib/modules/ and
	// usr/src/ of extracted kernel packages (default "/").
	EnvKernelRoot = "KECHO_VM_ROOT"
)

// DefaultKernel returns the kernel the VM tests boot by default: the
// release in $KECHO_VM_KVER under $KECHO_VM_ROOT (default "/") if set,
// else the newest installed kernel that has both an image in /boot and
// headers (/lib/modules/<release>/build).
func DefaultKernel() (Kernel, error) {
	root := os.Getenv(EnvKernelRoot)
	if root == "" {
		root = "/"
	}
	if rel := os.Getenv(EnvKernelRelease); rel != "" {
		return KernelFromRoot(root, rel)
	}
	rels, err := releasesWithHeaders(root)
	if err != nil {
		return Kernel{}, err
	}
	if len(rels) == 0 {
		return Kernel{}, fmt.Errorf("no kernel with an image in %s and headers in %s (install linux-image-amd64 and linux-headers-amd64: `make deps`)",
			filepath.Join(root, "boot"), filepath.Join(root, "lib/modules/*/build"))
	}
	return KernelFromRoot(root, rels[len(rels)-1])
}

// InstalledKernel returns the installed kernel of the given release.
func InstalledKernel(release string) (Kernel, error) {
	return KernelFromRoot("/", release)
}

// KernelFromRoot finds the kernel of the given release in a tree laid out
// like a Debian system: <root>/boot/vmlinuz-<release>,
// <root>/lib/modules/<release> (or usr/lib/modules) and the headers in
// <root>/lib/modules/<release>/build or <root>/usr/src/linux-headers-<release>.
// Use root "/" for installed kernels, or the directory into which kernel
// .debs were extracted (dpkg-deb -x). A missing headers tree leaves
// Headers empty (the caller then has to give Spec.Module).
func KernelFromRoot(root, release string) (Kernel, error) {
	k := Kernel{Release: release}
	for _, img := range []string{"boot/vmlinuz-" + release, "boot/bzImage-" + release} {
		if p := filepath.Join(root, img); isFile(p) {
			k.Image = p
			break
		}
	}
	if k.Image == "" {
		return k, fmt.Errorf("kernel %s: no image %s", release, filepath.Join(root, "boot/vmlinuz-"+release))
	}
	for _, md := range []string{"lib/modules/" + release, "usr/lib/modules/" + release} {
		if p := filepath.Join(root, md); isFile(filepath.Join(p, "modules.order")) || isFile(filepath.Join(p, "modules.dep")) {
			k.ModulesDir = p
			break
		}
	}
	if k.ModulesDir == "" {
		return k, fmt.Errorf("kernel %s: no modules tree (modules.order) in %s", release, filepath.Join(root, "lib/modules", release))
	}
	k.Headers = findHeaders(root, k.ModulesDir, release)
	if p := filepath.Join(root, "boot/config-"+release); isFile(p) {
		k.Config = p
	}
	return k, nil
}

// findHeaders resolves the "build" link of a modules tree inside root
// (its target is absolute on the system the kernel belongs to), falling
// back to usr/src/linux-headers-<release>.
func findHeaders(root, modDir, release string) string {
	var cands []string
	if target, err := os.Readlink(filepath.Join(modDir, "build")); err == nil {
		if filepath.IsAbs(target) {
			cands = append(cands, filepath.Join(root, target))
		} else {
			cands = append(cands, filepath.Join(modDir, target))
		}
	}
	cands = append(cands, filepath.Join(modDir, "build"), filepath.Join(root, "usr/src/linux-headers-"+release))
	for _, c := range cands {
		if isFile(filepath.Join(c, "Makefile")) {
			return c
		}
	}
	return ""
}

func releasesWithHeaders(root string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(root, "lib/modules"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var rels []string
	for _, e := range ents {
		rel := e.Name()
		if !isFile(filepath.Join(root, "boot/vmlinuz-"+rel)) {
			continue
		}
		if findHeaders(root, filepath.Join(root, "lib/modules", rel), rel) == "" {
			continue
		}
		rels = append(rels, rel)
	}
	sort.Slice(rels, func(i, j int) bool { return versionLess(rels[i], rels[j]) })
	return rels, nil
}

// versionLess orders kernel releases naturally: digit runs compare as
// numbers ("6.1.0-10" < "6.1.0-9" is false), other runs as strings.
func versionLess(a, b string) bool {
	ca, cb := versionChunks(a), versionChunks(b)
	for i := 0; i < len(ca) && i < len(cb); i++ {
		if ca[i] == cb[i] {
			continue
		}
		na, ea := strconv.ParseUint(ca[i], 10, 64)
		nb, eb := strconv.ParseUint(cb[i], 10, 64)
		if ea == nil && eb == nil {
			return na < nb
		}
		return ca[i] < cb[i]
	}
	return len(ca) < len(cb)
}

func versionChunks(s string) []string {
	var out []string
	start := 0
	for i := 1; i <= len(s); i++ {
		if i == len(s) || unicode.IsDigit(rune(s[i])) != unicode.IsDigit(rune(s[i-1])) {
			out = append(out, s[start:i])
			start = i
		}
	}
	return out
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// KernelConfig reads the kernel's .config into a map of CONFIG_* names to
// values ("y", "m", a string); nil when the kernel has no Config.
func (k Kernel) KernelConfig() (map[string]string, error) {
	if k.Config == "" {
		return nil, nil
	}
	f, err := os.Open(k.Config)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if name, val, ok := strings.Cut(line, "="); ok {
			cfg[name] = val
		}
	}
	return cfg, sc.Err()
}

// moduleName is the kernel's name for a module file: the base name
// without .ko and compression suffix, with '-' folded to '_'.
func moduleName(file string) string {
	b := filepath.Base(file)
	for _, suf := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(b, suf) {
			b = strings.TrimSuffix(b, suf)
			break
		}
	}
	return strings.ReplaceAll(b, "-", "_")
}

// moduleDeps is a parsed modules.dep plus modules.builtin.
type moduleDeps struct {
	path    map[string]string   // module name -> path relative to the modules tree
	deps    map[string][]string // module name -> names it depends on
	builtin map[string]bool
}

func readModuleDeps(modDir string) (*moduleDeps, error) {
	md := &moduleDeps{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("modules tree %s: %w", modDir, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name := moduleName(mod)
		md.path[name] = mod
		for _, d := range strings.Fields(rest) {
			md.deps[name] = append(md.deps[name], moduleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			md.builtin[moduleName(l)] = true
		}
	}
	return md, nil
}

// closure returns the module files (relative paths) needed to load the
// named modules, dependencies included, in load order. Built-in modules
// need nothing; an unknown module is an error.
func (md *moduleDeps) closure(names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		n = strings.ReplaceAll(n, "-", "_")
		if seen[n] {
			return nil
		}
		seen[n] = true
		p, ok := md.path[n]
		if !ok {
			if md.builtin[n] {
				return nil
			}
			return fmt.Errorf("kernel module %s (needed by %s) is neither in modules.dep nor built in", n, strings.Join(append(chain, "the VM"), " <- "))
		}
		for _, d := range md.deps[n] {
			if err := visit(d, append([]string{n}, chain...)); err != nil {
				return err
			}
		}
		out = append(out, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// modinfo reads the .modinfo section of a (uncompressed) module file.
func modinfo(ko string) (map[string]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("modinfo %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("modinfo %s: no .modinfo section", ko)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("modinfo %s: %w", ko, err)
	}
	info := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if old, dup := info[k]; dup {
				info[k] = old + "\n" + v
			} else {
				info[k] = v
			}
		}
	}
	return info, nil
}
