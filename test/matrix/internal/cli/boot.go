package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kecho-dev/kecho/test/matrix/internal/kmatrix"
	"github.com/kecho-dev/kecho/test/vm"
)

// GuestTests is the in-guest test package every boot row runs.
const GuestTests = "./test/guest"

// BootTimeout bounds one kernel's boot and in-guest tests.
const BootTimeout = 15 * time.Minute

// vmBooter boots a kernel with test/vm and runs the in-guest tests there,
// with the module the matrix built for that kernel.
type vmBooter struct {
	log *slog.Logger
}

func newBooter(root string, log *slog.Logger) (kmatrix.Booter, error) {
	return vmBooter{log: log}, nil
}

// Boot implements kmatrix.Booter.
func (b vmBooter) Boot(ctx context.Context, s kmatrix.BootSpec) kmatrix.BootResult {
	k := vm.Kernel{Release: s.Release, Image: s.Kernel, ModulesDir: s.ModulesDir, Headers: s.HeadersDir}
	if cfg := filepath.Join(filepath.Dir(filepath.Dir(s.Kernel)), "boot", "config-"+s.Release); fileExists(cfg) {
		k.Config = cfg
	} else if cfg := filepath.Join(s.HeadersDir, ".config"); fileExists(cfg) {
		k.Config = cfg
	}
	spec := vm.Spec{Kernel: k, Module: s.Module, TestPackages: []string{GuestTests}, Timeout: BootTimeout}
	if f := os.Getenv("KECHO_GUEST_RUN"); f != "" {
		spec.RunArgs = []string{"-test.run", f}
	}
	res, err := vm.Run(ctx, spec)
	if err != nil {
		return kmatrix.BootResult{Err: fmt.Errorf("VM run could not start: %w", err)}
	}
	return bootResult(res)
}

// bootResult summarises a VM run: it passes when the guest finished with
// every binary exiting 0, no guest test failed or stayed unfinished, and
// the kernel log has no splat.
func bootResult(res *vm.Result) kmatrix.BootResult {
	var pass, fail, skip int
	var failed []string
	for _, bin := range res.Binaries {
		for _, t := range bin.AllTests() {
			switch t.Status {
			case vm.StatusPass:
				pass++
			case vm.StatusSkip:
				skip++
			default:
				fail++
				failed = append(failed, t.Name)
			}
		}
	}
	out := kmatrix.BootResult{Duration: res.BootTime}
	out.Summary = fmt.Sprintf("%d passed", pass)
	if fail > 0 {
		out.Summary += fmt.Sprintf(", %d failed", fail)
	}
	if skip > 0 {
		out.Summary += fmt.Sprintf(", %d skipped", skip)
	}
	problems := res.Problems()
	if len(failed) > 0 {
		problems = append([]string{"guest tests failed: " + strings.Join(failed, ", ")}, problems...)
	}
	if len(res.Binaries) == 0 {
		problems = append(problems, "no guest test binary ran")
	}
	if pass == 0 {
		problems = append(problems, "no guest test passed")
	}
	if res.ModuleStub {
		problems = append(problems, "the guest got the test stand-in module")
	}
	if len(problems) > 0 {
		out.Err = fmt.Errorf("%s (logs: %s)", strings.Join(problems, "; "), res.LogDir)
		return out
	}
	out.OK = !res.Failed()
	return out
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
