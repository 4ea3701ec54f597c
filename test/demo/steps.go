package main

import (
	"fmt"
	"strings"
)

// A step of the demo: a title and the shell commands (busybox sh, in the
// guest) shown and run under it. A command that fails fails the demo
// unless the step is Optional.
type step struct {
	Title    string
	Commands []string
	Optional bool
}

// moduleSteps show the module on its own: load it, echo "hello world"
// from user space, the kernel log line, the counters.
var moduleSteps = []step{
	{Title: "The guest kernel", Commands: []string{"uname -r"}},
	{Title: "kecho as DKMS would install it", Commands: []string{
		`modinfo kecho | grep -E '^(filename|version|description|vermagic|parm):'`,
	}},
	{Title: "Load it", Commands: []string{
		"modprobe kecho",
		"lsmod | grep -E '^(Module|kecho)'",
		"dmesg | grep 'kecho: serving'",
	}},
	{Title: `Send "hello world" from user space`, Commands: []string{
		`udpecho 127.0.0.1:5555 "hello world"`,
	}},
	{Title: "The kernel log line for it", Commands: []string{
		`dmesg | grep 'kecho: 127.0.0.1:.* "hello world"'`,
	}},
	{Title: "The counters", Commands: []string{
		`cd /sys/module/kecho/stats && for f in *; do printf '%-15s %s\n' "$f" "$(cat "$f")"; done`,
	}},
	{Title: "Unload it", Commands: []string{
		"rmmod kecho",
		"dmesg | tail -n 1",
	}},
}

// kechodSteps show the daemon once bin/kechod builds with run, ping and
// status: it loads the module itself, health-checks it, and answers the
// operator's tools.
var kechodSteps = []step{
	{Title: "kechod run: the service loads kecho and health-checks it", Commands: []string{
		"kechod run >/tmp/kechod.log 2>&1 & echo $! >/tmp/kechod.pid",
		// Wait (at most 30 s) until the daemon reports the module healthy.
		"i=0; until kechod status >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 60 ] || break; sleep 0.5; done; kechod status",
	}},
	{Title: "kechod ping: the classic client", Commands: []string{
		`kechod ping 127.0.0.1 "hello world" -c 3 -i 200ms`,
	}},
	{Title: "Stop the service", Commands: []string{
		`kill -TERM "$(cat /tmp/kechod.pid)"; i=0; while kill -0 "$(cat /tmp/kechod.pid)" 2>/dev/null && [ $i -lt 50 ]; do i=$((i+1)); sleep 0.2; done`,
		"cat /tmp/kechod.log",
	}},
}

// script renders the steps as one guest shell script that prints a
// transcript: a heading per step, each command after "$ ", its output
// indented. The script exits 1 after the first failing command of a
// required step.
func script(steps []step) string {
	var b strings.Builder
	b.WriteString("cd /\n")
	for i, s := range steps {
		fmt.Fprintf(&b, "echo\necho %s\n", shellQuote(fmt.Sprintf("── %d. %s", i+1, s.Title)))
		for _, c := range s.Commands {
			fmt.Fprintf(&b, "echo %s\n", shellQuote("$ "+c))
			fmt.Fprintf(&b, "( %s ) >/tmp/demo.out 2>&1; st=$?\n", c)
			b.WriteString("sed 's/^/    /' /tmp/demo.out\n")
			if s.Optional {
				b.WriteString(`[ $st -eq 0 ] || echo "    (exit status $st)"` + "\n")
			} else {
				b.WriteString(`if [ $st -ne 0 ]; then echo "    FAILED (exit status $st)"; exit 1; fi` + "\n")
			}
		}
	}
	b.WriteString("exit 0\n")
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
