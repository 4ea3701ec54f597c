// Command guestrun is the benchmark's in-guest runner. Inside the VM that
// the host driver (test/bench) boots it starts each echo server in turn
// (kecho, the C recvmmsg/sendmmsg echo, the Go echo, the one-way sink),
// drives it with the load generator, takes the guest's /proc/stat and
// the servers' own counters around every run, measures kechod's start
// time, memory and CPU, optionally measures module variants, and prints
// everything as one line "BENCH-RESULT <json>" (report.Results) for the
// host.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// ResultPrefix starts the line that carries the results to the host.
const ResultPrefix = "BENCH-RESULT "

func main() {
	cfg := options{}
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each saturation run (whole seconds)")
	flag.DurationVar(&cfg.rttDuration, "rtt-duration", 5*time.Second, "length of each latency run (whole seconds)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds over all servers (medians are reported)")
	flag.IntVar(&cfg.flows, "flows", 4, "flows of the saturation load")
	flag.IntVar(&cfg.window, "window", 32, "outstanding datagrams per flow")
	flag.DurationVar(&cfg.footprint, "footprint", time.Minute, "kechod footprint period per probe interval (0 = skip)")
	flag.StringVar(&cfg.servers, "servers", "kecho,cecho,goecho,sink", "servers to measure")
	flag.IntVar(&cfg.variantRounds, "variant-rounds", 2, "rounds over the module variants")
	flag.StringVar(&cfg.variantsList, "variants", "", "JSON list of module variants to measure (empty = none)")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	res, err := run(cfg)
	if err != nil {
		slog.Error("benchmark failed", "err", err)
	}
	b, jerr := json.Marshal(res)
	if jerr != nil {
		slog.Error("encode results", "err", jerr)
		os.Exit(1)
	}
	fmt.Printf("%s%s\n", ResultPrefix, b)
	if err != nil {
		os.Exit(1)
	}
}
