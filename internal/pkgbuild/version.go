package pkgbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	describeRE = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]+)$`)
	versionRE  = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// NormalizeVersion turns a tag or `git describe` output into a version that
// is valid, and orders correctly, for dpkg, rpm and DKMS alike:
//
//	v0.1.0             -> 0.1.0
//	v0.1.0-3-gabc1234  -> 0.1.0+git3.gabc1234   (after 0.1.0, before 0.1.1)
//	v0.2.0-rc1         -> 0.2.0~rc1             (before 0.2.0)
//
// A version never contains '-', so the Debian packages are native and the
// rpm version needs no escaping.
func NormalizeVersion(s string) (string, error) {
	v := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if m := describeRE.FindStringSubmatch(v); m != nil {
		v = fmt.Sprintf("%s+git%s.g%s", m[1], m[2], m[3])
	}
	v = strings.ReplaceAll(v, "-", "~")
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("version %q (from %q) is not usable for packages: want digits first, then only [A-Za-z0-9.+~]", v, s)
	}
	return v, nil
}

// DetectVersion returns the package version: `git describe --tags` of the
// repository at root (v prefix stripped), or else the VERSION file.
func DetectVersion(root string) (string, error) {
	out, err := exec.Command("git", "-C", root, "describe", "--tags", "--match", "v[0-9]*").Output()
	if err == nil && len(strings.TrimSpace(string(out))) > 0 {
		return NormalizeVersion(string(out))
	}
	b, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return "", fmt.Errorf("no git tag and no VERSION file: %w", err)
	}
	return NormalizeVersion(string(b))
}

// DetectCommit returns the abbreviated commit of HEAD, or "unknown".
func DetectCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// SourceDate is the timestamp written into the packages (file times, man
// page dates, changelog): SOURCE_DATE_EPOCH, else HEAD's commit time, else
// now. It makes rebuilds of one commit byte-identical.
func SourceDate(root string) time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}
