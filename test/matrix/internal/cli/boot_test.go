package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/vm"
)

func guestBinary(statuses ...string) *vm.Binary {
	b := &vm.Binary{Name: "guest.test"}
	for i, s := range statuses {
		b.Tests = append(b.Tests, &vm.GuestTest{Name: "Test" + string(rune('A'+i)), Status: s})
	}
	return b
}

func TestBootResult(t *testing.T) {
	ok := &vm.Result{Finished: true, BootTime: 90 * time.Second, LogDir: "/l", Binaries: []*vm.Binary{guestBinary(vm.StatusPass, vm.StatusPass, vm.StatusSkip)}}
	r := bootResult(ok)
	if !r.OK || r.Err != nil || r.Summary != "2 passed, 1 skipped" || r.Duration != 90*time.Second {
		t.Errorf("passing run: %+v", r)
	}
	for name, c := range map[string]struct {
		res  *vm.Result
		want string
	}{
		"failed test": {&vm.Result{Finished: true, Binaries: []*vm.Binary{guestBinary(vm.StatusPass, vm.StatusFail)}}, "guest tests failed: TestB"},
		"unfinished":  {&vm.Result{Finished: true, Binaries: []*vm.Binary{guestBinary(vm.StatusPass, vm.StatusUnfinished)}}, "guest tests failed: TestB"},
		"crash":       {&vm.Result{Binaries: []*vm.Binary{guestBinary(vm.StatusPass)}}, "the guest did not finish"},
		"splat":       {&vm.Result{Finished: true, Splats: []string{"BUG: scheduling while atomic"}, Binaries: []*vm.Binary{guestBinary(vm.StatusPass)}}, "kernel log: BUG: scheduling while atomic"},
		"nothing ran": {&vm.Result{Finished: true}, "no guest test binary ran"},
		"stub":        {&vm.Result{Finished: true, ModuleStub: true, Binaries: []*vm.Binary{guestBinary(vm.StatusPass)}}, "test stand-in module"},
	} {
		r := bootResult(c.res)
		if r.OK || r.Err == nil || !strings.Contains(r.Err.Error(), c.want) {
			t.Errorf("%s: OK=%v err=%v, want an error containing %q", name, r.OK, r.Err, c.want)
		}
	}
}
