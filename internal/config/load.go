package config

import (
	"strconv"
	"strings"
)

// Options say where Load reads from. The zero value reads what kechod reads
// by default: the process environment and DefaultPath.
type Options struct {
	// Path is the main file (--config). Empty: $KECHOD_CONFIG, else
	// DefaultPath. A main file named by Path or KECHOD_CONFIG must exist;
	// a missing DefaultPath means built-in defaults and a warning.
	// Drop-ins are read from <dir of the main file>/conf.d/*.yaml.
	Path string
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Environ lists the environment as KEY=VALUE, to warn about
	// misspelt KECHOD_* variables; nil means os.Environ.
	Environ func() []string
	// Overrides are applied last (command-line flags), in order.
	Overrides []Override
}

// Override sets one key from a command-line flag.
type Override struct {
	// Key is the dotted key, e.g. "log.level".
	Key string
	// Value as typed, parsed like an environment value.
	Value string
	// Source names it in errors, e.g. "flag --log-level".
	Source string
}

// Loaded is the result of Load.
type Loaded struct {
	// Config is the effective, validated configuration.
	Config Config
	// Files are the files read, in order (main file first, if it exists).
	Files []string
	// Warnings are problems that do not stop kechod, e.g. a missing
	// default main file or an unknown KECHOD_* variable.
	Warnings []string
	// Sources maps each dotted key to where its effective value came
	// from: "default", "FILE:LINE", "env KECHOD_X_Y" or an Override.Source.
	Sources map[string]string
}

// Problem is one configuration error.
type Problem struct {
	// Source is the file path, "env KECHOD_X_Y", or an Override.Source;
	// empty for problems of the merged result that no single source has.
	Source string
	// Line is the 1-based line in Source, 0 when unknown or not a file.
	Line int
	// Key is the dotted key ("health.interval"), empty for whole-file
	// problems.
	Key string
	// Msg says what is wrong and what is allowed.
	Msg string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Source != "" {
		b.WriteString(p.Source)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is a rejected configuration: every problem found, in the order of
// the sources. Test for it with errors.As and exit with ExitConfig.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, checks and merges the configuration. On any problem it
// returns an *Error listing all of them.
func Load(opts Options) (*Loaded, error) {
	return load(opts)
}

func itoa(i int) string { return strconv.Itoa(i) }

// Validate checks a Config built in code (Load validates what it returns):
// every value in range and health.timeout < health.interval.
func (c Config) Validate() error { return validate(c) }

// Marshal renders c as kechod.yaml: the same keys in schema order,
// durations with units ("5s").
func (c Config) Marshal() []byte { return marshal(c, nil) }

// MarshalSources is Config.Marshal with a comment on every key saying
// where its value comes from (see Sources).
func (l *Loaded) MarshalSources() []byte { return marshal(l.Config, l.Sources) }
