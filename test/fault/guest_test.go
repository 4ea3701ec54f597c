package fault

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/vm"
)

// Environment knobs passed into the guest.
var guestKnobs = []string{"KECHO_FUZZ_DATAGRAMS", "KECHO_FUZZ_SEED", "KECHO_SOAK_DURATION"}

// guestSpec is the VM run of test/guestfault (plus extra packages).
func guestSpec(t *testing.T, packages []string, tags []string) vm.Spec {
	t.Helper()
	repo, err := vm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, k := range guestKnobs {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	spec := vm.Spec{
		TestPackages:   packages,
		Tags:           tags,
		Programs:       map[string]string{"/usr/bin/kechod": "./cmd/kechod"},
		ProgramLdflags: "-X github.com/kecho-dev/kecho/internal/version.Version=" + vm.Version(repo),
		Env:            env,
		Timeout:        40 * time.Minute,
	}
	if f := os.Getenv("KECHO_FAULT_RUN"); f != "" {
		spec.RunArgs = []string{"-test.run", f}
	}
	if testing.Verbose() {
		spec.Output = &vm.PrefixWriter{W: os.Stdout, Prefix: "guest| "}
	}
	return spec
}

// figures picks the FIGURE lines the guest tests log.
var figureLine = regexp.MustCompile(`FIGURE .*`)

func logFigures(t *testing.T, res *vm.Result) {
	t.Helper()
	for _, l := range strings.Split(res.GuestOutput, "\n") {
		if m := figureLine.FindString(l); m != "" {
			t.Log(strings.TrimRight(strings.ReplaceAll(m, `\n"`, ""), `"}`))
		}
	}
}

// TestFaultInGuest runs test/guestfault on the default kernel.
func TestFaultInGuest(t *testing.T) {
	if testing.Short() && !vm.Required() {
		t.Skip("boots a VM and runs the fuzz and soak suite (10+ minutes under TCG); run without -short, or `make test`")
	}
	res := vm.RunTest(t, guestSpec(t, []string{"./test/guestfault"}, nil))
	logFigures(t, res)
}
