package kmatrix

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvCommand(t *testing.T) {
	c := Env{}.Command("/w", "make", "-C", "/w")
	if c.Name != "make" || strings.Join(c.Args, " ") != "-C /w" {
		t.Errorf("plain host build: %s", fullLine(c))
	}
	c = Env{Tree: "/"}.Command("/w", "make")
	if c.Name != "make" {
		t.Errorf("installed kernel needs no namespace: %s", fullLine(c))
	}
	c = Env{Tree: "/cache/k"}.Command("/w", "make", "-C", "/w")
	if c.Name != "unshare" || !matches([]string{"--mount", "--propagation private", "sh -ec", "kecho-matrix / /cache/k /w make -C /w"}, fullLine(c)) {
		t.Errorf("host build with a kernel tree: %s", fullLine(c))
	}
	if !strings.Contains(c.String(), "make -C /w (on the host with /cache/k)") || strings.Contains(c.String(), "mount") {
		t.Errorf("String() = %q", c.String())
	}
	e := Env{Chroot: "/cache/chroots/trixie-x", Tree: "/cache/k"}
	c = e.Command("/w", "make", "-C", e.SrcPath("/w"))
	if !matches([]string{"kecho-matrix /cache/chroots/trixie-x /cache/k /w make -C /build"}, fullLine(c)) {
		t.Errorf("chroot build: %s", fullLine(c))
	}
	for _, w := range []string{`lowerdir=$tree/$d:$root/$d`, `mount --bind "$src" "$root/build"`, `exec chroot "$root"`} {
		if !strings.Contains(nsScript, w) {
			t.Errorf("namespace script lacks %q", w)
		}
	}
}

func TestWarnings(t *testing.T) {
	log := "  CC [M]  /b/main.o\n/b/main.c:3:1: warning: unused variable 'x' [-Wunused-variable]\n" +
		"WARNING: modpost: missing MODULE_LICENSE() in /b/kecho.o\nSkipping BTF generation for /b/kecho.ko due to unavailability of vmlinux\n"
	w := Warnings(log)
	if len(w) != 2 || !strings.Contains(w[0], "unused variable") || !strings.HasPrefix(w[1], "WARNING: modpost") {
		t.Errorf("Warnings = %q", w)
	}
	if w := Warnings("  LD [M]  /b/kecho.ko\n  BTF [M] /b/kecho.ko\n"); len(w) != 0 {
		t.Errorf("clean log: %q", w)
	}
}

// testTree is an extracted kernel with a .config, for release rel.
func testTree(t *testing.T, rel, cc string) *Tree {
	root := t.TempDir()
	k := &Kernel{Entry: Entry{Series: "6.12", Suite: "trixie"}, Release: rel, Version: "6.12.117-1", Compiler: cc}
	tr := &Tree{Root: root, K: k}
	hd := filepath.Join(root, tr.HeadersDir())
	os.MkdirAll(hd, 0o755)
	os.WriteFile(filepath.Join(hd, ".config"), []byte("CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\nCONFIG_X=y\n"), 0o644)
	return tr
}

func moduleSrc(t *testing.T, makefile bool) string {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "Kbuild"), []byte("obj-m := kecho.o\n"), 0o644)
	if makefile {
		os.WriteFile(filepath.Join(src, "Makefile"), []byte("module:\n"), 0o644)
	}
	return src
}

func TestBuild(t *testing.T) {
	tr := testTree(t, "6.12.117+deb13-amd64", "gcc-14")
	if got, err := tr.CompilerText(); err != nil || got != "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0" {
		t.Errorf("CompilerText = %q, %v", got, err)
	}
	env := Env{Chroot: "/c", Tree: tr.Root}
	for _, c := range []struct {
		name     string
		makefile bool
		log      string
		vermagic string
		makeErr  bool
		want     string // "" = OK
	}{
		{name: "ok", makefile: true, log: "  LD [M]  /build/kecho.ko\n", vermagic: "6.12.117+deb13-amd64 SMP preempt mod_unload modversions "},
		{name: "kbuild only", log: "  LD [M]  /build/kecho.ko\n", vermagic: "6.12.117+deb13-amd64 SMP mod_unload "},
		{name: "warning", makefile: true, log: "/build/socket.c:12:2: warning: 'kernel_bind' is deprecated\n", vermagic: "6.12.117+deb13-amd64 SMP ", want: "build has 1 warning(s): /build/socket.c:12:2: warning: 'kernel_bind' is deprecated"},
		{name: "error", makefile: true, log: "/build/socket.c:12:2: error: implicit declaration of function 'skb_recv_udp'\n", makeErr: true, want: "build failed"},
		{name: "vermagic", makefile: true, vermagic: "6.1.0-57-amd64 SMP ", want: `kecho.ko has vermagic "6.1.0-57-amd64 SMP", want 6.12.117+deb13-amd64`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t)
			src := moduleSrc(t, c.makefile)
			work := filepath.Join(t.TempDir(), "work")
			f.on("unshare kecho-matrix /c "+tr.Root+" "+work+" gcc-14 --version", "gcc-14 (Debian 14.2.0-19) 14.2.0\nCopyright\n")
			mk := "unshare kecho-matrix /c " + tr.Root + " " + work + " nice -n 10 make -j2 -C /build KDIR=/usr/src/linux-headers-6.12.117+deb13-amd64 KECHO_VERSION=1.2.3"
			if !c.makefile {
				mk = "unshare kecho-matrix /c " + tr.Root + " " + work + " nice -n 10 make -j2 -C /usr/src/linux-headers-6.12.117+deb13-amd64 M=/build KECHO_VERSION=1.2.3 modules"
			}
			if c.makeErr {
				f.onErr(mk, c.log)
			} else {
				r := f.on(mk, c.log)
				r.do = func(Cmd) { os.WriteFile(filepath.Join(work, "kecho.ko"), bytes.Repeat([]byte{1}, 3000), 0o644) }
			}
			f.on("modinfo -F vermagic "+filepath.Join(work, "kecho.ko"), c.vermagic+"\n")
			res := Build(context.Background(), f, env, tr, src, work, "1.2.3")
			if c.want == "" {
				if !res.OK || res.Err != nil || res.Size != 3000 || res.Compiler != "gcc-14 (Debian 14.2.0-19) 14.2.0" || res.Duration <= 0 {
					t.Errorf("got %+v", res)
				}
				return
			}
			if res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), c.want) {
				t.Errorf("got OK=%v err=%v, want an error containing %q", res.OK, res.Err, c.want)
			}
		})
	}
}

func TestBuildWithoutCompiler(t *testing.T) {
	tr := testTree(t, "5.10.0-32-amd64", "gcc-10")
	f := newFake(t)
	f.onErr("gcc-10 --version", "env: 'gcc-10': No such file or directory")
	res := Build(context.Background(), f, Env{}, tr, moduleSrc(t, true), filepath.Join(t.TempDir(), "w"), "1")
	if res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), "the kernel's compiler gcc-10 is not in the build environment") {
		t.Errorf("got %+v", res)
	}
}

func TestCCMajor(t *testing.T) {
	for in, want := range map[string]string{
		"gcc-10 (Debian 10.2.1-6) 10.2.1 20210110":             "10",
		"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0":    "14",
		"gcc (Debian 12.2.0-14) 12.2.0":                        "12",
		"Debian clang version 19.1.7 (3+b1)":                   "",
		"x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0":     "16",
		"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0":             "12",
		"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 1": "12",
	} {
		if got := CCMajor(in); got != want {
			t.Errorf("CCMajor(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	ok := Row{
		Entry:  Entry{Series: "6.12", Suite: "trixie", Boot: true},
		Kernel: &Kernel{Release: "6.12.117+deb13-amd64", Compiler: "gcc-14"},
		Build:  BuildResult{OK: true, Size: 2 << 20, Duration: 8200 * time.Millisecond, Compiler: "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"},
		Boot:   &BootResult{OK: true, Summary: "14 passed", Duration: 95 * time.Second},
	}
	bad := Row{
		Entry:   Entry{Series: "5.10", Suite: "bullseye", Boot: true},
		Kernel:  &Kernel{Release: "5.10.0-32-amd64", Compiler: "gcc-10"},
		Build:   BuildResult{Err: errors.New("build failed: exit status 2"), Duration: time.Second, Compiler: "gcc-10 (Debian 10.2.1-6) 10.2.1 20210110"},
		LogFile: "/c/logs/5.10.0-32-amd64.build.log",
	}
	unresolved := Row{Entry: Entry{Series: "7.2", Suite: "sid"}, Err: errors.New("sid serves no 7.2")}
	var b bytes.Buffer
	if err := WriteTable(&b, []Row{ok, bad, unresolved}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	for i, want := range [][]string{
		{"SERIES", "KERNEL", "SUITE", "COMPILER", "BUILD", "SIZE", "TIME", "BOOT"},
		{"6.12", "6.12.117+deb13-amd64", "trixie", "gcc-14 14.2.0-19", "ok", "2048 KiB", "8.2s", "pass (14 passed)", "95.0s"},
		{"5.10", "5.10.0-32-amd64", "bullseye", "gcc-10 10.2.1-6", "FAIL", "-", "1.0s", "-"},
		{"7.2", "?", "sid", "-", "FAIL"},
	} {
		if !matches(want, lines[i]) {
			t.Errorf("line %d = %q, want %q", i, lines[i], want)
		}
	}
	for _, want := range []string{"5.10/bullseye: build failed: exit status 2 (log: /c/logs/5.10.0-32-amd64.build.log)", "7.2/sid: sid serves no 7.2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if err := Check([]Row{ok}); err != nil {
		t.Errorf("Check(ok) = %v", err)
	}
	if err := Check([]Row{ok, bad, unresolved}); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "5.10/bullseye, 7.2/sid") {
		t.Errorf("Check = %v", err)
	}
	failedBoot := ok
	failedBoot.Boot = &BootResult{Err: errors.New("guest: TestFlood failed")}
	if failedBoot.OK() {
		t.Error("a failed boot counts as OK")
	}
}
