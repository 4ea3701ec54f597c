package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// env is an injected environment.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e env) environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// setup writes a main file (unless main is "-") and drop-ins into a
// temporary directory and returns the main file's path.
func setup(t *testing.T, main string, dropins map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "kechod.yaml")
	if main != "-" {
		if err := os.WriteFile(p, []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(dropins) > 0 {
		if err := os.Mkdir(filepath.Join(dir, DropInDir), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range dropins {
			if err := os.WriteFile(filepath.Join(dir, DropInDir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

func tload(t *testing.T, path string, e env, overrides ...Override) (*Loaded, error) {
	t.Helper()
	if e == nil {
		e = env{}
	}
	return Load(Options{Path: path, LookupEnv: e.lookup, Environ: e.environ, Overrides: overrides})
}

func mustLoad(t *testing.T, path string, e env, overrides ...Override) *Loaded {
	t.Helper()
	l, err := tload(t, path, e, overrides...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return l
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// The shipped configs/kechod.yaml is exactly the built-in defaults.
func TestShippedConfigIsDefaults(t *testing.T) {
	p := filepath.Join(repoRoot(), "configs", "kechod.yaml")
	l := mustLoad(t, p, nil)
	if !reflect.DeepEqual(l.Config, Defaults()) {
		t.Errorf("configs/kechod.yaml loads as\n%+v\nwant Defaults()\n%+v", l.Config, Defaults())
	}
	// Every key is set by the file (none left to the built-in default).
	for _, f := range schema {
		if !strings.HasPrefix(l.Sources[f.key], p+":") {
			t.Errorf("%s comes from %q, want the shipped file to set it", f.key, l.Sources[f.key])
		}
	}
	if len(l.Warnings) != 0 || !reflect.DeepEqual(l.Files, []string{p}) {
		t.Errorf("files %v, warnings %v", l.Files, l.Warnings)
	}
}

func TestDefaultsValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.Module.Port = 0
	c.Health.Timeout = 10 * time.Second
	err := c.Validate()
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "module.port: want an integer 1-65535, got 0") {
		t.Errorf("Validate: %v", err)
	}
	c = Defaults()
	c.Health.Timeout = c.Health.Interval
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "health.timeout: want a duration shorter than health.interval") {
		t.Errorf("Validate: %v", err)
	}
}

// Marshal writes what Load reads back, for every kind of value.
func TestMarshalRoundTrip(t *testing.T) {
	c := Config{
		Module:  Module{Name: "kecho_2", Port: 7, BindAddress: "::", LogPackets: false, MaxPPS: 4294967295, UnloadOnStop: true},
		Health:  Health{Interval: 90 * time.Second, Timeout: 1500 * time.Millisecond, FailureThreshold: 10, Address: "::1", PayloadSize: 65507, Recovery: RecoveryNone},
		Metrics: Metrics{Listen: "[::1]:9555"},
		Log:     Log{Level: LevelDebug, Format: FormatJSON},
	}
	out := string(c.Marshal())
	for _, w := range []string{"interval: 1m30s\n", "timeout: 1.5s\n", "bind_address: '::'\n", "listen: '[::1]:9555'\n", "max_pps: 4294967295\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	l := mustLoad(t, setup(t, out, nil), nil)
	if !reflect.DeepEqual(l.Config, c) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", l.Config, c)
	}
	d := Defaults()
	if got := string(d.Marshal()); !strings.Contains(got, "address: \"\"\n") || !strings.HasPrefix(got, "module:\n  name: kecho\n  port: 5555\n") {
		t.Errorf("defaults:\n%s", got)
	}
}

func TestPrecedence(t *testing.T) {
	p := setup(t, `
module:
  port: 6000
  max_pps: 100
health:
  interval: 10s
log:
  level: warn
`, map[string]string{
		"20-b.yaml":          "module:\n  port: 7000\n",
		"10-a.yaml":          "module:\n  port: 6500\n  max_pps: 200\n",
		"30-c.yaml":          "", // empty: no settings
		"40-d.yaml":          "# only a comment\n",
		"50-e.yml":           "module: {port: 1}\n", // not *.yaml: ignored
		"60-f.yaml.dpkg-old": "module: {port: 2}\n",
		".#70-g.yaml":        "module: {port: 3}\n", // an editor's lock file: hidden, ignored
	})
	e := env{
		"KECHOD_HEALTH_TIMEOUT":        "2s", // no file sets it
		"KECHOD_MODULE_UNLOAD_ON_STOP": "true",
		"KECHOD_LOG_LEVEL":             "error",
	}
	l := mustLoad(t, p, e, Override{Key: "log.level", Value: "debug", Source: "flag --log-level"})
	c := l.Config
	if c.Module.Port != 7000 || c.Module.MaxPPS != 200 || c.Health.Interval != 10*time.Second {
		t.Errorf("files: %+v", c)
	}
	if c.Health.Timeout != 2*time.Second || !c.Module.UnloadOnStop {
		t.Errorf("env: %+v", c)
	}
	if c.Log.Level != LevelDebug {
		t.Errorf("flag: level %q, want the flag's debug over env's error", c.Log.Level)
	}
	dir := filepath.Dir(p)
	wantFiles := []string{p, filepath.Join(dir, "conf.d", "10-a.yaml"), filepath.Join(dir, "conf.d", "20-b.yaml"),
		filepath.Join(dir, "conf.d", "30-c.yaml"), filepath.Join(dir, "conf.d", "40-d.yaml")}
	if !reflect.DeepEqual(l.Files, wantFiles) {
		t.Errorf("files %v\nwant %v", l.Files, wantFiles)
	}
	for k, want := range map[string]string{
		"module.port":              filepath.Join(dir, "conf.d", "20-b.yaml") + ":2",
		"module.max_pps":           filepath.Join(dir, "conf.d", "10-a.yaml") + ":3",
		"health.interval":          p + ":6",
		"health.timeout":           "env KECHOD_HEALTH_TIMEOUT",
		"log.level":                "flag --log-level",
		"health.failure_threshold": "default",
	} {
		if l.Sources[k] != want {
			t.Errorf("source of %s: %q, want %q", k, l.Sources[k], want)
		}
	}
	ann := string(l.MarshalSources())
	if !strings.Contains(ann, "port: 7000 # "+filepath.Join(dir, "conf.d", "20-b.yaml")+":2\n") {
		t.Errorf("annotated:\n%s", ann)
	}
}

func TestEnvConfigAndMissingFiles(t *testing.T) {
	p := setup(t, "module:\n  port: 7777\n", nil)
	l := mustLoad(t, "", env{EnvConfig: p})
	if l.Config.Module.Port != 7777 {
		t.Errorf("KECHOD_CONFIG not used: %+v", l.Config.Module)
	}
	// --config wins over KECHOD_CONFIG.
	q := setup(t, "module:\n  port: 8888\n", nil)
	if l := mustLoad(t, q, env{EnvConfig: p}); l.Config.Module.Port != 8888 {
		t.Errorf("--config did not win: %+v", l.Config.Module)
	}

	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := tload(t, missing, nil)
	if err == nil || err.Error() != missing+": does not exist (named by --config)" {
		t.Errorf("explicit missing file: %v", err)
	}
	_, err = tload(t, "", env{EnvConfig: missing})
	if err == nil || err.Error() != missing+": does not exist (named by KECHOD_CONFIG)" {
		t.Errorf("missing KECHOD_CONFIG file: %v", err)
	}

	// The default main file missing: defaults and a warning, drop-ins
	// still read.
	dflt := setup(t, "-", map[string]string{"50-port.yaml": "module:\n  port: 9999\n"})
	old := defaultPath
	defaultPath = dflt
	t.Cleanup(func() { defaultPath = old })
	l = mustLoad(t, "", nil)
	if l.Config.Module.Port != 9999 || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "does not exist; using the built-in defaults") {
		t.Errorf("config %+v warnings %v", l.Config.Module, l.Warnings)
	}
}

func TestEnvWarnings(t *testing.T) {
	l := mustLoad(t, setup(t, "", nil), env{"KECHOD_HEALTH_INTERVALL": "2s", "KECHOD_CONFIG_DIR": "x", "OTHER": "1"})
	w := strings.Join(l.Warnings, "\n")
	if !strings.Contains(w, "env KECHOD_HEALTH_INTERVALL: not a kechod setting, ignored; did you mean KECHOD_HEALTH_INTERVAL?") ||
		!strings.Contains(w, "KECHOD_CONFIG_DIR") || strings.Contains(w, "OTHER") || len(l.Warnings) != 2 {
		t.Errorf("warnings:\n%s", w)
	}
}

func TestEmptyStringValues(t *testing.T) {
	p := setup(t, "metrics:\n  listen: 127.0.0.1:9555\nhealth:\n  address: ::1\n", map[string]string{"10.yaml": "health:\n  address:\n"})
	l := mustLoad(t, p, env{"KECHOD_METRICS_LISTEN": ""})
	if l.Config.Metrics.Listen != "" || l.Config.Health.Address != "" {
		t.Errorf("empty values did not override: %+v %+v", l.Config.Metrics, l.Config.Health)
	}
}

func TestValidValues(t *testing.T) {
	for _, tc := range []struct {
		yaml  string
		check func(Config) bool
	}{
		{"module:\n  bind_address: '::'\n", func(c Config) bool { return c.Module.BindAddress == "::" }},
		{"module:\n  bind_address: ::ffff:10.0.0.1\n", func(c Config) bool { return c.Module.BindAddress == "::ffff:10.0.0.1" }},
		{"module:\n  port: 0x15b3\n", func(c Config) bool { return c.Module.Port == 5555 }},
		{"module:\n  name: kecho-test_2\n", func(c Config) bool { return c.Module.Name == "kecho-test_2" }},
		{"module:\n  max_pps: 4294967295\n", func(c Config) bool { return c.Module.MaxPPS == 4294967295 }},
		{"health:\n  interval: 1m30s\n  timeout: 500ms\n", func(c Config) bool { return c.Health.Interval == 90*time.Second }},
		{"health:\n  address: fe80::1%eth0\n", func(c Config) bool { return c.Health.Address == "fe80::1%eth0" }},
		{"health:\n  payload_size: 16\n", func(c Config) bool { return c.Health.PayloadSize == 16 }},
		{"metrics:\n  listen: localhost:9555\n", func(c Config) bool { return c.Metrics.Listen == "localhost:9555" }},
		{"metrics:\n  listen: :9555\n", func(c Config) bool { return c.Metrics.Listen == ":9555" }},
		{"health:\nmetrics: ~\n", func(c Config) bool { return reflect.DeepEqual(c, Defaults()) }},
		{"---\nmodule: {port: 1}\n", func(c Config) bool { return c.Module.Port == 1 }},
		{"module: &m\n  port: 2\n", func(c Config) bool { return c.Module.Port == 2 }},
		{"\ufeffmodule:\n  port: 3\n", func(c Config) bool { return c.Module.Port == 3 }},
	} {
		l, err := tload(t, setup(t, tc.yaml, nil), nil)
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if !tc.check(l.Config) {
			t.Errorf("%q: got %+v", tc.yaml, l.Config)
		}
	}
}

// Every kind of bad input is an *Error whose lines name the source, the
// line, the key and what is allowed.
func TestBadConfigs(t *testing.T) {
	type tc struct {
		name    string
		main    string
		dropins map[string]string
		env     env
		flags   []Override
		want    []string // lines (after the temp dir is replaced by DIR)
	}
	for _, c := range []tc{
		{name: "unknown key with suggestion", main: "health:\n  intervall: 5s\n",
			want: []string{"DIR/kechod.yaml:2: health.intervall: unknown key; did you mean health.interval?"}},
		{name: "key in the wrong section", main: "module:\n  interval: 5s\n",
			want: []string{"DIR/kechod.yaml:2: module.interval: unknown key; did you mean health.interval?"}},
		{name: "dash instead of underscore", main: "module:\n  bind-address: '::'\n",
			want: []string{"DIR/kechod.yaml:2: module.bind-address: unknown key; did you mean module.bind_address?"}},
		{name: "unknown key without suggestion", main: "log:\n  colour: true\n",
			want: []string{"DIR/kechod.yaml:2: log.colour: unknown key"}},
		{name: "unknown section", main: "helth:\n  interval: 5s\n",
			want: []string{"DIR/kechod.yaml:1: helth: unknown section; did you mean health?"}},
		{name: "unknown section far off", main: "prometheus:\n  listen: :1\n",
			want: []string{"DIR/kechod.yaml:1: prometheus: unknown section; known sections are module, health, metrics, log"}},
		{name: "port not a number", main: "module:\n  port: abc\n",
			want: []string{`DIR/kechod.yaml:2: module.port: want an integer 1-65535, got "abc"`}},
		{name: "port quoted", main: "module:\n  port: \"5555\"\n",
			want: []string{`DIR/kechod.yaml:2: module.port: want an integer 1-65535, got "5555"`}},
		{name: "port float", main: "module:\n  port: 55.5\n",
			want: []string{`DIR/kechod.yaml:2: module.port: want an integer 1-65535, got 55.5`}},
		{name: "port out of range", main: "module:\n  port: 70000\n",
			want: []string{"DIR/kechod.yaml:2: module.port: want an integer 1-65535, got 70000"}},
		{name: "port zero", main: "module:\n  port: 0\n",
			want: []string{"DIR/kechod.yaml:2: module.port: want an integer 1-65535, got 0"}},
		{name: "port huge", main: "module:\n  port: 99999999999999999999999\n",
			want: []string{"DIR/kechod.yaml:2: module.port: want an integer 1-65535, got 99999999999999999999999"}},
		{name: "port no value", main: "module:\n  port:\n",
			want: []string{"DIR/kechod.yaml:2: module.port: has no value; want an integer 1-65535"}},
		{name: "port a list", main: "module:\n  port: [1, 2]\n",
			want: []string{"DIR/kechod.yaml:2: module.port: want an integer 1-65535, got a list"}},
		{name: "bool as yes", main: "module:\n  log_packets: yes\n",
			want: []string{`DIR/kechod.yaml:2: module.log_packets: want true or false, got "yes"`}},
		{name: "bool as 1", main: "module:\n  unload_on_stop: 1\n",
			want: []string{`DIR/kechod.yaml:2: module.unload_on_stop: want true or false, got 1`}},
		{name: "duration without unit", main: "health:\n  interval: 5\n",
			want: []string{`DIR/kechod.yaml:2: health.interval: "5" has no unit; write e.g. 5s (units: ms, s, m, h)`}},
		{name: "duration quoted without unit", main: "health:\n  timeout: '0.5'\n",
			want: []string{`DIR/kechod.yaml:2: health.timeout: "0.5" has no unit; write e.g. 0.5s (units: ms, s, m, h)`}},
		{name: "duration garbage", main: "health:\n  interval: 5 seconds\n",
			want: []string{`DIR/kechod.yaml:2: health.interval: want a duration > 0 with a unit, e.g. 5s, got "5 seconds" (units: ms, s, m, h; e.g. 500ms, 1m30s)`}},
		{name: "duration zero", main: "health:\n  interval: 0s\n",
			want: []string{"DIR/kechod.yaml:2: health.interval: want a duration > 0 with a unit, e.g. 5s, got 0s"}},
		{name: "duration negative", main: "health:\n  timeout: -1s\n",
			want: []string{"DIR/kechod.yaml:2: health.timeout: want a duration > 0 with a unit, shorter than health.interval, e.g. 1s, got -1s"}},
		{name: "timeout not below interval", main: "health:\n  interval: 2s\n  timeout: 2s\n",
			want: []string{"DIR/kechod.yaml:3: health.timeout: want a duration shorter than health.interval, got 2s (2s, from DIR/kechod.yaml:2)"}},
		{name: "timeout across files", main: "health:\n  timeout: 3s\n", dropins: map[string]string{"10.yaml": "health:\n  interval: 2s\n"},
			want: []string{"DIR/kechod.yaml:2: health.timeout: want a duration shorter than health.interval, got 3s (2s, from DIR/conf.d/10.yaml:2)"}},
		{name: "interval below the default timeout", main: "health:\n  interval: 500ms\n",
			want: []string{"DIR/kechod.yaml:2: health.interval: want a duration longer than health.timeout (1s, the default), got 500ms"}},
		{name: "both from defaults and env", main: "", env: env{"KECHOD_HEALTH_INTERVAL": "1s", "KECHOD_HEALTH_TIMEOUT": "3s"},
			want: []string{"env KECHOD_HEALTH_TIMEOUT: health.timeout: want a duration shorter than health.interval, got 3s (1s, from env KECHOD_HEALTH_INTERVAL)"}},
		{name: "failure_threshold zero", main: "health:\n  failure_threshold: 0\n",
			want: []string{"DIR/kechod.yaml:2: health.failure_threshold: want an integer >= 1, got 0"}},
		{name: "payload_size too small", main: "health:\n  payload_size: 15\n",
			want: []string{"DIR/kechod.yaml:2: health.payload_size: want an integer 16-65507 (bytes; a probe needs 16 for its nonce), got 15"}},
		{name: "payload_size too big", main: "health:\n  payload_size: 65508\n",
			want: []string{"DIR/kechod.yaml:2: health.payload_size: want an integer 16-65507 (bytes; a probe needs 16 for its nonce), got 65508"}},
		{name: "max_pps negative", main: "module:\n  max_pps: -1\n",
			want: []string{"DIR/kechod.yaml:2: module.max_pps: want an integer 0-4294967295 (0 = no cap), got -1"}},
		{name: "max_pps too big", main: "module:\n  max_pps: 4294967296\n",
			want: []string{"DIR/kechod.yaml:2: module.max_pps: want an integer 0-4294967295 (0 = no cap), got 4294967296"}},
		{name: "bind_address a name", main: "module:\n  bind_address: localhost\n",
			want: []string{`DIR/kechod.yaml:2: module.bind_address: want an IPv4 or IPv6 address literal such as 0.0.0.0 or ::, got "localhost"`}},
		{name: "bind_address with zone", main: "module:\n  bind_address: fe80::1%eth0\n",
			want: []string{`DIR/kechod.yaml:2: module.bind_address: want an IPv4 or IPv6 address literal such as 0.0.0.0 or ::, got "fe80::1%eth0"`}},
		{name: "bind_address empty", main: "module:\n  bind_address: \"\"\n",
			want: []string{`DIR/kechod.yaml:2: module.bind_address: want an IPv4 or IPv6 address literal such as 0.0.0.0 or ::, got ""`}},
		{name: "health.address a name", main: "health:\n  address: kecho.example\n",
			want: []string{`DIR/kechod.yaml:2: health.address: want an IP address literal, or "" for module.bind_address (loopback of its family for a wildcard), got "kecho.example"`}},
		{name: "metrics.listen without port", main: "metrics:\n  listen: 127.0.0.1\n",
			want: []string{`DIR/kechod.yaml:2: metrics.listen: want host:port such as 127.0.0.1:9555, or "" for off, got "127.0.0.1"`}},
		{name: "metrics.listen port 0", main: "metrics:\n  listen: 127.0.0.1:0\n",
			want: []string{`DIR/kechod.yaml:2: metrics.listen: want host:port such as 127.0.0.1:9555, or "" for off, got "127.0.0.1:0"`}},
		{name: "metrics.listen bad host", main: "metrics:\n  listen: a_b:9555\n",
			want: []string{`DIR/kechod.yaml:2: metrics.listen: want host:port such as 127.0.0.1:9555, or "" for off, got "a_b:9555"`}},
		{name: "log.level enum", main: "log:\n  level: warning\n",
			want: []string{`DIR/kechod.yaml:2: log.level: want one of debug, info, warn, error, got "warning"; did you mean warn?`}},
		{name: "log.format enum", main: "log:\n  format: logfmt\n",
			want: []string{`DIR/kechod.yaml:2: log.format: want one of text, json, got "logfmt"`}},
		{name: "recovery enum", main: "health:\n  recovery: restart\n",
			want: []string{`DIR/kechod.yaml:2: health.recovery: want one of reload, none, got "restart"`}},
		{name: "module.name with slash", main: "module:\n  name: ../kecho\n",
			want: []string{`DIR/kechod.yaml:2: module.name: want a kernel module name (letters, digits, _ and -, at most 55 characters), got "../kecho"`}},
		{name: "module.name an option", main: "module:\n  name: -r\n",
			want: []string{`DIR/kechod.yaml:2: module.name: want a kernel module name (letters, digits, _ and -, at most 55 characters), got "-r"`}},
		{name: "module.name too long", main: "module:\n  name: " + strings.Repeat("k", 56) + "\n",
			want: []string{`DIR/kechod.yaml:2: module.name: want a kernel module name (letters, digits, _ and -, at most 55 characters), got "` + strings.Repeat("k", 56) + `"`}},
		{name: "module.name empty", main: "module:\n  name:\n",
			want: []string{`DIR/kechod.yaml:2: module.name: want a kernel module name (letters, digits, _ and -, at most 55 characters), got ""`}},
		{name: "malformed YAML", main: "module:\n  port: 5555\n bad indent: x\n",
			want: []string{"DIR/kechod.yaml:2: malformed YAML: did not find expected key"}},
		{name: "tab indentation", main: "module:\n\tport: 5555\n",
			want: []string{"DIR/kechod.yaml:2: malformed YAML: found character that cannot start any token"}},
		{name: "top level a list", main: "- module\n",
			want: []string{"DIR/kechod.yaml:1: want a mapping of sections (module, health, metrics, log), got a list"}},
		{name: "top level a string", main: "hello\n",
			want: []string{`DIR/kechod.yaml:1: want a mapping of sections (module, health, metrics, log), got "hello"`}},
		{name: "section not a mapping", main: "module: 5555\n",
			want: []string{"DIR/kechod.yaml:1: module: want a mapping of module keys, got 5555"}},
		{name: "duplicate key", main: "module:\n  port: 1\n  port: 2\n",
			want: []string{"DIR/kechod.yaml:3: module.port: duplicate key (first at line 2)"}},
		{name: "duplicate section", main: "module:\n  port: 1\nmodule:\n  port: 2\n",
			want: []string{"DIR/kechod.yaml:3: module: duplicate section (first at line 1)"}},
		{name: "two documents", main: "module:\n  port: 1\n---\nmodule:\n  port: 2\n",
			want: []string{"DIR/kechod.yaml:3: more than one YAML document; put all settings in one"}},
		{name: "merge key", main: "module:\n  <<: {port: 1}\n",
			want: []string{"DIR/kechod.yaml:2: module: YAML merge keys (<<) are not supported; write the keys out"}},
		{name: "non-scalar key", main: "module:\n  ? [a]\n  : 1\n",
			want: []string{"DIR/kechod.yaml:2: module: want a plain key name, got a list"}},
		{name: "main file is a directory", main: "-"}, // want set below
		{name: "all problems of a file, in order", main: "module:\n  port: abc\n  nmae: kecho\nhealth:\n  interval: 5\nlog:\n  level: loud\n",
			want: []string{
				`DIR/kechod.yaml:2: module.port: want an integer 1-65535, got "abc"`,
				"DIR/kechod.yaml:3: module.nmae: unknown key; did you mean module.name?",
				`DIR/kechod.yaml:5: health.interval: "5" has no unit; write e.g. 5s (units: ms, s, m, h)`,
				`DIR/kechod.yaml:7: log.level: want one of debug, info, warn, error, got "loud"`,
			}},
		{name: "problems of several files, in order", main: "module:\n  port: 0\n",
			dropins: map[string]string{"20-b.yaml": "log: {format: xml}\n", "10-a.yaml": "health:\n  recovery: never\n"},
			want: []string{
				"DIR/kechod.yaml:2: module.port: want an integer 1-65535, got 0",
				`DIR/conf.d/10-a.yaml:2: health.recovery: want one of reload, none, got "never"`,
				`DIR/conf.d/20-b.yaml:1: log.format: want one of text, json, got "xml"`,
			}},
		{name: "env bad values name the variable", main: "",
			env: env{"KECHOD_MODULE_PORT": "abc", "KECHOD_HEALTH_INTERVAL": "2", "KECHOD_MODULE_LOG_PACKETS": "maybe", "KECHOD_LOG_LEVEL": "trace", "KECHOD_HEALTH_FAILURE_THRESHOLD": ""},
			want: []string{
				`env KECHOD_MODULE_PORT: module.port: want an integer 1-65535, got "abc"`,
				`env KECHOD_MODULE_LOG_PACKETS: module.log_packets: want true or false, got "maybe"`,
				`env KECHOD_HEALTH_INTERVAL: health.interval: "2" has no unit; write e.g. 2s (units: ms, s, m, h)`,
				`env KECHOD_HEALTH_FAILURE_THRESHOLD: health.failure_threshold: want an integer >= 1, got ""`,
				`env KECHOD_LOG_LEVEL: log.level: want one of debug, info, warn, error, got "trace"`,
			}},
		{name: "env timeout not below file interval", main: "health:\n  interval: 1s\n", env: env{"KECHOD_HEALTH_TIMEOUT": "1s"},
			want: []string{"env KECHOD_HEALTH_TIMEOUT: health.timeout: want a duration shorter than health.interval, got 1s (1s, from DIR/kechod.yaml:2)"}},
		{name: "flag bad value", main: "", flags: []Override{{Key: "log.format", Value: "JSON", Source: "flag --log-format"}},
			want: []string{`flag --log-format: log.format: want one of text, json, got "JSON"; did you mean json?`}},
		{name: "file problems before env problems", main: "module:\n  port: x\n", env: env{"KECHOD_MODULE_PORT": "y"},
			want: []string{
				`DIR/kechod.yaml:2: module.port: want an integer 1-65535, got "x"`,
				`env KECHOD_MODULE_PORT: module.port: want an integer 1-65535, got "y"`,
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := setup(t, c.main, c.dropins)
			if c.name == "main file is a directory" {
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				c.want = []string{"DIR/kechod.yaml: cannot read: is a directory"}
			}
			dir := filepath.Dir(p)
			_, err := tload(t, p, c.env, c.flags...)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *config.Error", err)
			}
			got := strings.Split(strings.ReplaceAll(err.Error(), dir, "DIR"), "\n")
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if len(ce.Problems) != len(c.want) {
				t.Errorf("%d problems, want %d", len(ce.Problems), len(c.want))
			}
			for _, pr := range ce.Problems {
				if pr.Source == "" {
					t.Errorf("problem without a source: %+v", pr)
				}
			}
		})
	}
}

func TestUnreadableDropIns(t *testing.T) {
	p := setup(t, "", nil)
	dir := filepath.Dir(p)
	// conf.d is a file, not a directory.
	if err := os.WriteFile(filepath.Join(dir, DropInDir), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := tload(t, p, nil)
	if err == nil || err.Error() != filepath.Join(dir, DropInDir)+": cannot read the drop-in directory: not a directory" {
		t.Errorf("conf.d a file: %v", err)
	}
	// A drop-in that is a directory.
	p = setup(t, "", map[string]string{"10.yaml": ""})
	dir = filepath.Dir(p)
	bad := filepath.Join(dir, DropInDir, "20.yaml")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = tload(t, p, nil)
	if err == nil || err.Error() != bad+": cannot read: is a directory" {
		t.Errorf("drop-in a directory: %v", err)
	}
	// Unreadable file (meaningless as root, who reads anything).
	if os.Geteuid() != 0 {
		p = setup(t, "module: {port: 1}\n", nil)
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := tload(t, p, nil); err == nil || !strings.Contains(err.Error(), "cannot read: permission denied") {
			t.Errorf("unreadable: %v", err)
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ sec, leaf, want string }{
		{"health", "intervall", "health.interval"},
		{"health", "timout", "health.timeout"},
		{"health", "failure_treshold", "health.failure_threshold"},
		{"module", "prot", "module.port"},
		{"module", "Port", "module.port"},
		{"log", "lvl", "log.level"},
		{"log", "colour", ""},
		{"health", "interval_ms", "health.interval"},
		{"modul", "port", "module.port"},
		{"metric", "listen", "metrics.listen"},
		{"health", "xyz", ""},
		{"modlue", "", "module"},
		{"x", "", ""},
	} {
		if got := suggestKey(tc.sec, tc.leaf); got != tc.want {
			t.Errorf("suggestKey(%q, %q) = %q, want %q", tc.sec, tc.leaf, got, tc.want)
		}
	}
	if d := editDistance("intervall", "interval"); d != 1 {
		t.Errorf("distance %d", d)
	}
	if d := editDistance("tiemout", "timeout"); d != 1 {
		t.Errorf("transposition distance %d", d)
	}
}

func TestProbeTarget(t *testing.T) {
	c := Defaults()
	if got := c.ProbeTargetString(); got != "127.0.0.1:5555" {
		t.Errorf("%s", got)
	}
	c.Module.BindAddress, c.Module.Port = "::", 7777
	if got := c.ProbeTargetString(); got != "[::1]:7777" {
		t.Errorf("%s", got)
	}
	c.Module.BindAddress = "::ffff:10.0.0.1"
	if got := c.ProbeTargetString(); got != "10.0.0.1:7777" {
		t.Errorf("v4-mapped bind: %s", got)
	}
	c.Module.BindAddress = "2001:db8::5"
	if got := c.ProbeTargetString(); got != "[2001:db8::5]:7777" {
		t.Errorf("IPv6 bind: %s", got)
	}
	c.Module.BindAddress = "127.0.0.2"
	if got := c.ProbeTargetString(); got != "127.0.0.2:7777" {
		t.Errorf("loopback alias bind: %s", got)
	}
	c.Health.Address = "192.0.2.1"
	if got := c.ProbeTargetString(); got != "192.0.2.1:7777" {
		t.Errorf("%s", got)
	}
}

func TestExitConfig(t *testing.T) {
	if ExitConfig != 78 {
		t.Errorf("ExitConfig = %d", ExitConfig)
	}
}
