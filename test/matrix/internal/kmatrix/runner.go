package kmatrix

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Cmd is one program invocation.
type Cmd struct {
	Name string
	Args []string
	Dir  string   // working directory; "" = the current one
	Env  []string // extra environment (KEY=VALUE) on top of the process's
	// Log, if set, also receives the combined output as it is produced.
	Log io.Writer
	// Show, if set, is how the command is named in errors and logs
	// instead of its full argument list.
	Show string
}

// String is the command line as a shell would show it.
func (c Cmd) String() string {
	if c.Show != "" {
		return c.Show
	}
	return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " "))
}

// Runner runs commands and returns their combined stdout and stderr. A
// non-zero exit is an error that names the command and carries its output.
type Runner interface {
	Run(ctx context.Context, c Cmd) ([]byte, error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, c Cmd) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(cmd.Environ(), c.Env...)
	}
	var buf bytes.Buffer
	var w io.Writer = &buf
	if c.Log != nil {
		w = io.MultiWriter(&buf, c.Log)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	if err := cmd.Run(); err != nil {
		return buf.Bytes(), &CmdError{Cmd: c.String(), Output: buf.String(), Err: err}
	}
	return buf.Bytes(), nil
}

// CmdError is a failed command with its output.
type CmdError struct {
	Cmd    string
	Output string
	Err    error
}

func (e *CmdError) Error() string {
	out := strings.TrimSpace(e.Output)
	const max = 4000
	if len(out) > max {
		out = "…" + out[len(out)-max:]
	}
	return fmt.Sprintf("%s: %v\n%s", e.Cmd, e.Err, out)
}

func (e *CmdError) Unwrap() error { return e.Err }
