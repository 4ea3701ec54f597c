package kmod

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind classifies a modprobe failure. Each kind is also a sentinel error:
// errors.Is(err, kmod.ErrPortInUse) tests a *LoadError's kind.
type Kind int

// Kinds of failures.
const (
	KindUnknown      Kind = iota
	KindNotFound          // no module file for the running kernel
	KindSignature         // signature rejected or missing (Secure Boot)
	KindPortInUse         // EADDRINUSE from the module's bind
	KindAddrNotAvail      // EADDRNOTAVAIL: bind_addr is not local
	KindFamily            // EAFNOSUPPORT: IPv6 disabled
	KindPermission        // EPERM: not root / no CAP_SYS_MODULE
	KindInvalid           // EINVAL or unknown parameter
	KindFormat            // ENOEXEC: built for another kernel
	KindInUse             // unload refused: module in use
	KindNoModprobe        // modprobe itself is missing
)

var kindNames = [...]string{"unknown", "not-found", "signature", "port-in-use", "addr-not-available",
	"family-not-supported", "permission", "invalid-parameter", "exec-format", "in-use", "no-modprobe"}

func (k Kind) String() string { return kindNames[k] }

// Error implements error, so a Kind can be a target of errors.Is.
func (k Kind) Error() string { return "kmod: " + k.String() }

// Sentinels for errors.Is.
var (
	ErrNotFound   error = KindNotFound
	ErrSignature  error = KindSignature
	ErrPortInUse  error = KindPortInUse
	ErrPermission error = KindPermission
	ErrInvalid    error = KindInvalid
)

// LoadError is a failed modprobe run. Error() carries the command, its
// error and its output; Summary() is the one-line cause and hint for the
// operator.
type LoadError struct {
	Cmd    string // the command line, e.g. "modprobe kecho port=5555 ..."
	Output string // combined output, trimmed
	Err    error  // what the Runner returned
	Kind   Kind
	Cause  string // e.g. "UDP port 5555 is in use by another program"
	Hint   string // e.g. "`ss -ulpn sport = :5555`"
}

func (e *LoadError) Error() string {
	s := e.Cmd + ": " + e.Err.Error()
	if e.Output != "" {
		s += ": " + strings.ReplaceAll(e.Output, "\n", "; ")
	}
	return s
}

// Summary is "cause: hint", one line.
func (e *LoadError) Summary() string {
	if e.Hint == "" {
		return e.Cause
	}
	return e.Cause + ": " + e.Hint
}

// Unwrap exposes both the Kind sentinel and the Runner's error.
func (e *LoadError) Unwrap() []error { return []error{e.Kind, e.Err} }

// Summary returns the operator-facing line of err: LoadError.Summary when
// err is or wraps a *LoadError, err.Error() otherwise.
func Summary(err error) string {
	var le *LoadError
	if errors.As(err, &le) {
		return le.Summary()
	}
	return err.Error()
}

var notFoundRe = regexp.MustCompile(`not found in directory /lib/modules/(\S+)`)

// classify maps modprobe's output (kmod prints the kernel's errno as
// strerror text) and the Runner's error to a kind, cause and hint.
func classify(name, out string, runErr error, port uint16, release string) (Kind, string, string) {
	// kmod prints glibc's strerror ("Address already in use"), Go's
	// errno text is lower case: compare case-insensitively.
	lout := strings.ToLower(out)
	lerr := ""
	if runErr != nil {
		lerr = strings.ToLower(runErr.Error())
	}
	has := func(subs ...string) bool {
		for _, s := range subs {
			s = strings.ToLower(s)
			if strings.Contains(lout, s) || strings.Contains(lerr, s) {
				return true
			}
		}
		return false
	}
	errnoText := func(e unix.Errno) string { return e.Error() }
	var execErr *exec.Error
	switch {
	case errors.As(runErr, &execErr) || errors.Is(runErr, exec.ErrNotFound):
		return KindNoModprobe, "modprobe cannot be run", "install the kmod package"
	case has("not found in directory"):
		if m := notFoundRe.FindStringSubmatch(out); m != nil {
			release = m[1]
		}
		return KindNotFound, fmt.Sprintf("%s is not built for kernel %s", name, release),
			fmt.Sprintf("check `dkms status` and install linux-headers-%s", release)
	case has(errnoText(unix.EKEYREJECTED), errnoText(unix.ENOKEY), "Key was rejected", "Required key not available"):
		return KindSignature, fmt.Sprintf("the kernel rejected %s's signature (Secure Boot)", name),
			"enrol the DKMS signing key with `mokutil --import /var/lib/dkms/mok.pub` and reboot, or disable Secure Boot"
	case has(errnoText(unix.EADDRINUSE)):
		p := strconv.Itoa(int(port))
		return KindPortInUse, "UDP port " + p + " is in use by another program",
			"`ss -ulpn sport = :" + p + "`"
	case has(errnoText(unix.EADDRNOTAVAIL)):
		return KindAddrNotAvail, "bind_address is not an address of this host",
			"set module.bind_address to a local address, 0.0.0.0 or ::"
	case has(errnoText(unix.EAFNOSUPPORT)):
		return KindFamily, "the address family of bind_address is not available",
			"IPv6 may be disabled (sysctl net.ipv6.conf.all.disable_ipv6); use an IPv4 bind_address"
	case has(errnoText(unix.EPERM), "Permission denied"):
		return KindPermission, "not permitted to load kernel modules",
			"run kechod as root (it needs CAP_SYS_MODULE)"
	case has(errnoText(unix.ENOEXEC), "Invalid module format"):
		return KindFormat, fmt.Sprintf("%s was built for another kernel than %s", name, release),
			"rebuild it: `dkms autoinstall`"
	case has(errnoText(unix.EINVAL), "unknown parameter"):
		return KindInvalid, fmt.Sprintf("%s rejected its parameters", name),
			"see `dmesg` for the parameter it names"
	case has("is in use", errnoText(unix.EBUSY)):
		return KindInUse, fmt.Sprintf("%s is in use and cannot be unloaded", name),
			"`lsmod | grep " + name + "`"
	}
	first := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if first == "" && runErr != nil {
		first = runErr.Error()
	}
	return KindUnknown, first, "see `dmesg`"
}

func (m *Manager) loadError(cmd string, out []byte, err error, port uint16) error {
	text := strings.TrimSpace(string(out))
	kind, cause, hint := classify(m.Name, text, err, port, m.kernelRelease())
	return &LoadError{Cmd: cmd, Output: text, Err: err, Kind: kind, Cause: cause, Hint: hint}
}

func unameRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(u.Release[:])
}
