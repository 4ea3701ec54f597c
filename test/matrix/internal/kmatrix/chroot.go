package kmatrix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ChrootPackages are installed into every build chroot besides
// debootstrap's minbase and the kernels' compilers: what linux-kbuild
// needs to build an external module (make, libc headers, pahole for the
// BTF of modules, libelf/libssl for the kbuild tools) and kmod.
var ChrootPackages = []string{"dwarves", "kmod", "libc6-dev", "libelf-dev", "libssl-dev", "make"}

// ChrootRecipe is how the chroot of suite with the given compilers is made;
// a cached chroot made by another recipe is rebuilt.
func ChrootRecipe(suite string, compilers []string, ar Archive) string {
	pk := append(append([]string(nil), ChrootPackages...), compilers...)
	sort.Strings(pk)
	pk = dedup(pk)
	return fmt.Sprintf("debootstrap --variant=minbase --keyring=%s --include=%s %s %s\n", ar.Keyring, strings.Join(pk, ","), suite, ar.Mirror)
}

func dedup(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// ChrootDir is where the chroot for a recipe is cached.
func ChrootDir(cache, suite, recipe string) string {
	sum := sha256.Sum256([]byte(recipe))
	return filepath.Join(cache, "chroots", suite+"-"+hex.EncodeToString(sum[:])[:12])
}

// EnsureChroot returns the cached chroot of suite with compilers, making it
// with debootstrap first (1-3 minutes) if needed, and removes chroots of
// the same suite made by older recipes. debootstrap runs in a private
// mount namespace, so an interrupted run leaves no mounts behind.
func EnsureChroot(ctx context.Context, r Runner, log *slog.Logger, cache, suite string, compilers []string, ar Archive) (string, error) {
	recipe := ChrootRecipe(suite, compilers, ar)
	dir := ChrootDir(cache, suite, recipe)
	stamp := filepath.Join(dir, ".kecho-recipe")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == recipe {
		return dir, nil
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	log.Info("debootstrap build chroot", "suite", suite, "dir", dir, "recipe", strings.TrimSpace(recipe))
	pk := append(append([]string(nil), ChrootPackages...), compilers...)
	sort.Strings(pk)
	args := []string{"--mount", "--propagation", "private", "--", "nice", "-n", "10",
		"debootstrap", "--variant=minbase", "--keyring=" + ar.Keyring, "--include=" + strings.Join(dedup(pk), ","),
		suite, tmp, ar.Mirror}
	if _, err := r.Run(ctx, Cmd{Name: "unshare", Args: args, Env: []string{"LC_ALL=C"}}); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("making the %s build chroot: %w", suite, err)
	}
	// Mount point for the module tree being built.
	if err := os.MkdirAll(filepath.Join(tmp, "build"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".kecho-recipe"), []byte(recipe), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(cache, "chroots", suite+"-*"))
	for _, o := range old {
		if o != dir && !strings.HasSuffix(o, ".tmp") {
			log.Info("remove outdated build chroot", "dir", o)
			os.RemoveAll(o)
		}
	}
	return dir, nil
}
