package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kecho-dev/kecho/test/bench/report"
	"github.com/kecho-dev/kecho/test/vm"
)

// ResultPrefix starts the guest's result line (see test/bench/guestrun).
const ResultPrefix = "BENCH-RESULT "

// Options configure one benchmark run.
type Options struct {
	Out         string        // results directory; empty = CacheRoot()/bench/<time>
	Duration    time.Duration // per saturation run
	RTTDuration time.Duration // per latency run
	Rounds      int
	Flows       int
	Window      int
	Footprint   time.Duration // kechod footprint period per interval; 0 = skip
	Variants    string        // "", "all" or names
	VRounds     int           // rounds over the variants
	Servers     string
	Quiet       bool // no live guest output
}

// ShortOptions is the quick smoke configuration (-short): one round of
// one-second runs, a 3-second footprint, no variants.
func ShortOptions() Options {
	return Options{Duration: time.Second, RTTDuration: time.Second, Rounds: 1, Flows: 4, Window: 32,
		Footprint: 3 * time.Second, VRounds: 1, Servers: "kecho,cecho,goecho,sink"}
}

// DefaultOptions is what `make bench` measures.
func DefaultOptions() Options {
	return Options{Duration: 3 * time.Second, RTTDuration: 3 * time.Second, Rounds: 5, Flows: 4, Window: 32,
		Footprint: time.Minute, VRounds: 4, Servers: "kecho,cecho,goecho,sink"}
}

// Main is `go run ./test/bench`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := DefaultOptions()
	short := fs.Bool("short", false, "quick smoke run: one round of 1 s runs, 3 s footprint (overrides the durations)")
	fs.StringVar(&o.Out, "out", "", "results directory (default ${KECHO_CACHE_DIR:-~/.cache/kecho}/bench/<time>)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of each saturation run")
	fs.DurationVar(&o.RTTDuration, "rtt-duration", o.RTTDuration, "length of each latency run")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds over all servers; the tables show medians")
	fs.IntVar(&o.Flows, "flows", o.Flows, "flows (source ports) of the saturation load")
	fs.IntVar(&o.Window, "window", o.Window, "outstanding datagrams per flow")
	fs.DurationVar(&o.Footprint, "footprint", o.Footprint, "kechod footprint period at each probe interval (0 = skip)")
	fs.StringVar(&o.Variants, "variants", "", "module variants to measure too: all, or names (see test/bench/driver/variants.go)")
	fs.IntVar(&o.VRounds, "variant-rounds", o.VRounds, "rounds over the module variants")
	fs.StringVar(&o.Servers, "servers", o.Servers, "servers to measure")
	fs.BoolVar(&o.Quiet, "q", false, "do not stream the guest's progress")
	render := fs.String("render", "", "only re-render results.md and chart.png from DIR/results.json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *render != "" {
		res, err := Render(*render)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		fmt.Fprint(stdout, report.Markdown(res))
		return 0
	}
	if *short {
		s := ShortOptions()
		o.Duration, o.RTTDuration, o.Rounds, o.Footprint, o.VRounds = s.Duration, s.RTTDuration, s.Rounds, s.Footprint, s.VRounds
	}
	res, dir, err := Run(context.Background(), o, stderr)
	if res != nil {
		fmt.Fprint(stdout, report.Markdown(res))
	}
	if dir != "" {
		fmt.Fprintf(stdout, "\nResults: %s (results.md, results.json, chart.png, vm/ logs)\n", dir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

func hostLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// Run builds everything, boots the VM and writes the results to the
// results directory, whose path it returns.
func Run(ctx context.Context, o Options, progress io.Writer) (*report.Results, string, error) {
	r := vm.ExecRunner{}
	if miss := vm.Missing(); miss != "" {
		return nil, "", fmt.Errorf("the benchmark VM needs %s (`make deps` as root installs them)", miss)
	}
	repo, err := vm.RepoRoot()
	if err != nil {
		return nil, "", err
	}
	vs, err := VariantsByName(o.Variants)
	if err != nil {
		return nil, "", err
	}
	dir := o.Out
	if dir == "" {
		dir = filepath.Join(vm.CacheRoot(), "bench", time.Now().UTC().Format("20060102-150405"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	if o.Out == "" {
		latest := filepath.Join(vm.CacheRoot(), "bench", "latest")
		_ = os.Remove(latest)
		_ = os.Symlink(filepath.Base(dir), latest)
	}
	work, err := os.MkdirTemp("", "kecho-bench-")
	if err != nil {
		return nil, dir, err
	}
	defer os.RemoveAll(work)

	k, err := vm.DefaultKernel()
	if err != nil {
		return nil, dir, err
	}
	extra, err := BuildC(ctx, r, filepath.Join(repo, "test", "bench", "cecho"), work)
	if err != nil {
		return nil, dir, err
	}
	version := vm.Version(repo)
	src, stub := vm.ModuleSource(repo)
	if stub {
		return nil, dir, errors.New("dkms/ has no dkms.conf: there is no kecho to measure")
	}
	script := fmt.Sprintf("%s/guestrun -duration %s -rtt-duration %s -rounds %d -flows %d -window %d -footprint %s -servers %s",
		GuestBinDir, o.Duration, o.RTTDuration, o.Rounds, o.Flows, o.Window, o.Footprint, o.Servers)
	if len(vs) > 0 {
		list, err := buildVariants(ctx, r, k, src, version, work, vs, extra, progress)
		if err != nil {
			return nil, dir, err
		}
		extra[GuestBinDir+"/variants/list.json"] = list
		script += fmt.Sprintf(" -variants %s/variants/list.json -variant-rounds %d", GuestBinDir, o.VRounds)
	}

	// Guest time: every run plus module loads and process starts, the
	// footprint twice, boot; doubled for a loaded host.
	servers := len(strings.Split(o.Servers, ","))
	est := time.Duration(o.Rounds*servers)*(o.RTTDuration+2*o.Duration+3*time.Second) + 2*o.Footprint + 20*time.Second
	est += time.Duration(o.VRounds*len(vs)) * (o.RTTDuration + o.Duration + 3*time.Second)
	spec := vm.Spec{
		Programs:       GoPrograms,
		ProgramLdflags: "-X github.com/kecho-dev/kecho/internal/version.Version=" + version,
		ExtraFiles:     extra,
		Script:         script,
		Timeout:        2*est + 5*time.Minute,
		LogDir:         filepath.Join(dir, "vm"),
	}
	if !o.Quiet && progress != nil {
		spec.Output = lineFilter(progress, ResultPrefix, "guest| ")
	}
	load0 := hostLoad()
	slog.Info("booting the benchmark VM", "kernel", k.Release, "estimate", est.Round(time.Second), "host_load", load0, "results", dir)
	vres, err := vm.Run(ctx, spec)
	if err != nil {
		return nil, dir, err
	}
	var res *report.Results
	for _, l := range vres.ScriptOutput {
		if i := strings.Index(l, ResultPrefix); i >= 0 {
			res = &report.Results{}
			if err := json.Unmarshal([]byte(l[i+len(ResultPrefix):]), res); err != nil {
				return nil, dir, fmt.Errorf("guest results: %w", err)
			}
		}
	}
	if res == nil {
		return nil, dir, fmt.Errorf("the guest printed no results: %s (logs in %s)", strings.Join(vres.Problems(), "; "), vres.LogDir)
	}
	res.HostLoad = [2]string{load0, hostLoad()}
	res.HostCPUs = runtime.NumCPU()
	res.Accel = "TCG"
	if os.Getenv(vm.EnvAccel) == "kvm" {
		res.Accel = "KVM"
	}
	res.BootTime = vres.BootTime.Round(time.Second).String()
	if out, err := r.Run(ctx, vm.Cmd{Dir: repo, Name: "git", Args: []string{"rev-parse", "--short", "HEAD"}}); err == nil {
		res.Commit = strings.TrimSpace(string(out))
		if out, err := r.Run(ctx, vm.Cmd{Dir: repo, Name: "git", Args: []string{"status", "--porcelain", "--", "dkms"}}); err == nil && len(bytes.TrimSpace(out)) > 0 {
			res.Commit += " (dkms/ with uncommitted changes)"
		}
	}
	if err := Write(dir, res); err != nil {
		return res, dir, err
	}
	if vres.Failed() {
		return res, dir, fmt.Errorf("the benchmark VM run failed: %s (logs in %s)", strings.Join(vres.Problems(), "; "), vres.LogDir)
	}
	return res, dir, nil
}

// Render reads dir/results.json and rewrites results.md and chart.png.
func Render(dir string) (*report.Results, error) {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return nil, err
	}
	res := &report.Results{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "results.json"), err)
	}
	return res, Write(dir, res)
}

// Write stores results.json, results.md and chart.png in dir.
func Write(dir string, res *report.Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(report.Markdown(res)), 0o644); err != nil {
		return err
	}
	var png bytes.Buffer
	if err := report.WriteChart(&png, res); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.png"), png.Bytes(), 0o644)
}

// guestVariant is an entry of the guest's variants list (see guestrun).
type guestVariant struct {
	Name   string `json:"name"`
	Desc   string `json:"desc"`
	File   string `json:"file"`
	Params string `json:"params"`
}

// buildVariants builds each variant from a patched copy of src, adds the
// modules to extra and returns the host path of the guest's list.
func buildVariants(ctx context.Context, r vm.Runner, k vm.Kernel, src, version, work string, vs []Variant, extra map[string]string, progress io.Writer) (string, error) {
	var list []guestVariant
	for i, v := range vs {
		vdir := filepath.Join(work, "variant-"+v.Name)
		if err := PrepareSource(src, filepath.Join(vdir, "src"), v); err != nil {
			return "", err
		}
		start := time.Now()
		ko, cached, err := vm.CachedBuildModule(ctx, r, k, filepath.Join(vdir, "src"), version, vdir)
		if err != nil {
			return "", fmt.Errorf("variant %s: %w", v.Name, err)
		}
		slog.Info("module variant built", "variant", v.Name, "cached", cached, "took", time.Since(start).Round(time.Second))
		g := fmt.Sprintf("%s/variants/%02d-%s.ko", GuestBinDir, i, v.Name)
		extra[g] = ko
		list = append(list, guestVariant{Name: v.Name, Desc: v.Desc, File: g, Params: v.Params})
	}
	b, err := json.Marshal(list)
	if err != nil {
		return "", err
	}
	p := filepath.Join(work, "variants.json")
	return p, os.WriteFile(p, b, 0o644)
}

// lineFilter copies whole lines to w with a prefix, except those that
// contain drop, and without control characters other than tabs.
func lineFilter(w io.Writer, drop, prefix string) *vm.LineWriter {
	return &vm.LineWriter{Line: func(line string) error {
		if drop != "" && strings.Contains(line, drop) {
			return nil
		}
		_, err := fmt.Fprintf(w, "%s%s\n", prefix, strings.Map(dropControl, line))
		return err
	}}
}

func dropControl(r rune) rune {
	if r < 0x20 && r != '\t' {
		return -1
	}
	return r
}
