// Package config is kechod's configuration: the schema of kechod.yaml(5),
// its defaults, and loading it from the main file, the conf.d drop-ins, the
// environment and command-line flags, in that order of precedence.
//
// Loading is strict. Every file is decoded as a YAML node tree and checked
// key by key before anything is merged, so that each problem names the file,
// the line, the dotted key and what is allowed. All problems of all sources
// are collected into one *Error; callers exit with ExitConfig (78, EX_CONFIG)
// when errors.As finds one.
package config

import (
	"net"
	"net/netip"
	"time"
)

// File locations and environment names.
const (
	// DefaultPath is the main configuration file when neither --config nor
	// KECHOD_CONFIG names another.
	DefaultPath = "/etc/kechod/kechod.yaml"
	// DropInDir is the name of the drop-in directory beside the main file.
	DropInDir = "conf.d"
	// EnvConfig names the environment variable that picks the main file.
	EnvConfig = "KECHOD_CONFIG"
	// EnvPrefix prefixes the per-key environment variables,
	// KECHOD_<SECTION>_<KEY>.
	EnvPrefix = "KECHOD"
)

// ExitConfig is the exit status for a configuration error (EX_CONFIG from
// sysexits.h); kechod.service lists it in RestartPreventExitStatus.
const ExitConfig = 78

// Limits of health.payload_size: a probe carries a random nonce of
// MinPayloadSize bytes; MaxPayloadSize is the largest UDP payload over IPv4.
const (
	MinPayloadSize = 16
	MaxPayloadSize = 65507
)

// Recovery is what kechod does when the module is unhealthy.
type Recovery string

// Values of health.recovery.
const (
	RecoveryReload Recovery = "reload"
	RecoveryNone   Recovery = "none"
)

// Values of log.level and log.format.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"

	FormatText = "text"
	FormatJSON = "json"
)

// Config is the effective configuration; it mirrors kechod.yaml(5).
// A Config returned by Load has passed Validate.
type Config struct {
	Module  Module  `mapstructure:"module"`
	Health  Health  `mapstructure:"health"`
	Metrics Metrics `mapstructure:"metrics"`
	Log     Log     `mapstructure:"log"`
}

// Module is the kernel module and its parameters (section "module").
type Module struct {
	// Name is the module name given to modprobe.
	Name string `mapstructure:"name"`
	// Port is the UDP port, 1-65535 (module parameter "port").
	Port int `mapstructure:"port"`
	// BindAddress is an IPv4 or IPv6 literal without zone (module
	// parameter "bind_addr").
	BindAddress string `mapstructure:"bind_address"`
	// LogPackets is module parameter "log_packets".
	LogPackets bool `mapstructure:"log_packets"`
	// MaxPPS caps echoes per second, 0 = no cap (module parameter
	// "max_pps"); 0-4294967295.
	MaxPPS uint32 `mapstructure:"max_pps"`
	// UnloadOnStop unloads the module on stop, only if kechod loaded it.
	UnloadOnStop bool `mapstructure:"unload_on_stop"`
}

// Health configures the UDP health probes (section "health").
type Health struct {
	// Interval between probes, > 0.
	Interval time.Duration `mapstructure:"interval"`
	// Timeout for one probe's echo, > 0 and < Interval.
	Timeout time.Duration `mapstructure:"timeout"`
	// FailureThreshold is the number of consecutive failed probes before
	// the state becomes unhealthy, >= 1.
	FailureThreshold int `mapstructure:"failure_threshold"`
	// Address is the probe target, an IP literal; empty = module.bind_address,
	// or the loopback address of its family for a wildcard bind (see ProbeTarget).
	Address string `mapstructure:"address"`
	// PayloadSize is the probe datagram size in bytes,
	// MinPayloadSize-MaxPayloadSize.
	PayloadSize int `mapstructure:"payload_size"`
	// Recovery is what to do when unhealthy.
	Recovery Recovery `mapstructure:"recovery"`
}

// Metrics configures the Prometheus endpoint (section "metrics").
type Metrics struct {
	// Listen is host:port for /metrics; empty = off.
	Listen string `mapstructure:"listen"`
}

// Log configures kechod's own log on stderr (section "log").
type Log struct {
	// Level is one of LevelDebug, LevelInfo, LevelWarn, LevelError.
	Level string `mapstructure:"level"`
	// Format is FormatText or FormatJSON.
	Format string `mapstructure:"format"`
}

// Defaults returns the built-in configuration; it equals the shipped
// configs/kechod.yaml.
func Defaults() Config {
	return Config{
		Module: Module{
			Name:        "kecho",
			Port:        5555,
			BindAddress: "0.0.0.0",
			LogPackets:  true,
		},
		Health: Health{
			Interval:         5 * time.Second,
			Timeout:          time.Second,
			FailureThreshold: 3,
			PayloadSize:      32,
			Recovery:         RecoveryReload,
		},
		Log: Log{Level: LevelInfo, Format: FormatText},
	}
}

// ProbeTarget is where health probes go, at module.port: health.address
// when set; else module.bind_address itself when the module is bound to one
// address (loopback would not reach it); else, for a wildcard bind, the
// loopback address of its family. It assumes a validated Config.
func (c Config) ProbeTarget() netip.AddrPort {
	var a netip.Addr
	b, err := netip.ParseAddr(c.Module.BindAddress)
	switch {
	case c.Health.Address != "":
		a, _ = netip.ParseAddr(c.Health.Address)
	case err == nil && !b.IsUnspecified():
		a = b.Unmap()
	case err == nil && b.Is6():
		a = netip.IPv6Loopback()
	default:
		a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.AddrPortFrom(a, uint16(c.Module.Port))
}

// ProbeTargetString is ProbeTarget in the form net.Dial expects.
func (c Config) ProbeTargetString() string {
	t := c.ProbeTarget()
	return net.JoinHostPort(t.Addr().String(), itoa(int(t.Port())))
}
