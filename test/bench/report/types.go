package report

import "time"

// Server names as the runner and the tables use them.
const (
	Kecho  = "kecho"
	CEcho  = "cecho"
	GoEcho = "goecho"
	Sink   = "sink"
)

// Workload names.
const (
	RTT64   = "rtt64"   // closed loop, one flow, one 64-byte datagram outstanding
	Sat64   = "sat64"   // saturation, 64-byte payload
	Sat1400 = "sat1400" // saturation, 1400-byte payload
)

// Load is the load generator's JSON line (test/bench/cecho/loadgen.c).
type Load struct {
	Mode             string `json:"mode"`
	Size             int    `json:"size"`
	Flows            int    `json:"flows"`
	Window           int    `json:"window"`
	DurationNS       uint64 `json:"duration_ns"`
	WindowNS         uint64 `json:"window_ns"`
	Sent             uint64 `json:"sent"`
	Received         uint64 `json:"received"`
	ReceivedInWindow uint64 `json:"received_in_window"`
	RxBytes          uint64 `json:"rx_bytes"`
	Corrupt          uint64 `json:"corrupt"`
	Timeouts         uint64 `json:"timeouts"`
	SendErrors       uint64 `json:"send_errors"`
	RecvErrors       uint64 `json:"recv_errors"`
	SendCalls        uint64 `json:"send_calls"`
	RecvCalls        uint64 `json:"recv_calls"`
	Polls            uint64 `json:"polls"`
	Samples          uint64 `json:"samples"`
	CPUUserNS        uint64 `json:"cpu_user_ns"`
	CPUSysNS         uint64 `json:"cpu_sys_ns"`
}

// ServerStats is what a server reported about the run: the user-space
// servers' JSON line on exit, or kecho's sysfs counter deltas.
type ServerStats struct {
	Rx       uint64 `json:"rx"`
	Tx       uint64 `json:"tx,omitempty"`
	RxBytes  uint64 `json:"rx_bytes"`
	TxErrors uint64 `json:"tx_errors,omitempty"`
	// FirstNS/LastNS: the sink's first and last datagram (CLOCK_MONOTONIC).
	FirstNS uint64 `json:"first_ns,omitempty"`
	LastNS  uint64 `json:"last_ns,omitempty"`
	// Counters are kecho's /sys/module/kecho/stats deltas.
	Counters map[string]uint64 `json:"counters,omitempty"`
	// SocketDrops are the UDP receive-buffer drops of the server's socket
	// (/proc/net/udp "drops") at the end of the run.
	SocketDrops uint64 `json:"socket_drops"`
}

// CPU is a delta of the guest's aggregate /proc/stat "cpu" line, in
// USER_HZ ticks.
type CPU struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
	// Hz is USER_HZ (100 on x86).
	Hz uint64
	// CPUs is how many CPUs the guest has.
	CPUs int
}

// Busy is the busy ticks: everything but idle and iowait.
func (c CPU) Busy() uint64 {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
}

// Total is all ticks.
func (c CPU) Total() uint64 { return c.Busy() + c.Idle + c.IOWait }

// Percentiles of round-trip times, in nanoseconds.
type Percentiles struct {
	N    int     `json:"n"`
	Min  uint64  `json:"min_ns"`
	P50  uint64  `json:"p50_ns"`
	P90  uint64  `json:"p90_ns"`
	P99  uint64  `json:"p99_ns"`
	P999 uint64  `json:"p999_ns"`
	Max  uint64  `json:"max_ns"`
	Mean float64 `json:"mean_ns"`
}

// Run is one workload against one server (or module variant) in one round.
type Run struct {
	Server   string       `json:"server"`
	Workload string       `json:"workload"`
	Round    int          `json:"round"`
	Load     Load         `json:"load"`
	Stats    ServerStats  `json:"stats"`
	CPU      CPU          `json:"cpu"`
	RTT      *Percentiles `json:"rtt,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// Footprint is kechod's own cost over a period at one probe interval.
type Footprint struct {
	Name       string        `json:"name"`
	Interval   time.Duration `json:"interval"`
	Period     time.Duration `json:"period"`
	Ready      time.Duration `json:"ready"` // start to READY=1
	RSSKiB     uint64        `json:"rss_kib"`
	MaxRSSKiB  uint64        `json:"max_rss_kib"`
	CPUNS      uint64        `json:"cpu_ns"` // utime+stime over Period
	LastStatus string        `json:"last_status"`
	Log        string        `json:"log,omitempty"` // the last lines kechod logged
	Error      string        `json:"error,omitempty"`
}

// CPUPercent is the share of one core kechod used over the period.
func (f Footprint) CPUPercent() float64 {
	if f.Period <= 0 {
		return 0
	}
	return 100 * float64(f.CPUNS) / float64(f.Period.Nanoseconds())
}

// Variant describes one module build measured in the variants phase.
type Variant struct {
	Name string `json:"name"`
	Desc string `json:"desc"`
}

// Results is everything one benchmark run measured.
type Results struct {
	Started    time.Time   `json:"started"`
	Kernel     string      `json:"kernel"`
	Commit     string      `json:"commit"`
	HostLoad   [2]string   `json:"host_load"` // /proc/loadavg before, after
	HostCPUs   int         `json:"host_cpus"`
	GuestCPUs  int         `json:"guest_cpus"`
	Accel      string      `json:"accel"`
	Config     Config      `json:"config"`
	Runs       []Run       `json:"runs"`
	Footprints []Footprint `json:"footprints"`
	Variants   []Variant   `json:"variants,omitempty"`
	VariantRun []Run       `json:"variant_runs,omitempty"`
	BootTime   string      `json:"boot_time"`
}

// Config is how the run was set up.
type Config struct {
	Duration    time.Duration `json:"duration"`
	RTTDuration time.Duration `json:"rtt_duration"`
	Rounds      int           `json:"rounds"`
	Flows       int           `json:"flows"`
	Window      int           `json:"window"`
	Footprint   time.Duration `json:"footprint"`
}
