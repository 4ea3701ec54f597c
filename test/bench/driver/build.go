package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kecho-dev/kecho/test/vm"
)

// CPrograms are the C sources in test/bench/cecho, each one static program.
var CPrograms = []string{"cecho", "sink", "loadgen"}

// GoPrograms are the guest's Go programs: guest path -> package.
var GoPrograms = map[string]string{
	GuestBinDir + "/guestrun": "./test/bench/guestrun",
	GuestBinDir + "/goecho":   "./test/bench/goecho",
	"/usr/bin/kechod":         "./cmd/kechod",
}

// GuestBinDir is where the benchmark's programs live in the guest.
const GuestBinDir = "/usr/lib/kecho-bench"

// CFlags are the flags the C programs are compiled with.
var CFlags = []string{"-O2", "-static", "-Wall", "-Wextra", "-Werror"}

// BuildC compiles each of CPrograms from srcDir (test/bench/cecho) into
// outDir with gcc and returns guest path -> host path.
func BuildC(ctx context.Context, r vm.Runner, srcDir, outDir string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range CPrograms {
		bin := filepath.Join(outDir, p)
		args := append(append([]string{}, CFlags...), "-o", bin, filepath.Join(srcDir, p+".c"))
		if _, err := r.Run(ctx, vm.Cmd{Dir: srcDir, Name: "gcc", Args: args}); err != nil {
			return nil, fmt.Errorf("compile %s (needs gcc and libc6-dev for -static): %w", p, err)
		}
		if st, err := os.Stat(bin); err != nil || st.Size() == 0 {
			return nil, fmt.Errorf("compile %s: gcc produced no %s", p, bin)
		}
		out[GuestBinDir+"/"+p] = bin
	}
	return out, nil
}
