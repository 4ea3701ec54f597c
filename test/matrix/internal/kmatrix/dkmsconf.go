package kmatrix

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// BuildExclusiveKernel is the BUILD_EXCLUSIVE_KERNEL regex of a dkms.conf
// ("" if it sets none).
func BuildExclusiveKernel(conf string) (string, error) {
	b, err := os.ReadFile(conf)
	if err != nil {
		return "", fmt.Errorf("dkms.conf: %w", err)
	}
	re := regexp.MustCompile(`^\s*BUILD_EXCLUSIVE_KERNEL=(.*)$`)
	val := ""
	for _, l := range strings.Split(string(b), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			val = strings.TrimSpace(m[1])
		}
	}
	if len(val) >= 2 && (val[0] == '"' && val[len(val)-1] == '"' || val[0] == '\'' && val[len(val)-1] == '\'') {
		val = val[1 : len(val)-1]
	}
	return val, nil
}

// dkmsMatch is how dkms applies BUILD_EXCLUSIVE_KERNEL: bash's =~ (POSIX
// extended regex) against the kernel version.
const dkmsMatch = `[[ $1 =~ $2 ]]`

// DKMSAccepts reports whether dkms would build for kernel release kver
// under the BUILD_EXCLUSIVE_KERNEL regex re, by asking bash exactly as
// dkms does.
func DKMSAccepts(ctx context.Context, r Runner, re, kver string) (bool, error) {
	_, err := r.Run(ctx, Cmd{Name: "bash", Args: []string{"-c", dkmsMatch, "bash", kver, re}})
	if err == nil {
		return true, nil
	}
	if ce, ok := err.(*CmdError); ok && strings.TrimSpace(ce.Output) == "" && ce.Err.Error() == "exit status 1" {
		return false, nil
	}
	return false, fmt.Errorf("matching %q against %q: %w", kver, re, err)
}
