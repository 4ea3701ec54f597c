package main

import "github.com/kecho-dev/kecho/internal/pkgbuild"

// commandTree is kechod's command tree, from which kechod(8) and the shell
// completions are generated. Until internal/cli exists this is a stand-in
// shaped after DESIGN.md; then it becomes `cli.New(...)`.
var commandTree pkgbuild.CommandFactory = pkgbuild.FallbackCommand
