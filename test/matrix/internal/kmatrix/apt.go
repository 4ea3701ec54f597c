package kmatrix

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Archive says where Debian packages come from. The defaults are the host's
// own archive and keyring (see /etc/apt/sources.list.d/debian.sources).
type Archive struct {
	Mirror         string // http://deb.debian.org/debian
	SecurityMirror string // http://deb.debian.org/debian-security
	Keyring        string // /usr/share/keyrings/debian-archive-keyring.gpg
}

// DefaultArchive is the archive the host uses, overridable with
// KECHO_DEBIAN_MIRROR / KECHO_DEBIAN_SECURITY_MIRROR.
func DefaultArchive() Archive {
	return Archive{
		Mirror:         envOr("KECHO_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
		SecurityMirror: envOr("KECHO_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"),
		Keyring:        "/usr/share/keyrings/debian-archive-keyring.gpg",
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Apt is a private apt configuration for one suite: its own sources.list,
// lists and cache under Dir, so the host's apt state is neither used nor
// changed.
type Apt struct {
	Dir     string // cache/matrix/apt/<suite>
	Suite   string
	Archive Archive
	Run     Runner
	MaxAge  time.Duration // re-run apt-get update when the lists are older
	Now     func() time.Time
}

// SourcesList is the sources.list of the suite: a stable release comes
// with its -updates and -security suites, like on an installed system.
func (a *Apt) SourcesList() string {
	opt := "[signed-by=" + a.Archive.Keyring + "]"
	var b strings.Builder
	fmt.Fprintf(&b, "deb %s %s %s main\n", opt, a.Archive.Mirror, a.Suite)
	if StableRelease(a.Suite) {
		fmt.Fprintf(&b, "deb %s %s %s-updates main\n", opt, a.Archive.Mirror, a.Suite)
		fmt.Fprintf(&b, "deb %s %s %s-security main\n", opt, a.Archive.SecurityMirror, a.Suite)
	}
	return b.String()
}

// options are the -o flags that point apt at the private configuration.
func (a *Apt) options() []string {
	o := []string{
		"Dir::Etc::SourceList=" + filepath.Join(a.Dir, "sources.list"),
		"Dir::Etc::SourceParts=" + filepath.Join(a.Dir, "sources.list.d"),
		"Dir::Etc::Preferences=" + filepath.Join(a.Dir, "preferences"),
		"Dir::Etc::PreferencesParts=" + filepath.Join(a.Dir, "preferences.d"),
		"Dir::State=" + filepath.Join(a.Dir, "state"),
		"Dir::State::status=" + filepath.Join(a.Dir, "state", "status"),
		"Dir::Cache=" + filepath.Join(a.Dir, "cache"),
		"APT::Architecture=amd64",
		"APT::Architectures=amd64",
		"APT::Sandbox::User=root",
		"Debug::NoLocking=1",
		// Only the package lists: no DEP-11, Contents or translations.
		"Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
		"Acquire::Languages=none",
	}
	var args []string
	for _, s := range o {
		args = append(args, "-o", s)
	}
	return args
}

func (a *Apt) cmd(name string, args ...string) Cmd {
	return Cmd{Name: name, Args: append(a.options(), args...), Env: []string{"LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}}
}

// Update writes the configuration and runs apt-get update unless the lists
// were updated within MaxAge by the same sources.list.
func (a *Apt) Update(ctx context.Context) error {
	for _, d := range []string{"sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			return err
		}
	}
	status := filepath.Join(a.Dir, "state", "status")
	if _, err := os.Stat(status); err != nil {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return err
		}
	}
	src := filepath.Join(a.Dir, "sources.list")
	stamp := filepath.Join(a.Dir, "updated")
	want := a.SourcesList()
	old, _ := os.ReadFile(src)
	if string(old) == want {
		if st, err := os.Stat(stamp); err == nil && a.now().Sub(st.ModTime()) < a.MaxAge {
			return nil
		}
	}
	if err := os.WriteFile(src, []byte(want), 0o644); err != nil {
		return err
	}
	if _, err := a.Run.Run(ctx, a.cmd("apt-get", "-q", "update")); err != nil {
		return fmt.Errorf("apt-get update for %s: %w", a.Suite, err)
	}
	return os.WriteFile(stamp, []byte(a.now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

func (a *Apt) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Candidate is the version apt would install of pkg, "" if none.
func (a *Apt) Candidate(ctx context.Context, pkg string) (string, error) {
	out, err := a.Run.Run(ctx, a.cmd("apt-cache", "policy", pkg))
	if err != nil {
		return "", fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return "", nil
			}
			return v, nil
		}
	}
	return "", nil
}

// Depends is the Depends field of pkg=version, split into package names
// (alternatives flattened, version constraints dropped).
func (a *Apt) Depends(ctx context.Context, pkg, version string) ([]string, error) {
	out, err := a.Run.Run(ctx, a.cmd("apt-cache", "show", pkg+"="+version))
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s=%s: %w", pkg, version, err)
	}
	return parseDepends(firstRecordField(string(out), "Depends")), nil
}

// PkgNames are the package names starting with prefix.
func (a *Apt) PkgNames(ctx context.Context, prefix string) ([]string, error) {
	out, err := a.Run.Run(ctx, a.cmd("apt-cache", "pkgnames", prefix))
	if err != nil {
		return nil, fmt.Errorf("apt-cache pkgnames %s: %w", prefix, err)
	}
	names := strings.Fields(string(out))
	sort.Strings(names)
	return names, nil
}

// Download fetches pkg=version into dir (unless already there) and
// returns the .deb's path. apt verifies it against the signed lists; it is
// downloaded into a temporary directory first, so an interrupted download
// never leaves a truncated .deb in the cache.
func (a *Apt) Download(ctx context.Context, dir, pkg, version string) (string, error) {
	out, err := a.Run.Run(ctx, a.cmd("apt-get", "download", "--print-uris", pkg+"="+version))
	if err != nil {
		return "", fmt.Errorf("locating %s=%s: %w", pkg, version, err)
	}
	file := ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.HasPrefix(f[0], "'") && strings.HasSuffix(f[1], ".deb") {
			file = f[1]
		}
	}
	if file == "" || strings.Contains(file, "/") {
		return "", fmt.Errorf("apt-get download --print-uris %s=%s: no .deb in %q", pkg, version, out)
	}
	dst := filepath.Join(dir, file)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	c := a.cmd("apt-get", "-q", "download", pkg+"="+version)
	c.Dir = tmp
	if _, err := a.Run.Run(ctx, c); err != nil {
		return "", fmt.Errorf("downloading %s=%s: %w", pkg, version, err)
	}
	if err := os.Rename(filepath.Join(tmp, file), dst); err != nil {
		return "", fmt.Errorf("downloading %s=%s: %w", pkg, version, err)
	}
	return dst, nil
}

// firstRecordField is field of the first stanza of apt-cache show output.
func firstRecordField(out, field string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var val string
	in := false
	for sc.Scan() {
		l := sc.Text()
		if l == "" {
			if val != "" {
				break
			}
			continue
		}
		if in && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			val += " " + strings.TrimSpace(l)
			continue
		}
		in = false
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			val = strings.TrimSpace(v)
			in = true
		}
	}
	return val
}

var depNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.\-]*`)

func parseDepends(field string) []string {
	var names []string
	for _, clause := range strings.Split(field, ",") {
		for _, alt := range strings.Split(clause, "|") {
			if n := depNameRe.FindString(strings.TrimSpace(alt)); n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}
