package kmatrix

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeBooter struct{ specs []BootSpec }

func (b *fakeBooter) Boot(ctx context.Context, s BootSpec) BootResult {
	b.specs = append(b.specs, s)
	return BootResult{OK: true, Summary: "41 passed"}
}

// fakeArchive answers apt for one kernel per suite, as Debian lays them out.
func fakeArchive(t *testing.T, f *fakeRunner, suite, rel, ver, cc string) {
	hdr := "linux-headers-" + rel
	common := strings.TrimSuffix(hdr, "-amd64") + "-common"
	kb := "linux-kbuild-" + strings.TrimSuffix(rel, "-amd64")
	img := "linux-image-" + rel
	dir := "apt/" + suite + "/"
	f.on("apt-cache "+dir+" policy linux-headers-amd64", policy("linux-headers-amd64", ver))
	f.on("apt-cache "+dir+" show linux-headers-amd64=", "Package: linux-headers-amd64\nDepends: "+hdr+" (= "+ver+")\n")
	f.on("apt-cache "+dir+" policy "+hdr, policy(hdr, ver))
	f.on("apt-cache "+dir+" show "+hdr+"=", "Package: "+hdr+"\nDepends: "+common+" (= "+ver+"), "+kb+", "+cc+"\n")
	f.on("apt-cache "+dir+" policy "+img, policy(img, ver))
	f.on("apt-cache "+dir+" show "+img+"=", "Package: "+img+"\nDepends: kmod\n")
	for _, p := range []string{hdr, common, kb, img} {
		file := p + "_" + ver + "_amd64.deb"
		f.on("apt-get "+dir+" download --print-uris "+p+"="+ver, "'http://m/"+file+"' "+file+" 1 SHA256:0\n")
		f.onDo("apt-get "+dir+" -q download "+p+"="+ver, func(c Cmd) { os.WriteFile(filepath.Join(c.Dir, file), []byte(p), 0o644) })
	}
	// dpkg-deb -x of the headers writes the .config, of the image the
	// kernel and its modules.
	f.onDo("dpkg-deb -x "+hdr+"_", func(c Cmd) {
		d := filepath.Join(c.Args[2], "usr/src", hdr)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, ".config"), []byte(`CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-`+cc+` (Debian) x"`+"\n"), 0o644)
	})
	f.onDo("dpkg-deb -x "+img+"_", func(c Cmd) {
		os.MkdirAll(filepath.Join(c.Args[2], "boot"), 0o755)
		os.WriteFile(filepath.Join(c.Args[2], "boot", "vmlinuz-"+rel), nil, 0o644)
		os.MkdirAll(filepath.Join(c.Args[2], "usr/lib/modules", rel, "kernel"), 0o755)
	})
	f.on("dpkg-deb -x "+common, "")
	f.on("dpkg-deb -x "+kb, "")
	f.on("modinfo -F vermagic", "")
}

// Run resolves every line, builds host-suite kernels on the host and the
// others in their release's chroot (with the compilers of all its
// kernels), boots the boot rows with their own module, and a full run
// prunes cache entries it did not use.
func TestRun(t *testing.T) {
	cache := t.TempDir()
	list := filepath.Join(t.TempDir(), "kernels.txt")
	os.WriteFile(list, []byte("6.1 bookworm boot\n6.12 trixie boot\n7.3 trixie-backports\n"), 0o644)
	src := moduleSrc(t, true)
	f := newFake(t)
	f.on("apt-get update", "")
	fakeArchive(t, f, "bookworm", "6.1.0-57-amd64", "6.1.192-3", "gcc-12")
	fakeArchive(t, f, "trixie", "6.12.118+deb13-amd64", "6.12.118-1", "gcc-14")
	fakeArchive(t, f, "trixie-backports", "7.3.4+deb13-amd64", "7.3.4-1~bpo13+1", "gcc-14-for-host")
	f.on("depmod -b", "")
	ar := Archive{Mirror: "http://m/debian", SecurityMirror: "http://m/sec", Keyring: "/k.gpg"}
	// The trixie chroot is cached already, made for gcc-14.
	recipe := ChrootRecipe("trixie", []string{"gcc-14"}, ar)
	chroot := ChrootDir(cache, "trixie", recipe)
	os.MkdirAll(chroot, 0o755)
	os.WriteFile(filepath.Join(chroot, ".kecho-recipe"), []byte(recipe), 0o644)
	stale := []string{filepath.Join(cache, "kernels", "6.12.117+deb13-amd64_6.12.117-1"), filepath.Join(cache, "debs", "linux-image-6.12.117+deb13-amd64_6.12.117-1_amd64.deb"), filepath.Join(cache, "chroots", "bullseye-0123456789ab")}
	for _, p := range stale {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	f.on("gcc-12 --version", "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\n")
	f.on("gcc-14 --version", "gcc-14 (Debian 14.2.0-19) 14.2.0\n")
	var builds []string
	f.onDo("nice -n 10 make -j2", func(c Cmd) {
		line := fullLine(c)
		builds = append(builds, line)
		// The module copy is the argument after the tree.
		for i, a := range c.Args {
			if a == "kecho-matrix" {
				os.WriteFile(filepath.Join(c.Args[i+3], "kecho.ko"), []byte("ko"), 0o644)
			}
		}
	})
	for _, rel := range []string{"6.1.0-57-amd64", "6.12.118+deb13-amd64", "7.3.4+deb13-amd64"} {
		f.on("modinfo -F vermagic "+filepath.Join(cache, "work", rel, "kecho.ko"), rel+" SMP mod_unload \n")
	}
	b := &fakeBooter{}
	var seen []string
	rows, err := Run(context.Background(), Config{
		List: list, SrcDir: src, Version: "1.0", CacheDir: cache, Archive: ar, Run: f,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Booter: b, HostSuite: "bookworm",
		Installed: func(string) string { return "" },
		OnRow:     func(r Row) { seen = append(seen, r.Entry.Name()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(rows); err != nil {
		for _, r := range rows {
			t.Logf("%s: err=%v build=%v", r.Entry.Name(), r.Err, r.Build.Err)
		}
		t.Fatal(err)
	}
	if strings.Join(seen, " ") != "6.1/bookworm 6.12/trixie 7.3/trixie-backports" {
		t.Errorf("rows reported: %q", seen)
	}
	if len(builds) != 3 ||
		!strings.Contains(builds[0], "kecho-matrix / "+filepath.Join(cache, "kernels", "6.1.0-57-amd64_6.1.192-3")+" ") ||
		!strings.Contains(builds[1], "kecho-matrix "+chroot+" "+filepath.Join(cache, "kernels", "6.12.118+deb13-amd64_6.12.118-1")+" ") ||
		!strings.Contains(builds[2], "kecho-matrix "+chroot+" ") {
		t.Errorf("builds:\n%s", strings.Join(builds, "\n"))
	}
	if rows[0].Env != "host" || rows[1].Env != "chroot trixie" || rows[2].Env != "chroot trixie" {
		t.Errorf("envs %q %q %q", rows[0].Env, rows[1].Env, rows[2].Env)
	}
	if len(b.specs) != 2 || b.specs[0].Release != "6.1.0-57-amd64" || b.specs[1].Module != filepath.Join(cache, "work", "6.12.118+deb13-amd64", "kecho.ko") ||
		b.specs[1].Kernel != filepath.Join(cache, "kernels", "6.12.118+deb13-amd64_6.12.118-1", "boot", "vmlinuz-6.12.118+deb13-amd64") ||
		b.specs[1].ModulesDir != filepath.Join(cache, "kernels", "6.12.118+deb13-amd64_6.12.118-1", "usr/lib/modules", "6.12.118+deb13-amd64") {
		t.Errorf("boots: %+v", b.specs)
	}
	if rows[2].Boot != nil {
		t.Error("a row without \"boot\" was booted")
	}
	for _, c := range f.calls {
		if strings.Contains(c, "download linux-image-7.3") {
			t.Errorf("downloaded the image of a build-only row: %s", c)
		}
		if strings.Contains(c, "debootstrap") {
			t.Errorf("remade the cached chroot: %s", c)
		}
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("full run kept unused %s", p)
		}
	}
	if _, err := os.Stat(chroot); err != nil {
		t.Errorf("pruned the chroot in use: %v", err)
	}
	if _, err := os.Stat(rows[1].LogFile); err != nil || filepath.Dir(rows[1].LogFile) != filepath.Join(cache, "logs") {
		t.Errorf("build log %s: %v", rows[1].LogFile, err)
	}
}
