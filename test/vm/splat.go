package vm

import (
	"regexp"
	"strings"
)

// SplatPatterns are the kernel log patterns that fail a VM run: bugs,
// warnings, oopses, memory-corruption and locking reports, hung tasks,
// sanitizer reports and the stack dumps that accompany all of them.
var SplatPatterns = []*regexp.Regexp{
	regexp.MustCompile(`\bBUG: `),         // BUG: kernel NULL pointer dereference, sleeping function..., soft lockup, scheduling while atomic
	regexp.MustCompile(`kernel BUG at `),  // BUG_ON()
	regexp.MustCompile(`^BUG \S+ \(.*\)`), // SLUB debug: BUG kmalloc-64 (Tainted: ...): Poison overwritten
	regexp.MustCompile(`\bWARNING: `),     // WARN_ON(), lockdep's "WARNING: possible circular locking..."
	regexp.MustCompile(`\bOops\b`),
	regexp.MustCompile(`general protection fault`),
	regexp.MustCompile(`scheduling while atomic`),
	regexp.MustCompile(`refcount_t: `),
	regexp.MustCompile(`list_(add|del) corruption`),
	regexp.MustCompile(`hung task|blocked for more than \d+ seconds`),
	regexp.MustCompile(`KASAN|UBSAN|KFENCE: `),
	regexp.MustCompile(`possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage`),
	regexp.MustCompile(`Kernel panic`),
	regexp.MustCompile(`Call Trace:`),
	regexp.MustCompile(`unreferenced object 0x`), // kmemleak
}

// NoticePatterns are worth showing but do not fail a run on their own:
// under TCG on a loaded host, RCU can report stalls that are not bugs.
var NoticePatterns = []*regexp.Regexp{
	regexp.MustCompile(`rcu: .*(stall|Stall)`),
	regexp.MustCompile(`page allocation failure`),
}

// timestamp matches the "[    1.234567] " prefix of console lines.
var timestamp = regexp.MustCompile(`^\[\s*\d+\.\d+\]\s?`)

// packetLog matches kecho's own per-datagram log line, whose quoted
// payload is guest data and must not be mistaken for a kernel report.
var packetLog = regexp.MustCompile(`^kecho: \S+ len \d+`)

// consoleLine strips the carriage return and timestamp of a console line.
func consoleLine(line string) string {
	return timestamp.ReplaceAllString(strings.TrimRight(line, "\r"), "")
}

// Splats returns the kernel log lines that match SplatPatterns.
func Splats(kernelLog string) []string {
	return matchLines(kernelLog, SplatPatterns)
}

// Notices returns the kernel log lines that match NoticePatterns.
func Notices(kernelLog string) []string {
	return matchLines(kernelLog, NoticePatterns)
}

func matchLines(kernelLog string, pats []*regexp.Regexp) []string {
	var out []string
	for _, raw := range strings.Split(kernelLog, "\n") {
		line := consoleLine(raw)
		if packetLog.MatchString(line) {
			continue
		}
		for _, p := range pats {
			if p.MatchString(line) {
				out = append(out, strings.TrimRight(raw, "\r"))
				break
			}
		}
	}
	return out
}
