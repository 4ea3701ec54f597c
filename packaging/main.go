// Command packaging builds kecho's .deb and .rpm packages into dist/:
// `go run ./packaging` (or `make packages`). See internal/pkgbuild.
package main

import (
	"context"
	"os"

	"github.com/kecho-dev/kecho/internal/pkgbuild"
)

func main() {
	os.Exit(pkgbuild.Main(context.Background(), os.Args[1:], commandTree, os.Stdout, os.Stderr))
}
