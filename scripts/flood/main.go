// Command flood is `make flood`: issue 10's floods at the generator's top
// rate against shadowtap in the mirror lab, one after the other, each
// against a fresh `shadowtap run` (so its peak RSS is that flood's):
//
//	flows   1 M distinct flows of a SYN and one request segment
//	bodies  GETs with 16 MiB bodies on 64 connections, never answered
//	heads   ordinary GETs, the shadow answering each with a 100 MiB head
//	random  random bytes in VXLAN from the allowed source and VNI
//
// Meanwhile a steady keep-alive connection sends small GETs; the shadow
// counts its replays. For each flood it reports what was sent, shadowtap's
// peak RSS (VmHWM) against --rss-budget, the steady connection's replay
// rate before and during the flood, and the counters that show the flood
// reached its stage. It exits 1 when a peak is over the budget or the
// steady connection lost more than half its replays. Every run is bounded
// by --duration per flood; it needs root and is not part of CI (the small
// version is cmd/shadowtap's TestFloodsSmall).
//
// The command sits outside the data path: it drives the lab and reads what
// shadowtap exposes.
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
	"strings"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/pkg/pipeline"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/flood"
)

type options struct {
	bin, mode   string
	kinds       []flood.Kind
	duration    time.Duration
	flows       int
	bodyMiB     int
	headMiB     int
	conns       int
	workers     int
	steadyRate  float64
	rssBudget   int
	extra       []string
	out         string
	warm, settl time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	kinds := fs.String("floods", "flows,bodies,heads,random", "floods to run, in order")
	fs.StringVar(&o.bin, "bin", "", "shadowtap binary (default: build ./cmd/shadowtap)")
	fs.StringVar(&o.mode, "mode", "xdp", "capture mode: xdp or socket")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "upper bound of each flood")
	fs.IntVar(&o.flows, "flows", 1_000_000, "distinct flows of the flows flood")
	fs.IntVar(&o.bodyMiB, "body-mib", 16, "request body of the bodies flood, MiB")
	fs.IntVar(&o.headMiB, "head-mib", 100, "the shadow's answer head in the heads flood, MiB")
	fs.IntVar(&o.conns, "conns", 64, "connections of the bodies and heads floods")
	fs.IntVar(&o.workers, "workers", 2, "generator goroutines, each with its own AF_PACKET socket")
	fs.Float64Var(&o.steadyRate, "steady-rate", 400, "frames/s of the steady connection")
	fs.IntVar(&o.rssBudget, "rss-budget", 0, "peak RSS allowed, MiB (default: the memory budget of shadowtap's defaults with one target, README \"Memory budget\")")
	extra := fs.String("shadowtap-args", "", "extra flags for shadowtap run, space separated")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	fs.DurationVar(&o.warm, "warm", 3*time.Second, "steady traffic alone before each flood")
	fs.DurationVar(&o.settl, "settle", 5*time.Second, "time after each flood before reading")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for s := range strings.SplitSeq(*kinds, ",") {
		k, err := flood.ParseKind(strings.TrimSpace(s))
		if err != nil {
			return o, err
		}
		o.kinds = append(o.kinds, k)
	}
	if o.mode != "xdp" && o.mode != "socket" {
		return o, fmt.Errorf("--mode %q: want xdp or socket", o.mode)
	}
	if o.duration <= 0 || o.duration > 10*time.Minute {
		return o, errors.New("--duration: want more than 0 and at most 10m")
	}
	o.extra = strings.Fields(*extra)
	if o.rssBudget == 0 {
		c := pipeline.Defaults()
		c.Capture, c.Targets = o.mode, []string{"http://shadow"}
		o.rssBudget = int(pipeline.MemoryBudget(c) >> 20)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		stop()
		os.Exit(1)
	}
	if !ok {
		stop()
		os.Exit(1)
	}
}

// row is one flood's line of the report.
type row struct {
	rep      flood.Report
	peak     uint64
	evidence string
	err      error
}

func run(ctx context.Context, o options) (bool, error) {
	if os.Geteuid() != 0 {
		return false, errors.New("needs root (network namespaces, XDP, AF_PACKET): sudo make flood")
	}
	work, err := os.MkdirTemp("", "flood-")
	if err != nil {
		return false, err
	}
	fmt.Printf("flood: work directory %s (shadowtap logs)\n", work)
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(work, "shadowtap")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/shadowtap")
		if b, err := cmd.CombinedOutput(); err != nil {
			return false, fmt.Errorf("go build ./cmd/shadowtap: %w\n%s", err, b)
		}
	}
	lab, err := testenv.Up(ctx, testenv.Options{Name: testenv.UniqueName("stflood"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return false, fmt.Errorf("lab: %w", err)
	}
	defer lab.Close()
	pinRoot := filepath.Join("/sys/fs/bpf", lab.Name)
	defer os.RemoveAll(pinRoot)
	shadow, err := flood.StartShadow(lab, lab.ShadowNS, ":8080")
	if err != nil {
		return false, err
	}
	defer shadow.Close()
	snd, err := flood.NewSender(lab, o.workers)
	if err != nil {
		return false, err
	}
	defer snd.Close()
	target := "http://" + testenv.HostPort(lab.ShadowAddr4, 8080)

	var rows []row
	for _, k := range o.kinds {
		if ctx.Err() != nil {
			break
		}
		spec := flood.Spec{Kind: k, Duration: o.duration, Conns: o.conns, Seed: uint64(len(rows) + 1)}
		switch k {
		case flood.Flows:
			spec.Flows = o.flows
		case flood.Bodies:
			spec.BodyBytes = o.bodyMiB << 20
		case flood.Heads:
			spec.HeadBytes = o.headMiB << 20
		}
		r := floodOne(ctx, o, lab, snd, shadow, bin, pinRoot, target, filepath.Join(work, "shadowtap-"+string(k)+".log"), spec)
		fmt.Println(line(r, o))
		rows = append(rows, r)
	}
	ok := report(os.Stdout, o, rows)
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return false, err
		}
		report(f, o, rows)
		if err := f.Close(); err != nil {
			return false, err
		}
	}
	return ok, ctx.Err()
}

// evidence is the counters that show a flood reached its stage.
var evidence = map[flood.Kind][][]string{
	flood.Flows:  {{"shadowtap_flow_conns_opened_total"}, {"shadowtap_flow_evicted_unconfirmed_total"}, {"shadowtap_flow_closed_evicted_total"}},
	flood.Bodies: {{"shadowtap_replay_accepted_total"}, {"shadowtap_replay_filtered_total", "reason", "body_budget"}, {"shadowtap_replay_dropped_total", "reason", "queue"}, {"shadowtap_http_no_resp_overflow_total"}},
	flood.Heads:  {{"shadowtap_replay_failed_total", "reason", "response_too_large"}, {"shadowtap_replay_dropped_total", "reason", "queue"}},
	flood.Random: {{"shadowtap_capture_packets_total", "outcome", "drop_malformed"}, {"shadowtap_capture_packets_total", "outcome", "drop_not_tcp"}, {"shadowtap_http_gave_up_not_http_total"}, {"shadowtap_http_requests_malformed_total"}},
}

func floodOne(ctx context.Context, o options, lab *testenv.Lab, snd *flood.Sender, sh *flood.Shadow, bin, pinRoot, target, logPath string, spec flood.Spec) (r row) {
	recv, err := flood.StartReceiver(ctx, lab, bin, o.mode, pinRoot, target, logPath, o.extra...)
	if err != nil {
		return row{rep: flood.Report{Spec: spec}, err: err}
	}
	defer func() {
		if err := recv.Stop(); err != nil && r.err == nil {
			r.err = err
		}
	}()
	stopSteady, err := snd.Steady(ctx, o.steadyRate)
	if err != nil {
		return row{rep: flood.Report{Spec: spec}, err: err}
	}
	defer stopSteady()
	r.rep, r.err = flood.Measure(ctx, snd, sh, recv.Proc, spec, o.warm, o.settl)
	if st, err := recv.Status(); err == nil {
		r.peak = st.PeakRSS
	}
	if m, err := recv.Metrics(ctx); err == nil {
		var parts []string
		for _, e := range evidence[spec.Kind] {
			name := strings.TrimPrefix(e[0], "shadowtap_")
			if len(e) > 1 {
				name += "{" + e[1] + "=" + e[2] + "}"
			}
			parts = append(parts, fmt.Sprintf("%s %.0f", name, flood.Sum(m, e[0], e[1:]...)))
		}
		r.evidence = strings.Join(parts, ", ")
	} else if r.err == nil {
		r.err = err
	}
	if recv.Exited() && r.err == nil {
		r.err = fmt.Errorf("shadowtap exited during the flood:\n%s", recv.LogTail(10))
	}
	return r
}

func (r row) pass(o options) bool {
	return r.err == nil && r.peak <= uint64(o.rssBudget)<<20 && r.rep.SteadyDuring >= r.rep.SteadyBefore/2 && r.rep.SteadyBefore > 0
}

func line(r row, o options) string {
	if r.err != nil {
		return fmt.Sprintf("%-7s error: %v", r.rep.Spec.Kind, r.err)
	}
	return fmt.Sprintf("%-7s %s in %.1fs (%.0f frames/s, %d refused); peak RSS %.1f MiB (budget %d); steady %.0f/s before, %.0f/s during; %s",
		r.rep.Spec.Kind, r.rep.What(), r.rep.Sent.Elapsed.Seconds(), r.rep.Sent.PPS(), r.rep.Sent.Refused,
		float64(r.peak)/(1<<20), o.rssBudget, r.rep.SteadyBefore, r.rep.SteadyDuring, r.evidence)
}

func report(w io.Writer, o options, rows []row) bool {
	ok := true
	fmt.Fprintf(w, "\n| flood | sent | frames/s | peak RSS | budget | steady replays/s before → during | counters |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		verdict := "within"
		if !r.pass(o) {
			verdict, ok = "**over or lost**", false
		}
		if r.err != nil {
			fmt.Fprintf(w, "| %s | error: %v | | | | | |\n", r.rep.Spec.Kind, r.err)
			continue
		}
		fmt.Fprintf(w, "| %s | %s in %.0f s | %.0f | %.0f MiB | %d MiB (%s) | %.0f → %.0f | %s |\n",
			r.rep.Spec.Kind, r.rep.What(), r.rep.Sent.Elapsed.Seconds(), r.rep.Sent.PPS(), float64(r.peak)/(1<<20),
			o.rssBudget, verdict, r.rep.SteadyBefore, r.rep.SteadyDuring, r.evidence)
	}
	return ok
}
