// Command matrix builds kecho against every kernel series in
// test/matrix/kernels.txt, boots the ones marked "boot" in qemu with their
// own module build, and prints a table (`make matrix`).
package main

import (
	"context"
	"os"

	"github.com/kecho-dev/kecho/test/matrix/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
