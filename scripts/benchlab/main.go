// Command benchlab is shadowtap's load benchmark on the mirror lab (`make
// bench` runs it as `go run ./scripts/benchlab`; it needs root).
//
// It brings a lab up (testenv) and starts a shadow HTTP server in the shadow
// namespace, as its own process so its CPU is measured apart: by default the
// cheapest server possible (it reads each request head and writes a canned
// 200), so that what is measured is the receiver; --shadow nethttp runs
// net/http's server instead, for reference. For each traffic shape
// (--shape), capture mode (--modes) and variant (--variants: parse-only with
// no --target, end to end with the comparison, end to end without it) it
// runs `shadowtap run` in the receiver namespace and, for rising rates
// (--rates; "max" is the generator's top speed), drives testenv/mirrorgen
// from the production namespace through AF_PACKET writers on prod's mir0:
// VXLAN frames from 10.82.0.1 to recv mir0 (10.82.0.2, its MAC), VNI 42, to
// inner servers 10.81.<step>.<2+worker>:8080. After each step and a settle
// time it reads shadowtap's metric deltas (capture outcomes, flow queue
// drops, requests parsed, replayed, dropped, failed, compared) and the CPU
// time of shadowtap, the shadow server and the generator (/proc/PID/stat).
//
// Shapes (issue 12): conn is one page view per connection, 10 frames (3
// handshake, a ~400-byte GET, a 4.4 KB answer in 4 segments, 2 FIN); keepalive
// is ten page views per connection, 55 frames; mix is the older default mix
// (--mix, --requests-per-conn).
//
// A step is lossless when every frame the generator sent was emitted by the
// capture stage and every request the generator sent completely was parsed
// and (end to end) replayed and answered. The report gives, per shape, every
// step with requests/s, the share answered, the cores used by shadowtap, the
// shadow and the generator, and the CPU per replayed request: (end-to-end
// CPU - parse-only CPU scaled to the same packets) / requests replayed, from
// the steps of the same shape, mode and requested rate. Then the highest
// lossless rate per variant, and comparison on vs off, as Markdown for
// BENCHMARKS.md.
//
// The benchmark sits outside the data path: it only drives the lab and reads
// what shadowtap exposes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// options are the command-line flags.
type options struct {
	shapes    []string
	variants  []string
	modes     []string
	rates     []float64 // 0: as fast as the generator goes
	step      time.Duration
	settle    time.Duration
	quick     bool
	bin       string
	gen       genConfig // the mix shape; the others are derived in shapeConfig
	mixText   string
	shadow    string
	stopAfter int
	extra     []string
	out       string
	perfDir   string
	verbose   bool

	// Soak (--soak): one rate for a long time, sampled.
	soak, soakEvery, soakWarmup time.Duration
	soakRate                    float64
}

// Shapes and variants.
const (
	shapeConn      = "conn"
	shapeKeepAlive = "keepalive"
	shapeMix       = "mix"

	variantParse     = "parse"     // no --target: capture and parsing only
	variantCompare   = "compare"   // end to end, with the comparison stage (the default of shadowtap run)
	variantNoCompare = "nocompare" // end to end, --no-compare
)

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("benchlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	shapes := fs.String("shape", "conn,keepalive", "traffic shapes, in order: conn (1 page view per connection, 10 frames), keepalive (10 per connection, 55 frames), mix (--mix)")
	variants := fs.String("variants", "parse,compare,nocompare", "shadowtap variants: parse (no --target), compare (end to end), nocompare (end to end, --no-compare)")
	modes := fs.String("modes", "xdp", "capture modes to measure, in order (xdp, socket); gen measures the generator alone (no shadowtap)")
	rates := fs.String("rates", "100k,200k,300k,max", "mirrored packets/s of each step (k and M suffixes; max: as fast as the generator goes)")
	fs.DurationVar(&o.step, "step", 5*time.Second, "duration of each rate step")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "longest wait after a step for shadowtap to finish replaying it")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: one rate (50k), 2s, every shape, variant and mode")
	fs.StringVar(&o.bin, "bin", "", "shadowtap binary (default: build ./cmd/shadowtap into a temporary directory)")
	fs.StringVar(&o.shadow, "shadow", shadowMinimal, "shadow server: minimal (reads each request head, writes a canned 200), same (the minimal server answering as production did: no difference to compare) or nethttp (net/http's server)")
	fs.IntVar(&o.gen.workers, "gen-workers", 2, "generator goroutines, each with its own AF_PACKET socket and share of the rate")
	fs.IntVar(&o.gen.conns, "conns", 64, "concurrent mirrored connections (all workers)")
	fs.IntVar(&o.gen.requestsPerConn, "requests-per-conn", 10, "keep-alive exchanges per connection (shape mix)")
	fs.StringVar(&o.mixText, "mix", "small=75,large=20,head=5", "exchange mix of shape mix (mirrorgen.ParseMix: small, large, head, post, pipelined, page)")
	fs.IntVar(&o.gen.smallBody, "small-body", 600, "mean body of small responses, bytes (shape mix)")
	fs.IntVar(&o.gen.largeKiB, "large-kib", 32, "body of large responses, KiB (1448-byte segments; shape mix)")
	fs.IntVar(&o.stopAfter, "stop-after", 0, "stop a variant after this many lossy steps in a row (0: run every rate)")
	extra := fs.String("shadowtap-args", "", "extra flags for shadowtap run, space separated")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	fs.StringVar(&o.perfDir, "perf-record", "", "record a perf profile (perf record -g) of shadowtap during each end-to-end step into this directory")
	fs.BoolVar(&o.verbose, "v", false, "log lab setup steps")
	fs.DurationVar(&o.soak, "soak", 0, "instead of the rate steps, run --soak-rate for this long with the first of --modes and fail if RSS, heap, goroutines or open fds trend upward after --soak-warmup")
	soakRate := fs.String("soak-rate", "150k", "mirrored packets/s of the soak (default: half the lossless XDP rate of BENCHMARKS.md)")
	fs.DurationVar(&o.soakEvery, "soak-every", time.Minute, "soak sampling interval")
	fs.DurationVar(&o.soakWarmup, "soak-warmup", 5*time.Minute, "soak samples before this are not judged")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.shapes, err = parseList("--shape", *shapes, shapeConn, shapeKeepAlive, shapeMix); err != nil {
		return o, err
	}
	if o.variants, err = parseList("--variants", *variants, variantParse, variantCompare, variantNoCompare); err != nil {
		return o, err
	}
	if o.modes, err = parseList("--modes", *modes, "xdp", "socket", "gen"); err != nil {
		return o, err
	}
	if o.shadow != shadowMinimal && o.shadow != shadowSame && o.shadow != shadowNetHTTP {
		return o, fmt.Errorf("--shadow %q: want %s, %s or %s", o.shadow, shadowMinimal, shadowSame, shadowNetHTTP)
	}
	if o.rates, err = parseRates(*rates); err != nil {
		return o, err
	}
	if o.soak > 0 {
		r, err := parseRates(*soakRate)
		if err != nil || len(r) != 1 {
			return o, fmt.Errorf("--soak-rate %q: want one rate", *soakRate)
		}
		o.soakRate = r[0]
		if o.soakEvery <= 0 || o.soakWarmup < 0 || o.soak < o.soakWarmup+3*o.soakEvery {
			return o, errors.New("--soak must leave at least three --soak-every samples after --soak-warmup")
		}
		if o.modes[0] == "gen" {
			return o, errors.New("--soak needs a capture mode first in --modes (xdp or socket)")
		}
	}
	if o.quick {
		o.rates, o.step = []float64{50e3}, 2*time.Second
		o.settle = min(o.settle, 3*time.Second)
	}
	if o.step <= 0 {
		return o, errors.New("--step must be positive")
	}
	if o.gen.workers < 1 || o.gen.workers > 64 {
		return o, errors.New("--gen-workers must be 1..64")
	}
	if o.gen.mix, err = mirrorgen.ParseMix(o.mixText); err != nil {
		return o, err
	}
	o.extra = strings.Fields(*extra)
	return o, nil
}

// parseList parses a comma-separated list of known names.
func parseList(flagName, s string, known ...string) ([]string, error) {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(known, v) {
			return nil, fmt.Errorf("%s: %q is not one of %s", flagName, v, strings.Join(known, ", "))
		}
		out = append(out, v)
	}
	return out, nil
}

// shapeConfig is the generator's configuration for a shape.
func shapeConfig(o options, shape string) genConfig {
	g := o.gen
	switch shape {
	case shapeConn:
		g.mix, g.requestsPerConn, g.leanAcks = mirrorgen.Mix{Page: 1}, 1, true
	case shapeKeepAlive:
		g.mix, g.requestsPerConn, g.leanAcks = mirrorgen.Mix{Page: 1}, 10, true
	}
	return g
}

// parseRates parses "25k,50k,1.2M,300000".
func parseRates(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "max" {
			out = append(out, 0)
			continue
		}
		mult := 1.0
		switch {
		case strings.HasSuffix(f, "k"), strings.HasSuffix(f, "K"):
			mult, f = 1e3, f[:len(f)-1]
		case strings.HasSuffix(f, "M"):
			mult, f = 1e6, f[:len(f)-1]
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("--rates: %q is not a positive rate", f)
		}
		out = append(out, v*mult)
	}
	if len(out) == 0 {
		return nil, errors.New("--rates: empty")
	}
	return out, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == shadowServerCmd {
		if err := shadowServerMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "benchlab shadow server:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "benchlab:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchlab:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, args []string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, XDP, AF_PACKET): run as root, e.g. sudo make bench")
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	workDir, err := os.MkdirTemp("", "benchlab-")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	fmt.Printf("benchlab: work directory %s (shadowtap logs)\n", workDir)

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(workDir, "shadowtap")
		fmt.Println("benchlab: building ./cmd/shadowtap")
		if err := buildShadowtap(ctx, bin); err != nil {
			return err
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("shadowtap binary: %w", err)
	}

	m := describeMachine(ctx)
	fmt.Printf("benchlab: %s, %d CPUs (%s), kernel %s, load %s\n", m.CPUModel, m.CPUs, m.GoVersion, m.Kernel, loadAvg())

	lab, err := testenv.Up(ctx, testenv.Options{Name: testenv.UniqueName("stbench"), Logger: logger})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer func() {
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "benchlab: lab cleanup:", err)
		}
	}()
	fmt.Printf("benchlab: lab %s up\n", lab.Name)

	pinRoot := filepath.Join("/sys/fs/bpf", lab.Name)
	defer os.RemoveAll(pinRoot)

	shadow, err := startShadowProc(ctx, lab, o.shadow, 8080, workDir)
	if err != nil {
		return err
	}
	defer func() {
		if err := shadow.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "benchlab: shadow server:", err)
		}
	}()
	fmt.Printf("benchlab: shadow server %s (pid %d)\n", o.shadow, shadow.pid)

	snd, err := newSender(lab, o.gen.workers)
	if err != nil {
		return err
	}
	defer snd.Close()

	if o.soak > 0 {
		// The soak keeps the mix shape, end to end, as it was written for.
		return runSoak(ctx, o, lab, snd, receiverConfig{
			bin: bin, mode: o.modes[0], variant: variantCompare, shape: shapeMix, pinRoot: pinRoot, logDir: workDir, lab: lab, extra: o.extra,
		})
	}
	var runs []runResult
	stepNo := 0
	report := func(w io.Writer) { printReport(w, o, m, args, runs) }
	for _, shape := range o.shapes {
		gc := shapeConfig(o, shape)
		for _, mode := range o.modes {
			if mode == "gen" {
				if err := runGenOnly(ctx, o, lab, snd, gc, &stepNo); err != nil {
					return err
				}
				continue
			}
			for _, variant := range o.variants {
				rr, err := runVariant(ctx, o, lab, snd, gc, shadow, receiverConfig{
					bin: bin, mode: mode, variant: variant, shape: shape, pinRoot: pinRoot, logDir: workDir, lab: lab, extra: o.extra,
				}, &stepNo)
				runs = append(runs, rr)
				if err != nil {
					report(os.Stdout)
					return fmt.Errorf("shape %s, %s, %s: %w", shape, mode, variant, err)
				}
			}
		}
	}
	if len(runs) == 0 {
		return nil
	}
	report(os.Stdout)
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		report(f)
		if err := f.Close(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

// buildShadowtap builds ./cmd/shadowtap of the module that holds the
// working directory.
func buildShadowtap(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/shadowtap")
	cmd.Dir = moduleRoot()
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/shadowtap: %w\n%s", err, b)
	}
	return nil
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// runResult is every step of one shape, capture mode and variant.
type runResult struct {
	Shape, Mode, Variant string
	Steps                []stepResult
	PeakRSS              uint64
	Err                  error
}

// best returns the lossless step with the highest achieved packet rate.
func (m runResult) best() (stepResult, bool) {
	var b stepResult
	ok := false
	for _, s := range m.Steps {
		if s.Lossless && (!ok || s.Gen.PPS() > b.Gen.PPS()) {
			b, ok = s, true
		}
	}
	return b, ok
}

func runVariant(ctx context.Context, o options, lab *testenv.Lab, snd *sender, gc genConfig, shadow *shadowProc, rc receiverConfig, stepNo *int) (rr runResult, err error) {
	rr.Shape, rr.Mode, rr.Variant = rc.shape, rc.mode, rc.variant
	fmt.Printf("benchlab: shape %s: starting shadowtap --capture %s (%s)\n", rc.shape, rc.mode, rc.variant)
	r, err := startReceiver(ctx, rc)
	if err != nil {
		rr.Err = err
		return rr, err
	}
	defer func() {
		if rss, rerr := r.peakRSS(); rerr == nil {
			rr.PeakRSS = rss
		}
		if serr := r.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
		rr.Err = err
		fmt.Printf("benchlab: shadowtap stopped; peak RSS %.1f MiB; log %s\n", float64(rr.PeakRSS)/(1<<20), r.logPath)
	}()

	lossyRun := 0
	for _, rate := range o.rates {
		if err := ctx.Err(); err != nil {
			return rr, err
		}
		*stepNo++
		before, err := read(ctx, lab, r, shadow)
		if err != nil {
			return rr, err
		}
		var prof *exec.Cmd
		if o.perfDir != "" && rc.variant != variantParse {
			prof = startPerf(ctx, o.perfDir, r.pid, fmt.Sprintf("%s-%s-%s-%s", rc.shape, rc.mode, rc.variant, rateName(rate)), o.step)
		}
		gen, err := snd.run(ctx, gc, *stepNo, rate, o.step)
		if prof != nil {
			_ = prof.Wait()
		}
		if err != nil {
			return rr, fmt.Errorf("step %s pkt/s: %w", rateName(rate), err)
		}
		settled, err := settle(ctx, r, o.settle)
		if err != nil {
			return rr, err
		}
		after, err := read(ctx, lab, r, shadow)
		if err != nil {
			return rr, err
		}
		s := newStepResult(rc.mode, rate, gen, before, after)
		s.Shape, s.Variant = rc.shape, rc.variant
		s.judge()
		s.Settle = settled
		if rss, err := r.peakRSS(); err == nil {
			s.PeakRSS = rss
		}
		rr.Steps = append(rr.Steps, s)
		fmt.Println(s.line())
		if r.exited() {
			return rr, fmt.Errorf("shadowtap exited during the step: %w", r.exitErr())
		}
		if s.Lossless {
			lossyRun = 0
		} else if lossyRun++; o.stopAfter > 0 && lossyRun >= o.stopAfter {
			fmt.Printf("benchlab: %d lossy steps in a row, next variant\n", lossyRun)
			break
		}
	}
	return rr, nil
}

// rateName is a requested rate as the flag spells it.
func rateName(rate float64) string {
	if rate == 0 {
		return "max"
	}
	return kfmt(rate)
}

// startPerf records a CPU profile of pid with call graphs for d, if perf is
// installed; the caller waits for the command.
func startPerf(ctx context.Context, dir string, pid int, name string, d time.Duration) *exec.Cmd {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "benchlab: --perf-record:", err)
		return nil
	}
	out := filepath.Join(dir, strings.ReplaceAll(name, " ", "")+".perf.data")
	cmd := exec.CommandContext(ctx, "perf", "record", "-F", "1999", "-g", "-p", strconv.Itoa(pid), "-o", out, "--", "sleep", fmt.Sprint(d.Seconds()))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "benchlab: --perf-record:", err)
		return nil
	}
	return cmd
}

// runGenOnly runs the rate steps with no shadowtap: what the generator
// achieves alone, and what arrives on recv mir0 (the host stack drops it:
// nothing listens on the VXLAN port).
func runGenOnly(ctx context.Context, o options, lab *testenv.Lab, snd *sender, gc genConfig, stepNo *int) error {
	for _, rate := range o.rates {
		*stepNo++
		before, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
		if err != nil {
			return err
		}
		c0, err := selfCPU()
		if err != nil {
			return err
		}
		s0, err := readSysCPU()
		if err != nil {
			return err
		}
		gen, err := snd.run(ctx, gc, *stepNo, rate, o.step)
		if err != nil {
			return fmt.Errorf("step %s pkt/s: %w", rateName(rate), err)
		}
		c1, _ := selfCPU()
		s1, _ := readSysCPU()
		after, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
		if err != nil {
			return err
		}
		sec := gen.Elapsed.Seconds()
		fmt.Printf("gen    req %7s pkt/s  sent %8.0f pkt/s %6.0f req/s (%d pkts, %d refused)  recv mir0 rx %d dropped %d  generator %.2f cores, machine %.2f cores (softirq %.2f)\n",
			rateName(rate), gen.PPS(), gen.RPS(), gen.Sent(), gen.Refused, after.RxPackets-before.RxPackets, after.RxDropped-before.RxDropped,
			(c1-c0).Seconds()/sec, s1.sub(s0).Busy.Seconds()/sec, s1.sub(s0).SoftIRQ.Seconds()/sec)
	}
	return nil
}
