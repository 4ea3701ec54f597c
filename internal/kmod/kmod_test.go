package kmod_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kecho-dev/kecho/internal/kmod"
	"github.com/kecho-dev/kecho/internal/kmod/kmodtest"
)

var defaults = kmod.Params{Port: 5555, BindAddr: "0.0.0.0", LogPackets: true}

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestArgs(t *testing.T) {
	p := kmod.Params{Port: 6000, BindAddr: "::", LogPackets: false, MaxPPS: 100}
	want := []string{"port=6000", "bind_addr=::", "log_packets=N", "max_pps=100"}
	if got := p.Args(); !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
	if got := defaults.String(); got != "port=5555 bind_addr=0.0.0.0 log_packets=Y max_pps=0" {
		t.Errorf("String = %q", got)
	}
}

func TestEqualNormalisesAddresses(t *testing.T) {
	a := kmod.Params{Port: 1, BindAddr: "::"}
	b := kmod.Params{Port: 1, BindAddr: "0:0::0"}
	if !a.Equal(b) {
		t.Error(":: and 0:0::0 should be equal")
	}
	if a.Equal(kmod.Params{Port: 1, BindAddr: "::1"}) {
		t.Error(":: and ::1 should differ")
	}
	d := kmod.Params{Port: 6000, BindAddr: "::", MaxPPS: 100}.Diff(defaults)
	want := []string{"port=6000 (config: 5555)", "bind_addr=:: (config: 0.0.0.0)", "log_packets=N (config: Y)", "max_pps=100 (config: 0)"}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Diff = %q, want %q", d, want)
	}
}

func TestReadFixtures(t *testing.T) {
	m := &kmod.Manager{Name: "kecho", SysfsRoot: "testdata/sys"}
	if !m.Loaded() {
		t.Fatal("fixture module not seen as loaded")
	}
	p, err := m.Params()
	if err != nil {
		t.Fatal(err)
	}
	if p != defaults {
		t.Errorf("Params = %+v, want %+v", p, defaults)
	}
	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := kmod.Stats{"rx_packets": 1200, "rx_bytes": 38400, "tx_packets": 1198, "tx_bytes": 38336,
		"drop_loop": 1, "drop_bcast": 1, "drop_ratelimit": 0, "tx_errors": 0}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Stats = %v, want %v", s, want)
	}
	if got := s.Names(); got[0] != "drop_bcast" || len(got) != 8 {
		t.Errorf("Names = %v", got)
	}

	other := &kmod.Manager{Name: "kecho", SysfsRoot: "testdata/sys-other"}
	p, err = other.Params()
	if err != nil {
		t.Fatal(err)
	}
	if want := (kmod.Params{Port: 6000, BindAddr: "::", MaxPPS: 100}); p != want {
		t.Errorf("Params = %+v, want %+v", p, want)
	}

	none := &kmod.Manager{Name: "kecho", SysfsRoot: "testdata/sys-empty"}
	if none.Loaded() {
		t.Error("absent module seen as loaded")
	}
	if _, err := none.Params(); !errors.Is(err, kmod.ErrNotLoaded) {
		t.Errorf("Params of absent module: %v, want ErrNotLoaded", err)
	}
	if _, err := none.Stats(); !errors.Is(err, kmod.ErrNotLoaded) {
		t.Errorf("Stats of absent module: %v, want ErrNotLoaded", err)
	}
}

func TestDashedNameUsesUnderscoreInSysfs(t *testing.T) {
	root := t.TempDir()
	kmodtest.WriteModule(t, root, "my_echo", defaults)
	m := &kmod.Manager{Name: "my-echo", SysfsRoot: root}
	if !m.Loaded() {
		t.Error("my-echo not found as /sys/module/my_echo")
	}
}

func TestEnsureLoadsWhenAbsent(t *testing.T) {
	root := t.TempDir()
	s := &kmodtest.Script{T: t, Calls: []kmodtest.Call{{
		Cmd: "modprobe kecho port=5555 bind_addr=0.0.0.0 log_packets=Y max_pps=0",
		Do:  func() { kmodtest.WriteModule(t, root, "kecho", defaults) },
	}}}
	m := &kmod.Manager{Name: "kecho", Runner: s, SysfsRoot: root}
	act, err := m.Ensure(context.Background(), defaults)
	if err != nil || act != kmod.Loaded {
		t.Fatalf("Ensure = %v, %v; want loaded", act, err)
	}
	if !m.LoadedByUs() {
		t.Error("LoadedByUs false after loading")
	}
	s.Done()
}

func TestEnsureKeepsMatchingModule(t *testing.T) {
	s := &kmodtest.Script{T: t} // no command may run
	m := &kmod.Manager{Name: "kecho", Runner: s, SysfsRoot: copyTree(t, "testdata/sys")}
	act, err := m.Ensure(context.Background(), kmod.Params{Port: 5555, BindAddr: "0.0.0.0", LogPackets: true})
	if err != nil || act != kmod.Kept {
		t.Fatalf("Ensure = %v, %v; want kept", act, err)
	}
	if m.LoadedByUs() {
		t.Error("LoadedByUs true for a module someone else loaded")
	}
	// Unload must not be attempted by callers then; Unload itself works.
	s.Done()
}

func TestEnsureReloadsWithOtherParams(t *testing.T) {
	root := copyTree(t, "testdata/sys-other")
	want := kmod.Params{Port: 5555, BindAddr: "0.0.0.0", LogPackets: true}
	s := &kmodtest.Script{T: t, Calls: []kmodtest.Call{
		{Cmd: "modprobe -r kecho", Do: func() { os.RemoveAll(filepath.Join(root, "module/kecho")) }},
		{Cmd: "modprobe kecho port=5555 bind_addr=0.0.0.0 log_packets=Y max_pps=0",
			Do: func() { kmodtest.WriteModule(t, root, "kecho", want) }},
	}}
	m := &kmod.Manager{Name: "kecho", Runner: s, SysfsRoot: root}
	act, err := m.Ensure(context.Background(), want)
	if err != nil || act != kmod.Reloaded {
		t.Fatalf("Ensure = %v, %v; want reloaded", act, err)
	}
	if !m.LoadedByUs() {
		t.Error("LoadedByUs false after reloading")
	}
	s.Done()
}

func TestLoadDetectsParamsNotApplied(t *testing.T) {
	root := t.TempDir()
	s := &kmodtest.Script{T: t, Calls: []kmodtest.Call{{
		Cmd: "modprobe kecho port=5555 bind_addr=0.0.0.0 log_packets=Y max_pps=0",
		Do: func() {
			kmodtest.WriteModule(t, root, "kecho", kmod.Params{Port: 5555, BindAddr: "0.0.0.0", LogPackets: true, MaxPPS: 7})
		},
	}}}
	m := &kmod.Manager{Name: "kecho", Runner: s, SysfsRoot: root}
	err := m.Load(context.Background(), defaults)
	var pm *kmod.ParamsMismatchError
	if !errors.As(err, &pm) {
		t.Fatalf("Load = %v, want ParamsMismatchError", err)
	}
	if !strings.Contains(err.Error(), "max_pps=7 (config: 0)") {
		t.Errorf("error %q does not name the differing parameter", err)
	}
	s.Done()
}

func TestUnload(t *testing.T) {
	root := copyTree(t, "testdata/sys")
	s := &kmodtest.Script{T: t, Calls: []kmodtest.Call{
		{Cmd: "modprobe -r kecho", Out: "modprobe: FATAL: Module kecho is in use.\n", Err: errors.New("exit status 1")},
		{Cmd: "modprobe -r kecho", Do: func() { os.RemoveAll(filepath.Join(root, "module/kecho")) }},
	}}
	m := &kmod.Manager{Name: "kecho", Runner: s, SysfsRoot: root}
	err := m.Unload(context.Background())
	if !errors.Is(err, kmod.KindInUse) {
		t.Fatalf("Unload = %v, want in-use", err)
	}
	if !strings.Contains(err.Error(), "modprobe -r kecho: exit status 1: modprobe: FATAL: Module kecho is in use.") {
		t.Errorf("error %q lacks command and output", err)
	}
	if err := m.Unload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Not loaded any more: no command runs.
	if err := m.Unload(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Done()
}

// Messages as kmod 30 (Debian 12) prints them.
func TestLoadErrors(t *testing.T) {
	exit1 := errors.New("exit status 1")
	for _, tc := range []struct {
		name    string
		out     string
		err     error
		kind    error
		summary string
	}{
		{"not found", "modprobe: FATAL: Module kecho not found in directory /lib/modules/6.1.0-57-amd64\n", exit1,
			kmod.ErrNotFound, "kecho is not built for kernel 6.1.0-57-amd64: check `dkms status` and install linux-headers-6.1.0-57-amd64"},
		{"key rejected", "modprobe: ERROR: could not insert 'kecho': Key was rejected by service\n", exit1,
			kmod.ErrSignature, "the kernel rejected kecho's signature (Secure Boot): enrol the DKMS signing key with `mokutil --import /var/lib/dkms/mok.pub` and reboot, or disable Secure Boot"},
		{"key missing", "modprobe: ERROR: could not insert 'kecho': Required key not available\n", exit1,
			kmod.ErrSignature, "the kernel rejected kecho's signature (Secure Boot): enrol the DKMS signing key with `mokutil --import /var/lib/dkms/mok.pub` and reboot, or disable Secure Boot"},
		{"port in use", "modprobe: ERROR: could not insert 'kecho': Address already in use\n", exit1,
			kmod.ErrPortInUse, "UDP port 6000 is in use by another program: `ss -ulpn sport = :6000`"},
		{"not root", "modprobe: ERROR: could not insert 'kecho': Operation not permitted\n", exit1,
			kmod.ErrPermission, "not permitted to load kernel modules: run kechod as root (it needs CAP_SYS_MODULE)"},
		{"einval", "modprobe: ERROR: could not insert 'kecho': Invalid argument\n", exit1,
			kmod.ErrInvalid, "kecho rejected its parameters: see `dmesg` for the parameter it names"},
		{"unknown param", "modprobe: ERROR: could not insert 'kecho': Unknown symbol in module, or unknown parameter (see dmesg)\n", exit1,
			kmod.ErrInvalid, "kecho rejected its parameters: see `dmesg` for the parameter it names"},
		{"addr not local", "modprobe: ERROR: could not insert 'kecho': Cannot assign requested address\n", exit1,
			kmod.KindAddrNotAvail, "bind_address is not an address of this host: set module.bind_address to a local address, 0.0.0.0 or ::"},
		{"no ipv6", "modprobe: ERROR: could not insert 'kecho': Address family not supported by protocol\n", exit1,
			kmod.KindFamily, "the address family of bind_address is not available: IPv6 may be disabled (sysctl net.ipv6.conf.all.disable_ipv6); use an IPv4 bind_address"},
		{"wrong kernel", "modprobe: ERROR: could not insert 'kecho': Exec format error\n", exit1,
			kmod.KindFormat, "kecho was built for another kernel than 6.1.0-57-amd64: rebuild it: `dkms autoinstall`"},
		{"no modprobe", "", &exec.Error{Name: "modprobe", Err: exec.ErrNotFound},
			kmod.KindNoModprobe, "modprobe cannot be run: install the kmod package"},
		{"other", "modprobe: ERROR: something new\nsecond line\n", exit1,
			kmod.KindUnknown, "modprobe: ERROR: something new: see `dmesg`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &kmodtest.Script{T: t, Calls: []kmodtest.Call{{
				Cmd: "modprobe kecho port=6000 bind_addr=0.0.0.0 log_packets=Y max_pps=0", Out: tc.out, Err: tc.err}}}
			m := &kmod.Manager{Name: "kecho", Runner: s, SysfsRoot: t.TempDir(),
				KernelRelease: func() string { return "6.1.0-57-amd64" }}
			p := defaults
			p.Port = 6000
			_, err := m.Ensure(context.Background(), p)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v does not wrap the runner's error", err)
			}
			if got := kmod.Summary(err); got != tc.summary {
				t.Errorf("Summary =\n %q, want\n %q", got, tc.summary)
			}
			if !strings.HasPrefix(err.Error(), "modprobe kecho port=6000 bind_addr=0.0.0.0 log_packets=Y max_pps=0: ") {
				t.Errorf("error %q does not start with the command", err)
			}
			if tc.out != "" && !strings.Contains(err.Error(), strings.SplitN(tc.out, "\n", 2)[0]) {
				t.Errorf("error %q lacks modprobe's output", err)
			}
			if strings.Contains(kmod.Summary(err), "\n") {
				t.Error("summary is not one line")
			}
			if m.LoadedByUs() {
				t.Error("LoadedByUs after a failed load")
			}
			s.Done()
		})
	}
}

func TestFakeKernel(t *testing.T) {
	k := kmodtest.NewKernel(t)
	m := &kmod.Manager{Name: "kecho", Runner: k, SysfsRoot: k.SysfsRoot}
	p := kmod.Params{Port: 0, BindAddr: "127.0.0.1"}
	// Port 0 is refused like the module refuses it.
	if err := m.Load(context.Background(), p); !errors.Is(err, kmod.ErrInvalid) {
		t.Fatalf("port 0: %v", err)
	}
}
