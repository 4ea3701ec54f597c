//go:build tools

// Package deps pins the modules the project builds with, so go mod tidy keeps them.
package deps

import (
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	_ "github.com/goreleaser/nfpm/v2/rpm"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/cobra/doc"
	_ "github.com/spf13/viper"
	_ "golang.org/x/sys/unix"
)
