package main

import (
	"github.com/kecho-dev/kecho/internal/cli"
	"github.com/kecho-dev/kecho/internal/pkgbuild"
)

// commandTree is kechod's command tree, from which kechod(8) and the shell
// completions are generated.
var commandTree pkgbuild.CommandFactory = cli.New
