package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kecho-dev/kecho/test/matrix/internal/kmatrix"
)

// Releases of each series as Debian names them: bullseye/bookworm
// ("5.10.0-32-amd64"), trixie and backports ("6.12.117+deb13-amd64"),
// experimental ("7.3-amd64"), other flavours.
func releasesOf(series string) []string {
	return []string{series + ".0-32-amd64", series + ".117+deb13-amd64", series + ".4+deb13-cloud-amd64", series + "-amd64", series + ".0-1-rt-amd64"}
}

// TestDKMSSupportedRange checks dkms.conf's BUILD_EXCLUSIVE_KERNEL the way
// dkms applies it (bash =~): every series of kernels.txt is accepted, and
// kernels outside the supported 5.10-7.x range are skipped.
func TestDKMSSupportedRange(t *testing.T) {
	root, err := kmatrix.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tree, stub := kmatrix.ModuleTree(root)
	if stub {
		t.Logf("dkms/dkms.conf does not exist yet: checking the test stand-in %s", tree)
	}
	conf := filepath.Join(tree, "dkms.conf")
	re, err := kmatrix.BuildExclusiveKernel(conf)
	if err != nil {
		t.Fatal(err)
	}
	if re == "" {
		t.Fatalf("%s sets no BUILD_EXCLUSIVE_KERNEL: an unsupported kernel would break the upgrade instead of being skipped", conf)
	}
	es, err := kmatrix.ReadList("kernels.txt")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := kmatrix.ExecRunner{}
	for _, e := range es {
		for _, kver := range releasesOf(e.Series) {
			ok, err := kmatrix.DKMSAccepts(ctx, r, re, kver)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Errorf("BUILD_EXCLUSIVE_KERNEL=%q rejects %s (series %s is in kernels.txt line %d)", re, kver, e.Series, e.Line)
			}
		}
	}
	for _, kver := range []string{"4.19.0-27-amd64", "4.9.0-19-amd64", "5.4.0-1-amd64", "5.9.0-1-amd64", "5.1.0-1-amd64",
		"3.10.0-1160.el7.x86_64", "8.0.0-1-amd64", "8.0-amd64", "10.1.0-1-amd64", "15.10.0-1-amd64", "x6.1.0-1-amd64"} {
		ok, err := kmatrix.DKMSAccepts(ctx, r, re, kver)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Errorf("BUILD_EXCLUSIVE_KERNEL=%q accepts %s, outside the supported range", re, kver)
		}
	}
}
