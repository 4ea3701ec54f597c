package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// kind is the YAML type of a key's value.
type kind int

const (
	kString kind = iota
	kInt
	kBool
	kDuration
)

// field describes one key of the schema.
type field struct {
	key  string // dotted: "module.port"
	kind kind
	// want says what is allowed, completing "want ...".
	want string
	// min, max bound kInt values.
	min, max int64
	// check validates a parsed value beyond its type and bounds; it
	// returns "" when the value is fine.
	check func(v any) string
	// enum lists the allowed values of an enumerated kString.
	enum []string
	// get reads the key's value from a Config (for defaults and output).
	get func(c *Config) any
}

// envName is the environment variable that sets the key.
func (f *field) envName() string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(f.key, ".", "_"))
}

func (f *field) section() string { s, _, _ := strings.Cut(f.key, "."); return s }
func (f *field) leaf() string    { _, l, _ := strings.Cut(f.key, "."); return l }

// sections in schema order.
var sections = []string{"module", "health", "metrics", "log"}

// Maximum length of a kernel module name: MODULE_NAME_LEN (64 - sizeof
// unsigned long) minus the terminating NUL.
const maxModuleName = 55

var moduleNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]*$`)

// schema lists every key, in the order kechod.yaml(5) documents them.
var schema = []*field{
	{key: "module.name", kind: kString,
		want: "a kernel module name (letters, digits, _ and -, at most 55 characters)",
		check: func(v any) string {
			s := v.(string)
			if len(s) > maxModuleName || !moduleNameRE.MatchString(s) {
				return "bad"
			}
			return ""
		},
		get: func(c *Config) any { return c.Module.Name }},
	{key: "module.port", kind: kInt, want: "an integer 1-65535", min: 1, max: 65535,
		get: func(c *Config) any { return c.Module.Port }},
	{key: "module.bind_address", kind: kString,
		want: "an IPv4 or IPv6 address literal such as 0.0.0.0 or ::",
		check: func(v any) string {
			a, err := netip.ParseAddr(v.(string))
			if err != nil || a.Zone() != "" {
				return "bad"
			}
			return ""
		},
		get: func(c *Config) any { return c.Module.BindAddress }},
	{key: "module.log_packets", kind: kBool, want: "true or false",
		get: func(c *Config) any { return c.Module.LogPackets }},
	{key: "module.max_pps", kind: kInt, want: "an integer 0-4294967295 (0 = no cap)", min: 0, max: math.MaxUint32,
		get: func(c *Config) any { return c.Module.MaxPPS }},
	{key: "module.unload_on_stop", kind: kBool, want: "true or false",
		get: func(c *Config) any { return c.Module.UnloadOnStop }},

	{key: "health.interval", kind: kDuration, want: "a duration > 0 with a unit, e.g. 5s",
		check: positive, get: func(c *Config) any { return c.Health.Interval }},
	{key: "health.timeout", kind: kDuration, want: "a duration > 0 with a unit, shorter than health.interval, e.g. 1s",
		check: positive, get: func(c *Config) any { return c.Health.Timeout }},
	{key: "health.failure_threshold", kind: kInt, want: "an integer >= 1", min: 1, max: math.MaxInt32,
		get: func(c *Config) any { return c.Health.FailureThreshold }},
	{key: "health.address", kind: kString, want: `an IP address literal, or "" for module.bind_address (loopback of its family for a wildcard)`,
		check: func(v any) string {
			if s := v.(string); s != "" {
				if _, err := netip.ParseAddr(s); err != nil {
					return "bad"
				}
			}
			return ""
		},
		get: func(c *Config) any { return c.Health.Address }},
	{key: "health.payload_size", kind: kInt,
		want: fmt.Sprintf("an integer %d-%d (bytes; a probe needs %d for its nonce)", MinPayloadSize, MaxPayloadSize, MinPayloadSize),
		min:  MinPayloadSize, max: MaxPayloadSize,
		get: func(c *Config) any { return c.Health.PayloadSize }},
	{key: "health.recovery", kind: kString, enum: []string{string(RecoveryReload), string(RecoveryNone)},
		get: func(c *Config) any { return string(c.Health.Recovery) }},

	{key: "metrics.listen", kind: kString, want: `host:port such as 127.0.0.1:9555, or "" for off`,
		check: checkListen, get: func(c *Config) any { return c.Metrics.Listen }},

	{key: "log.level", kind: kString, enum: []string{LevelDebug, LevelInfo, LevelWarn, LevelError},
		get: func(c *Config) any { return c.Log.Level }},
	{key: "log.format", kind: kString, enum: []string{FormatText, FormatJSON},
		get: func(c *Config) any { return c.Log.Format }},
}

var byKey = func() map[string]*field {
	m := map[string]*field{}
	for _, f := range schema {
		if f.enum != nil {
			f.want = "one of " + strings.Join(f.enum, ", ")
		}
		m[f.key] = f
	}
	return m
}()

func positive(v any) string {
	if v.(time.Duration) <= 0 {
		return "bad"
	}
	return ""
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func checkListen(v any) string {
	s := v.(string)
	if s == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "bad"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "bad"
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if len(host) > 253 || !hostnameRE.MatchString(host) {
		return "bad"
	}
	return ""
}

// checkValue validates a typed value of f; it returns "" or a message.
func (f *field) checkValue(v any) string {
	switch f.kind {
	case kInt:
		n := v.(int64)
		if n < f.min || n > f.max {
			return "want " + f.want + ", got " + strconv.FormatInt(n, 10)
		}
	case kString:
		s := v.(string)
		if f.enum != nil {
			for _, e := range f.enum {
				if s == e {
					return ""
				}
			}
			msg := "want " + f.want + ", got " + strconv.Quote(s)
			if near := nearest(s, f.enum); near != "" {
				msg += "; did you mean " + near + "?"
			}
			return msg
		}
	}
	if f.check != nil && f.check(v) != "" {
		return "want " + f.want + ", got " + f.show(v)
	}
	return ""
}

// show renders a value in messages as it would be written in YAML.
func (f *field) show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case time.Duration:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

// typed converts a checked value to the Go type of Config's field, for
// viper to hold and decode.
func (f *field) typed(v any) any {
	if f.kind != kInt {
		return v
	}
	n := v.(int64)
	if f.key == "module.max_pps" {
		return uint32(n)
	}
	return int(n)
}

// parseString parses an environment or flag value.
func (f *field) parseString(s string) (any, string) {
	t := strings.TrimSpace(s)
	switch f.kind {
	case kString:
		return s, ""
	case kInt:
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return nil, "want " + f.want + ", got " + strconv.Quote(s)
		}
		return n, ""
	case kBool:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return nil, "want " + f.want + ", got " + strconv.Quote(s)
		}
		return b, ""
	case kDuration:
		return f.parseDuration(t, s)
	}
	panic("unreachable")
}

func (f *field) parseDuration(t, orig string) (any, string) {
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return nil, strconv.Quote(orig) + " has no unit; write e.g. " + t + "s (units: ms, s, m, h)"
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return nil, "want " + f.want + ", got " + strconv.Quote(orig) + " (units: ms, s, m, h; e.g. 500ms, 1m30s)"
	}
	return d, ""
}
