package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/kecho-dev/kecho/test/matrix/internal/cli"
	"github.com/kecho-dev/kecho/test/matrix/internal/kmatrix"
	"github.com/kecho-dev/kecho/test/vm"
)

// TestMatrix builds kecho against every kernel in kernels.txt with that
// kernel's compiler (warning-free, right vermagic) and boots the "boot"
// rows in qemu with their own module, running the in-guest tests. Cold
// (downloads and two debootstrap chroots) it takes about 15 minutes here,
// warm the builds take seconds and the boots dominate.
//
// KECHO_MATRIX_ONLY=6.12,7.3 limits it to some series (or series/suite),
// KECHO_MATRIX_NO_BOOT=1 only builds.
func TestMatrix(t *testing.T) {
	if testing.Short() && !vm.Required() {
		t.Skip("downloads kernel packages, makes build chroots and boots VMs; run without -short as root, or `make matrix` / `make test`")
	}
	noBoot := os.Getenv("KECHO_MATRIX_NO_BOOT") == "1"
	miss := kmatrix.MissingTools()
	if !noBoot {
		if m := vm.Missing(); m != "" {
			miss = strings.TrimPrefix(miss+"; "+m, "; ")
		}
	}
	if miss != "" {
		msg := "kernel matrix needs " + miss + "; run as root after `make deps` (`make test` or `make matrix`)"
		vm.Unmet(t, msg)
	}
	var only []string
	for _, s := range strings.Split(os.Getenv("KECHO_MATRIX_ONLY"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			only = append(only, s)
		}
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	rows, err := cli.Run(context.Background(), cli.Options{Only: only, NoBoot: noBoot, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := kmatrix.WriteTable(&table, rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel matrix:\n%s", table.String())
	for _, r := range rows {
		t.Run(r.Entry.Name(), func(t *testing.T) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if !r.Build.OK {
				t.Fatalf("build for %s: %v (log %s)", r.Kernel.Release, r.Build.Err, r.LogFile)
			}
			if r.Entry.Boot && !noBoot {
				if r.Boot == nil {
					t.Fatal("marked boot in kernels.txt but not booted")
				}
				if !r.Boot.OK {
					t.Fatalf("boot of %s: %v", r.Kernel.Release, r.Boot.Err)
				}
			}
		})
	}
}

// testWriter sends the matrix's progress log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
