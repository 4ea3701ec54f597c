// Command kechod loads, health-checks and reports on the kecho kernel module.
// See internal/cli and kechod(8).
package main

import (
	"context"
	"os"

	"github.com/kecho-dev/kecho/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
