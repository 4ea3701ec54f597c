// Command demo (`make demo`) boots the newest installed Debian kernel in
// qemu with kecho (test/vm), loads the module, sends "hello world" from
// user space and prints the echo, the kernel log line and the counters as
// a transcript. When bin/kechod builds with its run, ping and status
// commands, the demo also runs the daemon in the guest and uses them.
//
// The guest's commands are the steps in steps.go: add a step there to
// show more.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kecho-dev/kecho/test/vm"
)

func main() {
	verbose := flag.Bool("v", false, "also show the guest kernel's console")
	noKechod := flag.Bool("no-kechod", false, "leave the daemon out even if it builds")
	flag.Parse()
	if err := run(*verbose, !*noKechod); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(verbose, withKechod bool) error {
	if miss := vm.Missing(); miss != "" {
		return fmt.Errorf("cannot boot the VM: needs %s (run `make deps` as root, or `make demo`)", miss)
	}
	repo, err := vm.RepoRoot()
	if err != nil {
		return err
	}
	k, err := vm.DefaultKernel()
	if err != nil {
		return err
	}
	version := vm.Version(repo)
	spec := vm.Spec{
		Kernel:         k,
		Programs:       map[string]string{"/usr/bin/udpecho": "./test/demo/udpecho"},
		ProgramLdflags: "-X github.com/kecho-dev/kecho/internal/version.Version=" + version,
		Timeout:        5 * time.Minute,
		Output:         transcript(os.Stdout),
	}
	steps := moduleSteps
	if withKechod {
		if why := kechodMissing(repo); why != "" {
			fmt.Printf("(kechod is left out of the demo: %s)\n", why)
		} else {
			spec.Programs["/usr/bin/kechod"] = "./cmd/kechod"
			steps = append(append([]step(nil), moduleSteps...), kechodSteps...)
		}
	}
	spec.Script = script(steps)
	if verbose {
		spec.KernelOutput = os.Stderr
	}
	src, stub := vm.ModuleSource(repo)
	fmt.Printf("kecho %s demo: building the module from %s for Linux %s and booting it in qemu (TCG)…\n", version, rel(repo, src), k.Release)
	if stub {
		fmt.Println("(dkms/dkms.conf does not exist yet: this is the test stand-in module, which serves nothing)")
	}
	start := time.Now()
	res, err := vm.Run(context.Background(), spec)
	if err != nil {
		return err
	}
	fmt.Printf("\n(build %.1fs, VM %.1fs, total %.1fs; kernel log: %s)\n",
		res.BuildTime.Seconds(), res.BootTime.Seconds(), time.Since(start).Seconds(), filepath.Join(res.LogDir, "kernel.log"))
	if res.Failed() {
		for _, p := range res.Problems() {
			fmt.Fprintln(os.Stderr, "demo:", p)
		}
		return fmt.Errorf("the demo failed")
	}
	return nil
}

// kechodMissing says why the daemon cannot be part of the demo ("" when
// it can): it must build and have the run, ping and status commands.
func kechodMissing(repo string) string {
	dir, err := os.MkdirTemp("", "kecho-demo-")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "kechod")
	if err := vm.BuildProgram(context.Background(), vm.ExecRunner{}, repo, "./cmd/kechod", bin, ""); err != nil {
		return "cmd/kechod does not build yet"
	}
	for _, sub := range []string{"run", "ping", "status"} {
		if err := exec.Command(bin, sub, "--help").Run(); err != nil {
			return fmt.Sprintf("kechod has no %q command yet", sub)
		}
	}
	return ""
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return r + "/"
	}
	return p
}

// transcript prints the guest's script output to w, without the
// harness's framing lines.
func transcript(w io.Writer) *vm.LineWriter {
	return &vm.LineWriter{Line: func(line string) error {
		if strings.HasPrefix(line, "KECHO-VM: ") {
			return nil
		}
		_, err := fmt.Fprintln(w, line)
		return err
	}}
}
