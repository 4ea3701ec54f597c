package dkmshost

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

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

// unmet is vm.Unmet with a format.
func unmet(t *testing.T, format string, args ...any) {
	t.Helper()
	vm.Unmet(t, fmt.Sprintf(format, args...))
}

// dkmsConf reads dkms.conf's simple KEY="value" assignments.
func dkmsConf(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assign := regexp.MustCompile(`^([A-Z_]+(?:\[[0-9]+\])?)=(.*)$`)
	conf := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := assign.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		v := m[2]
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		conf[m[1]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return conf
}

func TestDKMSConfContract(t *testing.T) {
	root := repoRoot(t)
	conf := dkmsConf(t, filepath.Join(root, "dkms", "dkms.conf"))
	version, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PACKAGE_NAME":            "kecho",
		"PACKAGE_VERSION":         strings.TrimSpace(string(version)),
		"BUILT_MODULE_NAME[0]":    "kecho",
		"DEST_MODULE_LOCATION[0]": "/updates/dkms",
		"AUTOINSTALL":             "yes",
	}
	for k, v := range want {
		if conf[k] != v {
			t.Errorf("dkms.conf: %s=%q, want %q", k, conf[k], v)
		}
	}
	mk := conf["MAKE[0]"]
	for _, s := range []string{"${kernelver}", "${kernel_source_dir}", "KECHO_VERSION=${PACKAGE_VERSION}"} {
		if !strings.Contains(mk, s) {
			t.Errorf("dkms.conf: MAKE[0]=%q does not use %s", mk, s)
		}
	}
	for k, v := range conf {
		if strings.Contains(v, "uname") {
			t.Errorf("dkms.conf: %s=%q uses uname; DKMS builds for other kernels than the running one", k, v)
		}
	}
	if conf["CLEAN"] == "" {
		t.Error("dkms.conf: no CLEAN")
	}
}

func TestDKMSSupportedKernels(t *testing.T) {
	conf := dkmsConf(t, filepath.Join(repoRoot(t), "dkms", "dkms.conf"))
	expr := conf["BUILD_EXCLUSIVE_KERNEL"]
	if expr == "" {
		t.Fatal("dkms.conf: no BUILD_EXCLUSIVE_KERNEL")
	}
	// DKMS matches with bash's =~ (POSIX ERE); the expression only uses
	// constructs that mean the same in Go's syntax.
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("BUILD_EXCLUSIVE_KERNEL=%q: %v", expr, err)
	}
	for release, supported := range map[string]bool{
		"5.10.0-30-amd64":       true,
		"5.10.0-30-cloud-amd64": true,
		"5.19.17":               true,
		"6.1.0-57-amd64":        true,
		"6.1.0-57-rt-amd64":     true,
		"6.12.38+deb13-amd64":   true,
		"6.12.38+deb12-amd64":   true,
		"7.2.1+deb14-amd64":     true,
		"7.3.0-1-amd64":         true,
		"7.3":                   true,
		"4.19.0-27-amd64":       false,
		"5.4.0-150-generic":     false,
		"5.9.16":                false,
		"5.1.21":                false,
		"8.0.0-1-amd64":         false,
		"16.1.0":                false,
		"3.10.0-1160.el7":       false,
	} {
		if got := re.MatchString(release); got != supported {
			t.Errorf("BUILD_EXCLUSIVE_KERNEL=%q matches %q: %v, want %v", expr, release, got, supported)
		}
	}
}

// headersKernel picks the kernel to build for: $KECHO_DKMS_KERNEL, else the
// newest release in /lib/modules with a build directory.
func headersKernel() (string, error) {
	if k := os.Getenv("KECHO_DKMS_KERNEL"); k != "" {
		if _, err := os.Stat(filepath.Join("/lib/modules", k, "build")); err != nil {
			return "", fmt.Errorf("KECHO_DKMS_KERNEL=%s: no headers: %w", k, err)
		}
		return k, nil
	}
	dirs, err := filepath.Glob("/lib/modules/*/build")
	if err != nil || len(dirs) == 0 {
		return "", fmt.Errorf("no /lib/modules/*/build: install linux-headers-amd64")
	}
	var releases []string
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			releases = append(releases, filepath.Base(filepath.Dir(d)))
		}
	}
	if len(releases) == 0 {
		return "", fmt.Errorf("every /lib/modules/*/build is a dangling link: install linux-headers-amd64")
	}
	sort.Slice(releases, func(i, j int) bool { return versionLess(releases[i], releases[j]) })
	return releases[len(releases)-1], nil
}

// versionLess orders kernel releases by their leading numeric fields.
func versionLess(a, b string) bool {
	num := regexp.MustCompile(`[0-9]+`)
	x, y := num.FindAllString(a, -1), num.FindAllString(b, -1)
	for i := 0; i < len(x) && i < len(y); i++ {
		p, _ := strconv.Atoi(x[i])
		q, _ := strconv.Atoi(y[i])
		if p != q {
			return p < q
		}
	}
	return len(x) < len(y)
}

// run runs a command and returns its combined output; failure fails the
// test with the command and its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, buf.String())
	}
	return buf.String(), nil
}

// copyTree copies the DKMS source files of src (not build outputs) to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	generated := regexp.MustCompile(`(\.o|\.ko|\.mod|\.mod\.c|\.cmd|\.symvers|\.order|\.log)$|^compat_gen\.h`)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.HasPrefix(d.Name(), ".") || generated.MatchString(d.Name()) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

func TestDKMSBuildInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		unmet(t, "needs root (dkms writes /usr/src, /var/lib/dkms and /lib/modules): sudo go test ./test/dkmshost/")
	}
	for _, tool := range []string{"dkms", "modinfo", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			unmet(t, "needs %s (`make deps` installs it): %v", tool, err)
		}
	}
	kernel, err := headersKernel()
	if err != nil {
		unmet(t, "needs an installed kernel with headers: %v", err)
	}
	// Installing another kecho version for this kernel would replace the
	// module a real kecho-dkms installed; refuse rather than damage it.
	if out, _ := runErr("dkms", "status", "-m", "kecho", "-k", kernel); strings.Contains(out, "installed") {
		unmet(t, "kecho is already installed through DKMS for %s; not touching it:\n%s", kernel, out)
	}

	version := fmt.Sprintf("0.0.0+dkmstest%d", os.Getpid())
	src := filepath.Join("/usr/src", "kecho-"+version)
	if _, err := os.Stat(src); err == nil {
		t.Fatalf("%s exists already", src)
	}
	t.Cleanup(func() {
		if out, err := runErr("dkms", "remove", "-m", "kecho", "-v", version, "--all"); err != nil {
			t.Logf("cleanup: %v", err)
		} else {
			t.Logf("cleanup: %s", strings.TrimSpace(out))
		}
		if err := os.RemoveAll(src); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if out, _ := runErr("dkms", "status", "-m", "kecho", "-v", version); strings.TrimSpace(out) != "" {
			t.Errorf("cleanup: DKMS still knows kecho/%s:\n%s", version, out)
		}
		if _, err := os.Stat(filepath.Join("/var/lib/dkms/kecho", version)); err == nil {
			t.Errorf("cleanup: /var/lib/dkms/kecho/%s is left behind", version)
		}
	})

	copyTree(t, filepath.Join(repoRoot(t), "dkms"), src)
	confPath := filepath.Join(src, "dkms.conf")
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	versionLine := regexp.MustCompile(`(?m)^PACKAGE_VERSION=.*$`)
	if !versionLine.Match(conf) {
		t.Fatalf("%s has no PACKAGE_VERSION line", confPath)
	}
	conf = versionLine.ReplaceAll(conf, []byte(`PACKAGE_VERSION="`+version+`"`))
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}

	kdir := filepath.Join("/lib/modules", kernel, "build")
	run(t, "dkms", "add", "-m", "kecho", "-v", version)
	if _, err := runErr("dkms", "build", "-m", "kecho", "-v", version, "-k", kernel, "--kernelsourcedir", kdir); err != nil {
		makeLog, _ := os.ReadFile(filepath.Join("/var/lib/dkms/kecho", version, kernel, "x86_64", "log", "make.log"))
		if len(makeLog) == 0 {
			makeLog, _ = os.ReadFile(filepath.Join("/var/lib/dkms/kecho", version, "build", "make.log"))
		}
		t.Fatalf("%v\nmake.log:\n%s", err, makeLog)
	}
	logs, _ := filepath.Glob(filepath.Join("/var/lib/dkms/kecho", version, "*", "*", "log", "make.log"))
	if len(logs) == 0 {
		logs, _ = filepath.Glob(filepath.Join("/var/lib/dkms/kecho", version, "build", "make.log"))
	}
	if len(logs) == 0 {
		t.Errorf("no make.log under /var/lib/dkms/kecho/%s to check for warnings", version)
	}
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "warning:") || strings.Contains(line, "error:") {
				t.Errorf("%s: %s", l, line)
			}
		}
	}
	run(t, "dkms", "install", "-m", "kecho", "-v", version, "-k", kernel, "--kernelsourcedir", kdir)

	status := run(t, "dkms", "status", "-m", "kecho", "-v", version, "-k", kernel)
	if !strings.Contains(status, "installed") {
		t.Fatalf("dkms status after install:\n%s", status)
	}

	ko := filepath.Join("/lib/modules", kernel, "updates", "dkms", "kecho.ko")
	if _, err := os.Stat(ko); err != nil {
		// Some DKMS versions compress the installed module.
		matches, _ := filepath.Glob(ko + ".*")
		if len(matches) == 0 {
			t.Fatalf("installed module not found: %v", err)
		}
		ko = matches[0]
	}
	vermagic := strings.TrimSpace(run(t, "modinfo", "-F", "vermagic", ko))
	if !strings.HasPrefix(vermagic, kernel+" ") {
		t.Errorf("%s: vermagic %q, want it to start with %q", ko, vermagic, kernel+" ")
	}
	if got := strings.TrimSpace(run(t, "modinfo", "-F", "version", ko)); got != version {
		t.Errorf("%s: version %q, want %q", ko, got, version)
	}
	for _, p := range []string{"port", "bind_addr", "log_packets", "max_pps"} {
		parms := run(t, "modinfo", "-F", "parm", ko)
		if !strings.Contains(parms, p+":") {
			t.Errorf("%s: no parameter %s in:\n%s", ko, p, parms)
		}
	}
	// The modules index for that kernel knows the installed module.
	if out := run(t, "modinfo", "-k", kernel, "-F", "filename", "kecho"); !strings.Contains(out, "/updates/dkms/kecho.ko") {
		t.Errorf("modinfo -k %s kecho resolves to %q, want the DKMS module", kernel, strings.TrimSpace(out))
	}
}
