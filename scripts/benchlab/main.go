// Command benchlab is shadowtap's load benchmark on the mirror lab (`make
// bench` runs it as `go run ./scripts/benchlab`; it needs root).
//
// It brings a lab up (testenv), starts a small, fast shadow HTTP server in
// the shadow namespace, and for each capture mode (--modes, default
// xdp,socket) runs `shadowtap run` in the receiver namespace with the lab's
// flags. For rising rates (--rates) it drives testenv/mirrorgen from the
// production namespace through AF_PACKET writers on prod's mir0: VXLAN frames
// from 10.82.0.1 to recv mir0 (10.82.0.2, its MAC), VNI 42, carrying
// read-heavy HTTP/1.1 keep-alive conversations (small GETs and
// multi-segment responses) to inner servers 10.81.<step>.<2+worker>:8080.
// After each step and a settle time it reads shadowtap's metric deltas
// (capture outcomes, flow queue drops, requests parsed, replayed, dropped,
// failed), shadowtap's CPU time (/proc/PID/stat) and peak RSS (VmHWM).
//
// A step is lossless when every frame the generator sent was emitted by the
// capture stage (none lost on the link, in the ring buffer or socket) and
// every request the generator sent completely was parsed and ended replayed
// (none dropped, failed or filtered). The report gives, per mode, the
// highest lossless rate actually achieved (not requested) in mirrored
// packets/s and requests/s, shadowtap's CPU seconds per million mirrored
// packets and its peak RSS, then the xdp/socket ratio, as a Markdown table
// for BENCHMARKS.md. The generator and the shadow server share the machine's
// cores with shadowtap, and their CPU is reported too.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// options are the command-line flags.
type options struct {
	modes     []string
	rates     []float64
	step      time.Duration
	settle    time.Duration
	quick     bool
	bin       string
	gen       genConfig
	mixText   string
	stopAfter int
	extra     []string
	out       string
	verbose   bool

	// Soak (--soak): one rate for a long time, sampled.
	soak, soakEvery, soakWarmup time.Duration
	soakRate                    float64
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("benchlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	modes := fs.String("modes", "xdp,socket", "capture modes to measure, in order; gen measures the generator alone (no shadowtap)")
	rates := fs.String("rates", "25k,50k,100k,200k,300k,400k,600k", "mirrored packets/s of each step (k and M suffixes)")
	fs.DurationVar(&o.step, "step", 5*time.Second, "duration of each rate step")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "longest wait after a step for shadowtap to finish replaying it")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: one rate (50k), 2s, all modes")
	fs.StringVar(&o.bin, "bin", "", "shadowtap binary (default: build ./cmd/shadowtap into a temporary directory)")
	fs.IntVar(&o.gen.workers, "gen-workers", 2, "generator goroutines, each with its own AF_PACKET socket and share of the rate")
	fs.IntVar(&o.gen.conns, "conns", 64, "concurrent mirrored connections (all workers)")
	fs.IntVar(&o.gen.requestsPerConn, "requests-per-conn", 10, "keep-alive exchanges per connection")
	fs.StringVar(&o.mixText, "mix", "small=75,large=20,head=5", "exchange mix (mirrorgen.ParseMix: small, large, head, post, pipelined)")
	fs.IntVar(&o.gen.smallBody, "small-body", 600, "mean body of small responses, bytes")
	fs.IntVar(&o.gen.largeKiB, "large-kib", 32, "body of large responses, KiB (1448-byte segments)")
	fs.IntVar(&o.stopAfter, "stop-after", 2, "stop a mode after this many lossy steps in a row (0: run every rate)")
	extra := fs.String("shadowtap-args", "", "extra flags for shadowtap run, space separated")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
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
	for m := range strings.SplitSeq(*modes, ",") {
		m = strings.TrimSpace(m)
		if m != "xdp" && m != "socket" && m != "gen" {
			return o, fmt.Errorf("--modes: %q is not xdp, socket or gen (the generator alone)", m)
		}
		o.modes = append(o.modes, m)
	}
	var err error
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

// parseRates parses "25k,50k,1.2M,300000".
func parseRates(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
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

	stopShadow, err := startShadow(ctx, lab, ":8080")
	if err != nil {
		return err
	}
	defer func() {
		if err := stopShadow(); err != nil {
			fmt.Fprintln(os.Stderr, "benchlab: shadow server:", err)
		}
	}()

	snd, err := newSender(lab, o.gen)
	if err != nil {
		return err
	}
	defer snd.Close()

	if o.soak > 0 {
		return runSoak(ctx, o, lab, snd, receiverConfig{
			bin: bin, mode: o.modes[0], pinRoot: pinRoot, logDir: workDir, lab: lab, extra: o.extra,
		})
	}
	var modes []modeResult
	stepNo := 0
	for _, mode := range o.modes {
		if mode == "gen" {
			if err := runGenOnly(ctx, o, lab, snd, &stepNo); err != nil {
				return err
			}
			continue
		}
		mr, err := runMode(ctx, o, lab, snd, receiverConfig{
			bin: bin, mode: mode, pinRoot: pinRoot, logDir: workDir, lab: lab, extra: o.extra,
		}, &stepNo)
		modes = append(modes, mr)
		if err != nil {
			printReport(os.Stdout, o, m, args, modes)
			return fmt.Errorf("mode %s: %w", mode, err)
		}
	}
	if len(modes) == 0 {
		return nil
	}
	printReport(os.Stdout, o, m, args, modes)
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		printReport(f, o, m, args, modes)
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

// modeResult is every step of one capture mode.
type modeResult struct {
	Mode    string
	Steps   []stepResult
	PeakRSS uint64
	Err     error
}

// best returns the lossless step with the highest achieved packet rate.
func (m modeResult) best() (stepResult, bool) {
	var b stepResult
	ok := false
	for _, s := range m.Steps {
		if s.Lossless && (!ok || s.Gen.PPS() > b.Gen.PPS()) {
			b, ok = s, true
		}
	}
	return b, ok
}

func runMode(ctx context.Context, o options, lab *testenv.Lab, snd *sender, rc receiverConfig, stepNo *int) (mr modeResult, err error) {
	mr.Mode = rc.mode
	fmt.Printf("benchlab: starting shadowtap --capture %s\n", rc.mode)
	r, err := startReceiver(ctx, rc)
	if err != nil {
		mr.Err = err
		return mr, err
	}
	defer func() {
		if rss, rerr := r.peakRSS(); rerr == nil {
			mr.PeakRSS = rss
		}
		if serr := r.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
		mr.Err = err
		fmt.Printf("benchlab: shadowtap --capture %s stopped; peak RSS %.1f MiB; log %s\n", rc.mode, float64(mr.PeakRSS)/(1<<20), r.logPath)
	}()

	lossyRun := 0
	for _, rate := range o.rates {
		if err := ctx.Err(); err != nil {
			return mr, err
		}
		*stepNo++
		before, err := read(ctx, lab, r)
		if err != nil {
			return mr, err
		}
		gen, err := snd.run(ctx, *stepNo, rate, o.step)
		if err != nil {
			return mr, fmt.Errorf("step %.0f pkt/s: %w", rate, err)
		}
		settled, err := settle(ctx, r, o.settle)
		if err != nil {
			return mr, err
		}
		after, err := read(ctx, lab, r)
		if err != nil {
			return mr, err
		}
		s := newStepResult(rc.mode, rate, gen, before, after)
		s.Settle = settled
		if rss, err := r.peakRSS(); err == nil {
			s.PeakRSS = rss
		}
		mr.Steps = append(mr.Steps, s)
		fmt.Println(s.line())
		if r.exited() {
			return mr, fmt.Errorf("shadowtap exited during the step: %w", r.exitErr())
		}
		if s.Lossless {
			lossyRun = 0
		} else if lossyRun++; o.stopAfter > 0 && lossyRun >= o.stopAfter {
			fmt.Printf("benchlab: %s: %d lossy steps in a row, next mode\n", rc.mode, lossyRun)
			break
		}
	}
	return mr, nil
}

// runGenOnly runs the rate steps with no shadowtap: what the generator
// achieves alone, and what arrives on recv mir0 (the host stack drops it:
// nothing listens on the VXLAN port).
func runGenOnly(ctx context.Context, o options, lab *testenv.Lab, snd *sender, stepNo *int) error {
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
		gen, err := snd.run(ctx, *stepNo, rate, o.step)
		if err != nil {
			return fmt.Errorf("step %.0f pkt/s: %w", rate, err)
		}
		c1, _ := selfCPU()
		s1, _ := readSysCPU()
		after, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
		if err != nil {
			return err
		}
		sec := gen.Elapsed.Seconds()
		fmt.Printf("gen    req %7.0f pkt/s  sent %8.0f pkt/s %6.0f req/s (%d pkts, %d refused)  recv mir0 rx %d dropped %d  generator %.2f cores, machine %.2f cores (softirq %.2f)\n",
			rate, gen.PPS(), gen.RPS(), gen.Sent(), gen.Refused, after.RxPackets-before.RxPackets, after.RxDropped-before.RxDropped,
			(c1-c0).Seconds()/sec, s1.sub(s0).Busy.Seconds()/sec, s1.sub(s0).SoftIRQ.Seconds()/sec)
	}
	return nil
}
