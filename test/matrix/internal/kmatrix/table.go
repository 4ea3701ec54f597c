package kmatrix

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one line per row: kernel, suite, compiler, build
// result, module size and time, boot result and time.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIES\tKERNEL\tSUITE\tCOMPILER\tBUILD\tSIZE\tTIME\tBOOT\tBOOT TIME")
	for _, r := range rows {
		kern, cc, build, size, btime, boot, boottime := "?", "-", "FAIL", "-", "-", "-", "-"
		if r.Kernel != nil {
			kern = r.Kernel.Release
			cc = r.Kernel.Compiler
		}
		if r.Build.Compiler != "" {
			cc = shortCompiler(r.Build.Compiler)
		}
		if r.Err == nil {
			if r.Build.OK {
				build = "ok"
				size = fmt.Sprintf("%d KiB", (r.Build.Size+1023)/1024)
			}
			btime = seconds(r.Build.Duration)
		}
		if r.Boot != nil {
			boot = "FAIL"
			if r.Boot.OK {
				boot = "pass"
			}
			if r.Boot.Summary != "" {
				boot += " (" + r.Boot.Summary + ")"
			}
			boottime = seconds(r.Boot.Duration)
		} else if r.Entry.Boot && r.Build.OK {
			boot = "not run"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Entry.Series, kern, r.Entry.Suite, cc, build, size, btime, boot, boottime)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if msg := failure(r); msg != "" {
			fmt.Fprintf(w, "\n%s: %s\n", r.Entry.Name(), msg)
		}
	}
	return nil
}

func failure(r Row) string {
	var msg []string
	if r.Err != nil {
		msg = append(msg, r.Err.Error())
	}
	if r.Build.Err != nil {
		m := r.Build.Err.Error()
		if r.LogFile != "" {
			m += " (log: " + r.LogFile + ")"
		}
		msg = append(msg, m)
	}
	if r.Boot != nil && r.Boot.Err != nil {
		msg = append(msg, "boot: "+r.Boot.Err.Error())
	}
	return strings.Join(msg, "\n  ")
}

// shortCompiler turns "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"
// into "gcc-14 14.2.0-19".
func shortCompiler(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return s
	}
	name := f[0]
	if i := strings.LastIndex(name, "gcc"); i > 0 {
		name = name[i:]
	}
	if i := strings.Index(s, "(Debian "); i >= 0 {
		if j := strings.IndexByte(s[i:], ')'); j > 0 {
			return name + " " + s[i+len("(Debian "):i+j]
		}
	}
	return name
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.1fs", d.Seconds())
}
