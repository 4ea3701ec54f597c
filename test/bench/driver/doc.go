// Package driver is the host side of `make bench`: it compiles the C
// programs (test/bench/cecho) statically and the Go guest programs, builds
// kecho (and, on request, variants of it from patched copies of dkms/),
// boots one VM through test/vm, runs test/bench/guestrun inside it, and
// writes the results (JSON, the Markdown table, the PNG chart) to a
// results directory whose path it prints.
package driver
