package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeRunner answers the commands it expects and fails the test on any
// other.
type fakeRunner struct {
	t       *testing.T
	answers map[string]func(c Cmd) ([]byte, error) // by command name (base)
	calls   []string
}

func (f *fakeRunner) Run(_ context.Context, c Cmd) ([]byte, error) {
	f.calls = append(f.calls, c.String())
	if h, ok := f.answers[filepath.Base(c.Name)]; ok {
		return h(c)
	}
	f.t.Errorf("unexpected command: %s", c)
	return nil, fmt.Errorf("unexpected command %s", c)
}

// cpioEntry is one record read back from a newc archive.
type cpioEntry struct {
	mode       uint32
	rmaj, rmin uint32
	data       []byte
}

// readNewc parses a newc archive (the kernel's initramfs format).
func readNewc(t *testing.T, b []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad newc header at %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, nameSize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(nameSize)-1])
		dataOff := align(off + 110 + int(nameSize))
		data := b[dataOff : dataOff+int(size)]
		off = align(dataOff + int(size))
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = cpioEntry{mode: mode, rmaj: rmaj, rmin: rmin, data: data}
	}
}

func TestArchiveNewc(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "prog")
	if err := os.WriteFile(host, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := NewArchive()
	for _, err := range []error{
		a.File("/usr/bin/prog", host),
		a.Bytes("/etc/odd", []byte("12345"), 0o600),
		a.Bytes("/empty", nil, 0o644),
		a.Symlink("/bin/sh", "/bin/busybox"),
		a.CharDev("/dev/console", 0o600, 5, 1),
		a.Dir("/tmp", 0o1777),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Bytes("relative", nil, 0o644); err == nil {
		t.Error("a relative path was accepted")
	}
	if err := a.Bytes("/etc/odd/child", nil, 0o644); err == nil {
		t.Error("a file below a regular file was accepted")
	}
	var gz bytes.Buffer
	if err := a.WriteGzip(&gz); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, raw)
	want := map[string]uint32{
		"usr": modeDir | 0o755, "usr/bin": modeDir | 0o755, "usr/bin/prog": modeRegular | 0o755,
		"etc": modeDir | 0o755, "etc/odd": modeRegular | 0o600, "empty": modeRegular | 0o644,
		"bin": modeDir | 0o755, "bin/sh": modeSymlink | 0o777, "dev": modeDir | 0o755,
		"dev/console": modeCharDev | 0o600, "tmp": modeDir | 0o1777,
	}
	if len(got) != len(want) {
		t.Errorf("archive has %d entries, want %d: %v", len(got), len(want), keys(got))
	}
	for name, mode := range want {
		if got[name].mode != mode {
			t.Errorf("%s: mode %o, want %o", name, got[name].mode, mode)
		}
	}
	if string(got["usr/bin/prog"].data) != "#!/bin/sh\necho hi\n" || string(got["etc/odd"].data) != "12345" {
		t.Error("file contents differ")
	}
	if string(got["bin/sh"].data) != "/bin/busybox" {
		t.Errorf("symlink target %q", got["bin/sh"].data)
	}
	if c := got["dev/console"]; c.rmaj != 5 || c.rmin != 1 {
		t.Errorf("console device %d:%d", c.rmaj, c.rmin)
	}
	// Parents come before children.
	paths := a.Paths()
	pos := map[string]int{}
	for i, p := range paths {
		pos[p] = i
	}
	for _, p := range paths {
		if parent := filepath.Dir(p); parent != "/" && pos[parent] > pos[p] {
			t.Errorf("%s is written before its parent", p)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// guestOutput is what a guest run with one binary and a script prints.
const guestOutput = "KECHO-VM: begin 6.1.0-57-amd64\r\n" +
	"KECHO-VM: run guest.test\n" +
	"\x16=== RUN   TestA\n" +
	"    a_test.go:10: hello from A\n" +
	"\x16--- PASS: TestA (0.10s)\n" +
	"\x16=== RUN   TestB\n" +
	"\x16=== RUN   TestB/sub1\n" +
	"    b_test.go:20: sub1 says --- FAIL: not a frame\n" +
	"\x16--- FAIL: TestB/sub1 (0.01s)\n" +
	"\x16=== RUN   TestB/sub2\n" +
	"\x16    --- SKIP: TestB/sub2 (0.00s)\n" +
	"    b_test.go:30: no ipv6 here\n" +
	"\x16=== NAME  TestB\n" +
	"    b_test.go:40: after the subtests\n" +
	"\x16--- FAIL: TestB (0.20s)\n" +
	"\x16=== RUN   TestC\n" +
	"panic: boom\n" +
	"\x16FAIL\n" +
	"KECHO-VM: exit guest.test 2\n" +
	"script line\n" +
	"KECHO-VM: script-exit 0\n" +
	"KECHO-VM: done\n"

func TestParseGuestOutput(t *testing.T) {
	bins, done, scriptExit, other := ParseGuestOutput(guestOutput)
	if !done || scriptExit != 0 || !reflect.DeepEqual(other, []string{"script line"}) {
		t.Fatalf("done=%v scriptExit=%d other=%q", done, scriptExit, other)
	}
	if len(bins) != 1 || bins[0].Name != "guest.test" || bins[0].Exit != 2 {
		t.Fatalf("binaries: %+v", bins)
	}
	var got []string
	for _, gt := range bins[0].AllTests() {
		got = append(got, fmt.Sprintf("%s=%s", gt.Name, gt.Status))
	}
	want := []string{"TestA=pass", "TestB=fail", "TestB/sub1=fail", "TestB/sub2=skip", "TestC="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tests %q, want %q", got, want)
	}
	tests := map[string]*GuestTest{}
	for _, gt := range bins[0].AllTests() {
		tests[gt.Name] = gt
	}
	if o := tests["TestA"].Output; len(o) != 1 || !strings.Contains(o[0], "hello from A") {
		t.Errorf("TestA output %q", o)
	}
	if o := tests["TestB/sub1"].Output; len(o) != 1 || !strings.Contains(o[0], "not a frame") {
		t.Errorf("TestB/sub1 output %q (an unframed --- FAIL is output)", o)
	}
	if r := skipReason(tests["TestB/sub2"].Output); r != "b_test.go:30: no ipv6 here" {
		t.Errorf("skip reason %q", r)
	}
	if o := tests["TestB"].Output; len(o) != 1 || !strings.Contains(o[0], "after the subtests") {
		t.Errorf("TestB output %q", o)
	}
	if o := tests["TestC"].Output; len(o) != 1 || o[0] != "panic: boom" {
		t.Errorf("TestC output %q", o)
	}
	if tests["TestA"].Elapsed != "0.10s" {
		t.Errorf("elapsed %q", tests["TestA"].Elapsed)
	}
}

func TestParseGuestOutputUnfinished(t *testing.T) {
	bins, done, scriptExit, _ := ParseGuestOutput("KECHO-VM: run guest.test\n\x16=== RUN   TestA\n")
	if done || scriptExit != -1 || len(bins) != 1 || bins[0].Exit != -1 {
		t.Fatalf("done=%v scriptExit=%d bins=%+v", done, scriptExit, bins)
	}
	res := &Result{Binaries: bins, ScriptExit: scriptExit}
	if !res.Failed() {
		t.Error("an unfinished run does not count as failed")
	}
	if p := res.Problems(); len(p) != 2 || !strings.Contains(p[0], "did not finish") {
		t.Errorf("problems %q", p)
	}
}

func TestSplats(t *testing.T) {
	log := strings.Join([]string{
		"[    0.000000] Linux version 6.1.0-57-amd64",
		"[    4.362357] kecho: loading out-of-tree module taints kernel.",
		`[    5.000000] kecho: 127.0.0.1:40000 len 20 "BUG: WARNING: Oops"`,
		`[    5.000001] kecho: [::1]:40000 len 12 "Call Trace:" dropped: loop`,
		"[    6.000000] ------------[ cut here ]------------",
		"[    6.000001] WARNING: CPU: 1 PID: 42 at kecho/socket.c:100 kecho_work+0x10/0x20 [kecho]",
		"[    6.000002] Call Trace:",
		"[    7.000000] BUG: scheduling while atomic: kworker/0:1/33/0x00000002",
		"[    8.000000] refcount_t: underflow; use-after-free.",
		"[    9.000000] list_add corruption. prev->next should be next",
		"[   10.000000] INFO: task rmmod:99 blocked for more than 60 seconds.",
		"[   11.000000] general protection fault, probably for non-canonical address",
		"[   12.000000] BUG kmalloc-64 (Tainted: G   O): Poison overwritten",
		"[   13.000000] WARNING: possible circular locking dependency detected",
		"[   14.000000] rcu: INFO: rcu_sched self-detected stall on CPU",
		"[   15.000000] kecho: stopped",
	}, "\r\n")
	got := Splats(log)
	if len(got) != 9 {
		t.Errorf("%d splat lines, want 9:\n%s", len(got), strings.Join(got, "\n"))
	}
	for _, l := range got {
		if strings.Contains(l, `len 20 "`) || strings.Contains(l, "taints kernel") || strings.Contains(l, "stopped") {
			t.Errorf("false positive: %s", l)
		}
	}
	if n := Notices(log); len(n) != 1 || !strings.Contains(n[0], "stall") {
		t.Errorf("notices %q", n)
	}
	clean := "[    1.0] Run /init as init process\n[    2.0] kecho: serving UDP echo on 0.0.0.0 port 5555\n"
	if s := Splats(clean); len(s) != 0 {
		t.Errorf("clean log has splats: %q", s)
	}
}

func TestVersionLess(t *testing.T) {
	rels := []string{"6.1.0-9-amd64", "5.10.0-30-amd64", "6.12.1+deb13-amd64", "6.1.0-57-amd64", "6.1.0-10-amd64", "7.2.0-1-amd64"}
	sort.Slice(rels, func(i, j int) bool { return versionLess(rels[i], rels[j]) })
	want := []string{"5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-57-amd64", "6.12.1+deb13-amd64", "7.2.0-1-amd64"}
	if !reflect.DeepEqual(rels, want) {
		t.Errorf("sorted %q, want %q", rels, want)
	}
}

// fakeKernelTree lays out a Debian-like kernel tree under root.
func fakeKernelTree(t *testing.T, root, rel string, headers bool) {
	t.Helper()
	md := filepath.Join(root, "lib/modules", rel)
	files := map[string]string{
		"boot/vmlinuz-" + rel:                                  "kernel",
		"boot/config-" + rel:                                   "CONFIG_RD_GZIP=y\n# CONFIG_RD_XZ is not set\nCONFIG_VETH=m\n",
		"lib/modules/" + rel + "/modules.order":                "kernel/drivers/net/veth.ko\nkernel/net/a.ko.xz\nkernel/net/b-c.ko.zst\nkernel/net/d.ko.gz\n",
		"lib/modules/" + rel + "/modules.builtin":              "kernel/net/ipv6/ipv6.ko\n",
		"lib/modules/" + rel + "/modules.builtin.modinfo":      "",
		"lib/modules/" + rel + "/modules.dep":                  "kernel/drivers/net/veth.ko:\nkernel/net/a.ko.xz: kernel/net/b-c.ko.zst kernel/net/d.ko.gz\nkernel/net/b-c.ko.zst: kernel/net/d.ko.gz\nkernel/net/d.ko.gz:\n",
		"lib/modules/" + rel + "/kernel/drivers/net/veth.ko":   "veth",
		"lib/modules/" + rel + "/kernel/net/a.ko.xz":           "a",
		"lib/modules/" + rel + "/kernel/net/b-c.ko.zst":        "b",
		"usr/src/linux-headers-" + rel + "/include/.keep":      "",
		"usr/src/linux-headers-" + rel + "/scripts/Makefile.x": "",
	}
	if headers {
		files["usr/src/linux-headers-"+rel+"/Makefile"] = "all:\n"
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("d-module"))
	zw.Close()
	if err := os.WriteFile(filepath.Join(md, "kernel/net/d.ko.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The build link is absolute, as on the system the kernel belongs to.
	if err := os.Symlink("/usr/src/linux-headers-"+rel, filepath.Join(md, "build")); err != nil {
		t.Fatal(err)
	}
}

func TestKernelFromRoot(t *testing.T) {
	root := t.TempDir()
	fakeKernelTree(t, root, "6.1.0-57-amd64", true)
	fakeKernelTree(t, root, "6.12.9-amd64", true)
	fakeKernelTree(t, root, "7.2.0-1-amd64", false) // newest, but no headers

	t.Setenv(EnvKernelRoot, root)
	t.Setenv(EnvKernelRelease, "")
	k, err := DefaultKernel()
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.12.9-amd64" {
		t.Errorf("default kernel %s, want the newest with headers, 6.12.9-amd64", k.Release)
	}
	if k.Headers != filepath.Join(root, "usr/src/linux-headers-6.12.9-amd64") {
		t.Errorf("headers %s (the absolute build link must resolve inside root)", k.Headers)
	}
	if k.Image != filepath.Join(root, "boot/vmlinuz-6.12.9-amd64") || k.Config == "" {
		t.Errorf("image %s config %s", k.Image, k.Config)
	}
	cfg, err := k.KernelConfig()
	if err != nil || cfg["CONFIG_RD_GZIP"] != "y" || cfg["CONFIG_VETH"] != "m" {
		t.Errorf("config %v %v", cfg, err)
	}

	t.Setenv(EnvKernelRelease, "7.2.0-1-amd64")
	k, err = DefaultKernel()
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "7.2.0-1-amd64" || k.Headers != "" {
		t.Errorf("chosen kernel %+v, want 7.2.0-1-amd64 without headers", k)
	}
	if _, err := KernelFromRoot(root, "9.9.9"); err == nil {
		t.Error("a missing kernel was found")
	}
}

func TestModuleClosure(t *testing.T) {
	root := t.TempDir()
	fakeKernelTree(t, root, "6.1.0-57-amd64", true)
	md, err := readModuleDeps(filepath.Join(root, "lib/modules/6.1.0-57-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := md.closure([]string{"a", "veth", "ipv6", "b_c"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/net/d.ko.gz", "kernel/net/b-c.ko.zst", "kernel/net/a.ko.xz", "kernel/drivers/net/veth.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("closure %q, want %q (dependencies first, built-ins left out)", got, want)
	}
	if _, err := md.closure([]string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown module: %v", err)
	}
}

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibzstd.so.1 => /lib/x86_64-linux-gnu/libzstd.so.1 (0x00007f3e)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3c)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f3a)\n"
	got := parseLdd(out)
	want := []string{"/lib/x86_64-linux-gnu/libzstd.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("libs %q, want %q", got, want)
	}
}

func TestInitScriptAndProfile(t *testing.T) {
	s := string(initScript([]guestBinary{{name: "guest.test"}, {name: "daemon.test"}}, []string{"-test.run", "TestA|TestB"}, 90*time.Second))
	for _, want := range []string{
		"mount -t proc proc /proc", "mount -t devtmpfs devtmpfs /dev", "mount -t devpts devpts /dev/pts",
		"mount -t tmpfs tmpfs /tmp", "ip link set lo up", "exec </dev/null >/dev/ttyS1 2>&1",
		"echo 'KECHO-VM: run guest.test'",
		"/tests/guest.test -test.v=test2json -test.timeout=1m30s '-test.run' 'TestA|TestB'",
		`echo "KECHO-VM: exit daemon.test $?"`, "poweroff -f", markDone,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("/init lacks %q:\n%s", want, s)
		}
	}
	if strings.Index(s, "guest.test") > strings.Index(s, "daemon.test") {
		t.Error("binaries out of order")
	}
	p := string(guestProfile())
	for _, want := range []string{"modprobe() { /sbin/modprobe \"$@\"; }", "ip() { /usr/sbin/ip \"$@\"; }", "export PATH=" + GuestPath} {
		if !strings.Contains(p, want) {
			t.Errorf("profile lacks %q:\n%s", want, p)
		}
	}
	if got := string(envFile(map[string]string{"B": "it's", "A": "1"})); got != "export A='1'\nexport B='it'\\''s'\n" {
		t.Errorf("env file %q", got)
	}
}

// TestBuildArchive assembles an initramfs from a fake kernel tree with a
// runner that knows only busybox --list-full, ldd and depmod.
func TestBuildArchive(t *testing.T) {
	root := t.TempDir()
	rel := "6.1.0-57-amd64"
	fakeKernelTree(t, root, rel, true)
	k, err := KernelFromRoot(root, rel)
	if err != nil {
		t.Fatal(err)
	}
	tools := t.TempDir()
	mk := func(name, content string) string {
		p := filepath.Join(tools, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busybox := mk("busybox", "busybox")
	kmod := mk("kmod", "kmod")
	ip := mk("ip", "ip")
	lib := mk("libfoo.so.1", "lib")
	testBin := mk("guest.test", "test")
	extra := mk("kechod", "daemon")
	var depmodArgs []string
	r := &fakeRunner{t: t, answers: map[string]func(Cmd) ([]byte, error){
		"busybox": func(Cmd) ([]byte, error) { return []byte("bin/sh\nbin/ls\nsbin/ip\nsbin/modprobe\nusr/bin/awk\n"), nil },
		"depmod": func(c Cmd) ([]byte, error) {
			depmodArgs = c.Args
			return nil, os.WriteFile(filepath.Join(c.Args[1], "lib/modules", rel, "modules.dep"), []byte("generated"), 0o644)
		},
	}}
	resolved := map[string]bool{}
	a, err := buildArchive(context.Background(), initramfsInput{
		kernel:      k,
		kmods:       []string{"veth", "a"},
		tests:       []guestBinary{{name: "guest.test", hostPath: testBin}},
		extraFiles:  map[string]string{"/usr/bin/kechod": extra},
		init:        []byte("#!/bin/sh\n"),
		workDir:     t.TempDir(),
		busybox:     busybox,
		hostRunner:  r,
		depmodTool:  "/usr/sbin/depmod",
		kmodTool:    kmod,
		ipTool:      ip,
		libResolver: func(_ context.Context, bin string) ([]string, error) { resolved[bin] = true; return []string{lib}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(depmodArgs[:1], []string{"-b"}) || depmodArgs[2] != rel {
		t.Errorf("depmod args %q", depmodArgs)
	}
	if !resolved[kmod] || !resolved[ip] || resolved[extra] {
		t.Errorf("libraries resolved for %v (want kmod and ip; kechod is not an ELF)", resolved)
	}
	md := "/lib/modules/" + rel
	for _, p := range []string{
		"/init", "/bin/busybox", "/bin/sh", "/bin/ls", "/usr/bin/awk", "/usr/bin/kmod", "/usr/sbin/ip",
		"/sbin/modprobe", "/sbin/insmod", "/sbin/rmmod", "/sbin/lsmod", "/sbin/modinfo", "/sbin/depmod",
		lib, "/tests/guest.test", "/usr/bin/kechod", "/dev/console", GuestConfDir + "/env",
		md + "/modules.order", md + "/modules.builtin", md + "/modules.dep",
		md + "/kernel/drivers/net/veth.ko", md + "/kernel/net/a.ko.xz", md + "/kernel/net/b-c.ko.zst", md + "/kernel/net/d.ko",
	} {
		if !a.Has(p) {
			t.Errorf("initramfs lacks %s", p)
		}
	}
	if a.Has("/sbin/ip") || a.Has(md+"/kernel/net/d.ko.gz") {
		t.Error("busybox's ip or a gzip'd module made it into the initramfs")
	}
	var buf bytes.Buffer
	if err := a.WriteCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	if e := got["sbin/modprobe"]; e.mode&0o170000 != modeSymlink || string(e.data) != "/usr/bin/kmod" {
		t.Errorf("modprobe is %o -> %q, want a link to the real kmod", e.mode, e.data)
	}
	if string(got[strings.TrimPrefix(md, "/")+"/kernel/net/d.ko"].data) != "d-module" {
		t.Error("the gzip'd module was not decompressed")
	}
	if string(got[strings.TrimPrefix(md, "/")+"/modules.dep"].data) != "generated" {
		t.Error("modules.dep is not depmod's")
	}
}

// TestCopyModuleTreeLeavesOutBuildOutputs: a copy of a tree that was
// built in (as dkms/ is after `make module`) holds only the sources, with
// their modes, so no build starts from another kernel's leftovers.
func TestCopyModuleTreeLeavesOutBuildOutputs(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "w")
	for _, f := range []string{"Makefile", "Kbuild", "main.c", "kecho.h", "dkms.conf", "compat/gen.sh", "compat/base.c",
		"main.o", "kecho.ko", "kecho.mod", "kecho.mod.c", ".main.o.cmd", "Module.symvers", "modules.order", "compat_gen.h", ".compat/x", "compat/base.o"} {
		os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755)
		os.WriteFile(filepath.Join(src, f), []byte(f), 0o644)
	}
	os.Chmod(filepath.Join(src, "compat/gen.sh"), 0o755)
	if err := CopyModuleTree(src, dst); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.Walk(dst, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			r, _ := filepath.Rel(dst, p)
			got = append(got, r)
		}
		return nil
	})
	if want := "Kbuild Makefile compat/base.c compat/gen.sh dkms.conf kecho.h main.c"; strings.Join(got, " ") != want {
		t.Errorf("copied %q, want %q", got, want)
	}
	if st, err := os.Stat(filepath.Join(dst, "compat/gen.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("gen.sh mode lost: %v %v", st, err)
	}
}

func TestCopyTreeAndCacheKey(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"Kbuild": "obj-m := kecho.o\n", "main.c": "int x;\n", "compat/probe.c": "",
		"main.o": "obj", "kecho.ko": "ko", ".main.o.cmd": "", "compat_gen.h": "#define HAVE_X 1\n", "Module.symvers": "",
	}
	for p, c := range files {
		full := filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := CopyModuleTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for p := range files {
		_, err := os.Stat(filepath.Join(dst, p))
		if want := !isBuildOutput(filepath.Base(p)); (err == nil) != want {
			t.Errorf("%s copied=%v, want %v", p, err == nil, want)
		}
	}
	k := Kernel{Release: "6.1.0-57-amd64", Headers: t.TempDir()}
	key1, err := moduleCacheKey(k, src, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	// Build outputs do not change the key; sources, version and kernel do.
	os.WriteFile(filepath.Join(src, "main.o"), []byte("other obj"), 0o644)
	if key, _ := moduleCacheKey(k, src, "0.1.0"); key != key1 {
		t.Error("a build output changed the cache key")
	}
	if key, _ := moduleCacheKey(k, src, "0.2.0"); key == key1 {
		t.Error("the version does not change the cache key")
	}
	k2 := k
	k2.Release = "6.1.0-58-amd64"
	if key, _ := moduleCacheKey(k2, src, "0.1.0"); key == key1 {
		t.Error("the kernel release does not change the cache key")
	}
	os.WriteFile(filepath.Join(src, "main.c"), []byte("int y;\n"), 0o644)
	if key, _ := moduleCacheKey(k, src, "0.1.0"); key == key1 {
		t.Error("a source change does not change the cache key")
	}
}

func TestBuildModuleCommands(t *testing.T) {
	k := Kernel{Release: "6.1.0-57-amd64", Headers: "/usr/src/linux-headers-6.1.0-57-amd64"}
	for _, tc := range []struct {
		name     string
		makefile bool
		want     string
	}{
		{"dkms tree with Makefile", true, "make -j2 -C %s/kecho-src KDIR=/usr/src/linux-headers-6.1.0-57-amd64 KVER=6.1.0-57-amd64"},
		{"bare Kbuild tree", false, "make -j2 -C /usr/src/linux-headers-6.1.0-57-amd64 M=%s/kecho-src KECHO_VERSION=0.1.0 modules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, work := t.TempDir(), t.TempDir()
			os.WriteFile(filepath.Join(src, "Kbuild"), []byte("obj-m := kecho.o\n"), 0o644)
			if tc.makefile {
				os.WriteFile(filepath.Join(src, "Makefile"), []byte("all:\n"), 0o644)
			}
			var got Cmd
			r := &fakeRunner{t: t, answers: map[string]func(Cmd) ([]byte, error){
				"make": func(c Cmd) ([]byte, error) {
					got = c
					return nil, os.WriteFile(filepath.Join(work, "kecho-src", "kecho.ko"), []byte("ko"), 0o644)
				},
			}}
			ko, err := BuildModule(context.Background(), r, k, src, "0.1.0", work)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tc.want, "-j2", fmt.Sprintf("-j%d", min(2, numCPU())))
			if got.String() != fmt.Sprintf(want, work) {
				t.Errorf("command %q, want %q", got.String(), fmt.Sprintf(want, work))
			}
			if !reflect.DeepEqual(got.Env, []string{"KECHO_VERSION=0.1.0"}) {
				t.Errorf("env %q", got.Env)
			}
			if ko != filepath.Join(work, "kecho-src", "kecho.ko") {
				t.Errorf("module %s", ko)
			}
		})
	}
	if _, err := BuildModule(context.Background(), &fakeRunner{t: t}, Kernel{Release: "x"}, t.TempDir(), "1", t.TempDir()); err == nil {
		t.Error("a kernel without headers built")
	}
}
