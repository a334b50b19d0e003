// Command soak is `make soak DURATION=30m`: the lab's realistic mix (the
// benchmark's: 75 % small GETs, 20 % 32 KiB answers, 5 % HEAD, 64
// keep-alive connections of 10 exchanges) at half the highest lossless rate
// BENCHMARKS.md records (300 k mirrored packets/s with XDP, so 150 k), for
// --duration, against one `shadowtap run` in the mirror lab. Every
// --interval it reports shadowtap's RSS, goroutines, open file descriptors
// and live heap; at the end it fits a line through each series after the
// warm-up and fails (exit 1) when one grows by more than its tolerance over
// the measured window: what a leak looks like. It needs root and is not
// part of CI.
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
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/flood"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

type options struct {
	duration, interval, warmup time.Duration
	rate                       float64
	mode, bin, out             string
	workers                    int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the traffic runs")
	fs.DurationVar(&o.interval, "interval", time.Minute, "sampling interval")
	fs.DurationVar(&o.warmup, "warmup", 0, "samples before this are not judged (default: a sixth of --duration, at least 2 intervals)")
	fs.Float64Var(&o.rate, "rate", 150e3, "mirrored packets/s (half the highest lossless rate in BENCHMARKS.md)")
	fs.StringVar(&o.mode, "mode", "xdp", "capture mode: xdp or socket")
	fs.StringVar(&o.bin, "bin", "", "shadowtap binary (default: build ./cmd/shadowtap)")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	fs.IntVar(&o.workers, "workers", 2, "generator goroutines, each with its own AF_PACKET socket")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.duration <= 0 || o.interval <= 0 || o.rate <= 0 {
		return o, errors.New("--duration, --interval and --rate must be positive")
	}
	if o.warmup == 0 {
		o.warmup = max(o.duration/6, 2*o.interval)
	}
	if o.duration < o.warmup+3*o.interval {
		return o, fmt.Errorf("--duration %v: want at least the warm-up (%v) and three intervals", o.duration, o.warmup)
	}
	if o.mode != "xdp" && o.mode != "socket" {
		return o, fmt.Errorf("--mode %q: want xdp or socket", o.mode)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
	}
	if err != nil || !ok {
		stop()
		os.Exit(1)
	}
}

// sample is one interval's reading.
type sample struct {
	At                time.Duration
	RSS, Heap         float64 // bytes
	Goroutines, FDs   float64
	Requests, Replays float64 // cumulative: parsed, replayed
	Lost              float64 // cumulative capture losses (ring buffer, socket)
}

func run(ctx context.Context, o options) (bool, error) {
	if os.Geteuid() != 0 {
		return false, errors.New("needs root (network namespaces, XDP, AF_PACKET): sudo make soak")
	}
	work, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return false, err
	}
	fmt.Printf("soak: work directory %s (shadowtap log)\n", work)
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(work, "shadowtap")
		if b, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/shadowtap").CombinedOutput(); err != nil {
			return false, fmt.Errorf("go build ./cmd/shadowtap: %w\n%s", err, b)
		}
	}
	lab, err := testenv.Up(ctx, testenv.Options{Name: testenv.UniqueName("stsoak"), Logger: slog.New(slog.DiscardHandler)})
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
	recv, err := flood.StartReceiver(ctx, lab, bin, o.mode, pinRoot, "http://"+testenv.HostPort(lab.ShadowAddr4, 8080), filepath.Join(work, "shadowtap.log"))
	if err != nil {
		return false, err
	}
	defer recv.Stop()

	gctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	sums := make([]mirrorgen.Summary, o.workers)
	errs := make([]error, o.workers)
	for i := range o.workers {
		w, g, err := generator(lab, o, i)
		if err != nil {
			return false, err
		}
		defer w.Close()
		wg.Go(func() { sums[i], errs[i] = g.Run(gctx, w) })
	}

	start := time.Now()
	var samples []sample
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	fmt.Printf("soak: %s of %.0f pkt/s, %s capture, a sample every %s, judged after %s\n", o.duration, o.rate, o.mode, o.interval, o.warmup)
	fmt.Println("  minute      RSS MiB   heap MiB  goroutines  fds   requests/s  replays/s  lost")
	for done := false; !done; {
		select {
		case <-gctx.Done():
			done = true
		case <-tick.C:
		}
		if recv.Exited() {
			return false, fmt.Errorf("shadowtap exited:\n%s", recv.LogTail(20))
		}
		s, err := read(ctx, recv)
		if err != nil {
			return false, err
		}
		s.At = time.Since(start)
		if n := len(samples); n > 0 {
			p := samples[n-1]
			dt := (s.At - p.At).Seconds()
			fmt.Printf("  %6.1f  %10.1f %10.1f %11.0f %4.0f %12.0f %10.0f %5.0f\n", s.At.Minutes(), s.RSS/(1<<20), s.Heap/(1<<20),
				s.Goroutines, s.FDs, (s.Requests-p.Requests)/dt, (s.Replays-p.Replays)/dt, s.Lost-p.Lost)
		} else {
			fmt.Printf("  %6.1f  %10.1f %10.1f %11.0f %4.0f\n", s.At.Minutes(), s.RSS/(1<<20), s.Heap/(1<<20), s.Goroutines, s.FDs)
		}
		samples = append(samples, s)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return false, fmt.Errorf("generator: %w", err)
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	var sent mirrorgen.Summary
	for _, s := range sums {
		sent.Packets += s.Packets
		sent.RequestsSent += s.RequestsSent
	}
	ok := judge(os.Stdout, o, samples, sent)
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return ok, err
		}
		judge(f, o, samples, sent)
		if err := f.Close(); err != nil {
			return ok, err
		}
	}
	return ok, nil
}

// generator builds worker i's share of the mix, from its own server
// address, with its own AF_PACKET writer.
func generator(lab *testenv.Lab, o options, i int) (*mirrorgen.PacketWriter, *mirrorgen.Generator, error) {
	var w *mirrorgen.PacketWriter
	if err := lab.Do(lab.ProdNS, func() (err error) {
		w, err = mirrorgen.NewPacketWriter(testenv.ProdMirrorIface)
		return err
	}); err != nil {
		return nil, nil, err
	}
	var src, dst []byte
	_ = lab.Do(lab.ProdNS, func() error { src = hwaddr(testenv.ProdMirrorIface); return nil })
	_ = lab.Do(lab.RecvNS, func() error { dst = hwaddr(lab.RecvIface); return nil })
	g, err := mirrorgen.New(mirrorgen.Config{
		Conns: 64 / o.workers, RequestsPerConn: 10, Duration: o.duration, Rate: o.rate / float64(o.workers),
		Mix: mirrorgen.Mix{Small: 75, Large: 20, Head: 5}, SmallBody: 600, LargeKiB: 32,
		VNI: lab.VNI, Source: lab.MirrorSource4, Receiver: lab.RecvAddr4, SrcMAC: src, DstMAC: dst,
		Server: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 81, 200, byte(2 + i)}), flood.Port),
		Seed:   uint64(i + 1),
	})
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, g, nil
}

func read(ctx context.Context, r *flood.Receiver) (sample, error) {
	var s sample
	st, err := r.Status()
	if err != nil {
		return s, err
	}
	fds, err := r.FDs()
	if err != nil {
		return s, err
	}
	m, err := r.Metrics(ctx)
	if err != nil {
		return s, err
	}
	s.RSS, s.FDs = float64(st.RSS), float64(fds)
	s.Heap = flood.Sum(m, "go_memstats_heap_alloc_bytes")
	s.Goroutines = flood.Sum(m, "go_goroutines")
	s.Requests = flood.Sum(m, "shadowtap_http_requests_total")
	s.Replays = flood.Sum(m, "shadowtap_replay_replayed_total")
	s.Lost = flood.Sum(m, "shadowtap_capture_packets_total", "outcome", "lost_ringbuf") + flood.Sum(m, "shadowtap_capture_packets_total", "outcome", "lost_socket")
	return s, nil
}

// series is one judged quantity.
type series struct {
	name  string
	get   func(sample) float64
	unit  float64 // for printing
	floor float64 // growth below this over the window is never a trend
	frac  float64 // growth below this fraction of the mean is not a trend
}

var judged = []series{
	{"RSS (MiB)", func(s sample) float64 { return s.RSS }, 1 << 20, 16 << 20, 0.10},
	{"live heap (MiB)", func(s sample) float64 { return s.Heap }, 1 << 20, 16 << 20, 0.20},
	{"goroutines", func(s sample) float64 { return s.Goroutines }, 1, 8, 0.10},
	{"open fds", func(s sample) float64 { return s.FDs }, 1, 4, 0.10},
}

// judge fits a least-squares line through each series after the warm-up
// and calls it trending upward when the line rises by more than its
// tolerance over the window.
func judge(w io.Writer, o options, samples []sample, sent mirrorgen.Summary) bool {
	var after []sample
	for _, s := range samples {
		if s.At >= o.warmup {
			after = append(after, s)
		}
	}
	fmt.Fprintf(w, "\n%s soak, %s capture, %.0f mirrored packets/s asked (%d frames, %d complete requests sent); samples every %s, judged after a %s warm-up\n\n",
		o.duration, o.mode, o.rate, sent.Packets, sent.RequestsSent, o.interval, o.warmup)
	fmt.Fprintln(w, "| minute | RSS MiB | live heap MiB | goroutines | open fds | requests parsed/s | replayed/s | capture losses |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, s := range samples {
		var rps, rep, lost float64
		if i > 0 {
			p := samples[i-1]
			dt := (s.At - p.At).Seconds()
			rps, rep, lost = (s.Requests-p.Requests)/dt, (s.Replays-p.Replays)/dt, s.Lost-p.Lost
		}
		mark := ""
		if s.At < o.warmup {
			mark = " (warm-up)"
		}
		fmt.Fprintf(w, "| %.1f%s | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s.At.Minutes(), mark, s.RSS/(1<<20), s.Heap/(1<<20), s.Goroutines, s.FDs, rps, rep, lost)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| series | first judged | last | min | max | fitted growth over the window | tolerance | verdict |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	ok := len(after) >= 3
	for _, sr := range judged {
		if len(after) < 3 {
			break
		}
		var xs, ys []float64
		lo, hi := sr.get(after[0]), sr.get(after[0])
		for _, s := range after {
			xs = append(xs, s.At.Seconds())
			ys = append(ys, sr.get(s))
			lo, hi = min(lo, sr.get(s)), max(hi, sr.get(s))
		}
		slope, mean := fit(xs, ys)
		growth := slope * (xs[len(xs)-1] - xs[0])
		tol := max(sr.floor, sr.frac*mean)
		verdict := "flat"
		if growth > tol {
			verdict, ok = "**trends upward**", false
		}
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %.1f | %+.1f | %.1f | %s |\n", sr.name, ys[0]/sr.unit, ys[len(ys)-1]/sr.unit,
			lo/sr.unit, hi/sr.unit, growth/sr.unit, tol/sr.unit, verdict)
	}
	if len(after) < 3 {
		fmt.Fprintln(w, "too few samples after the warm-up to judge")
	}
	if n := len(samples); n >= 2 {
		f, l := samples[0], samples[n-1]
		dt := (l.At - f.At).Seconds()
		fmt.Fprintf(w, "\nrequests parsed %.0f/s, replayed %.0f/s, capture losses %.0f over the run\n", (l.Requests-f.Requests)/dt, (l.Replays-f.Replays)/dt, l.Lost)
	}
	return ok
}

// fit returns the least-squares slope of ys over xs and the mean of ys.
func fit(xs, ys []float64) (slope, mean float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, sy / n
	}
	return (n*sxy - sx*sy) / d, sy / n
}

// hwaddr is the MAC address of the named interface in the current
// namespace (nil when unknown: the generator's default).
func hwaddr(name string) []byte {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	return ifi.HardwareAddr
}
