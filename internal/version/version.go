// Package version carries the build's version, set at link time.
package version

import "runtime"

// Set by the linker: -X github.com/kecho-dev/kecho/internal/version.Version=...
var (
	Version = "0.0.0-dev"
	Commit  = "unknown"
)

// GoVersion is the Go release the binary was built with.
func GoVersion() string { return runtime.Version() }
