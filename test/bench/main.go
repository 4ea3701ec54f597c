// Command bench is `make bench`: it measures kecho against user-space
// echo servers in one VM and writes the table and the chart (see
// test/bench/driver).
//
//	go run ./test/bench [-short] [-variants all] [-out DIR]
package main

import (
	"os"

	"github.com/kecho-dev/kecho/test/bench/driver"
)

func main() {
	os.Exit(driver.Main(os.Args[1:], os.Stdout, os.Stderr))
}
