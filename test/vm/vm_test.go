package vm

import (
	"os"
	"testing"
	"time"
)

// EnvGuestRun is a -test.run filter for the guest tests of
// TestModuleInGuest, e.g. KECHO_GUEST_RUN=TestHelloWorld.
const EnvGuestRun = "KECHO_GUEST_RUN"

// TestModuleInGuest builds kecho for the default kernel (DefaultKernel),
// boots it in qemu and runs the in-guest tests of test/guest, each
// reported as a subtest.
func TestModuleInGuest(t *testing.T) {
	if testing.Short() && !Required() {
		t.Skip("boots a VM (a few minutes under TCG); run without -short, or `make test`")
	}
	spec := Spec{
		TestPackages: []string{"./test/guest"},
		Timeout:      15 * time.Minute,
	}
	if f := os.Getenv(EnvGuestRun); f != "" {
		spec.RunArgs = []string{"-test.run", f}
	}
	if testing.Verbose() {
		spec.Output = &prefixWriter{w: os.Stdout, prefix: "guest| "}
	}
	res := RunTest(t, spec)
	if res.ModuleStub {
		t.Error("the guest tests ran against the test stand-in module (dkms/dkms.conf is missing); they cannot pass")
	}
}

// prefixWriter prefixes each line, so the live guest output is told
// apart from the host's.
type prefixWriter struct {
	w      *os.File
	prefix string
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if c == '\r' {
			continue
		}
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		if c == 0x16 {
			continue
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
