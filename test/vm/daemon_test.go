package vm

import (
	"os"
	"testing"
	"time"
)

// TestDaemonInGuest boots the default kernel with kecho and the real
// kechod (/usr/bin/kechod, static) and runs the daemon's in-guest tests
// (test/guest/daemon_test.go, build tag "kechodaemon"): READY after the
// first probe, SIGHUP port change, rmmod recovery, a taken port, an
// invalid config, ping/check/status and /metrics.
//
//	go test -v -run TestDaemonInGuest ./test/vm
//	KECHO_GUEST_RUN=TestDaemonReloadPort go test -v -run TestDaemonInGuest ./test/vm
func TestDaemonInGuest(t *testing.T) {
	if testing.Short() && !Required() {
		t.Skip("boots a VM (a few minutes under TCG); run without -short, or `make test`")
	}
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ver := Version(repo)
	spec := Spec{
		TestPackages:   []string{"./test/guest"},
		Tags:           []string{GuestTag, "kechodaemon"},
		RunArgs:        []string{"-test.run", "^TestDaemon"},
		Programs:       map[string]string{"/usr/bin/kechod": "./cmd/kechod"},
		ProgramLdflags: "-X github.com/kecho-dev/kecho/internal/version.Version=" + ver,
		Timeout:        15 * time.Minute,
	}
	if f := os.Getenv(EnvGuestRun); f != "" {
		spec.RunArgs = []string{"-test.run", f}
	}
	if testing.Verbose() {
		spec.Output = &PrefixWriter{W: os.Stdout, Prefix: "guest| "}
	}
	res := RunTest(t, spec)
	if res.ModuleStub {
		t.Error("the daemon tests ran against the test stand-in module (dkms/dkms.conf is missing); they cannot pass")
	}
}
