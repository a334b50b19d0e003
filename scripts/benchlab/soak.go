package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/procfs"

	"github.com/shadowtap/shadowtap/testenv"
)

// soakSample is what the soak records of shadowtap at the end of an
// interval.
type soakSample struct {
	At         time.Duration // since the start of the soak
	RSS        uint64        // VmRSS, bytes
	Heap       float64       // go_memstats_heap_inuse_bytes
	Goroutines float64       // go_goroutines
	FDs        int           // open file descriptors
	Replayed   float64       // shadowtap_replay_replayed_total so far
}

// runSoak drives the lab's mix at one rate for o.soak, with shadowtap on
// the first capture mode, and samples it every o.soakEvery. It fails when a
// resource trends upward after o.soakWarmup (see trend).
func runSoak(ctx context.Context, o options, lab *testenv.Lab, snd *sender, rc receiverConfig) error {
	fmt.Printf("benchlab: soak %v at %.0f pkt/s, --capture %s, a sample every %v, warm-up %v\n",
		o.soak, o.soakRate, rc.mode, o.soakEvery, o.soakWarmup)
	r, err := startReceiver(ctx, rc)
	if err != nil {
		return err
	}
	defer func() {
		if err := r.stop(); err != nil {
			fmt.Println("benchlab: stopping shadowtap:", err)
		}
	}()
	var samples []soakSample
	start := time.Now()
	for step := 1; time.Since(start) < o.soak; step++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		gen, err := snd.run(ctx, o.gen, step, o.soakRate, min(o.soakEvery, o.soak-time.Since(start)))
		if err != nil {
			return fmt.Errorf("interval %d: %w", step, err)
		}
		if r.exited() {
			return fmt.Errorf("shadowtap exited during the soak: %w", r.exitErr())
		}
		s, err := sampleSoak(ctx, r, time.Since(start))
		if err != nil {
			return err
		}
		samples = append(samples, s)
		fmt.Printf("soak %6v  sent %8.0f pkt/s  RSS %6.1f MiB  heap %6.1f MiB  goroutines %4.0f  fds %3d  replayed %.0f\n",
			s.At.Round(time.Second), gen.PPS(), float64(s.RSS)/(1<<20), s.Heap/(1<<20), s.Goroutines, s.FDs, s.Replayed)
	}
	var after []soakSample
	for _, s := range samples {
		if s.At > o.soakWarmup {
			after = append(after, s)
		}
	}
	if problems := trend(after); len(problems) > 0 {
		return fmt.Errorf("soak: %v after warm-up", errors.Join(problems...))
	}
	fmt.Printf("benchlab: soak: no upward trend over %d samples after warm-up\n", len(after))
	return nil
}

func sampleSoak(ctx context.Context, r *receiver, at time.Duration) (soakSample, error) {
	s := soakSample{At: at}
	p, err := procfs.NewProc(r.pid)
	if err != nil {
		return s, fmt.Errorf("shadowtap process: %w", err)
	}
	st, err := p.NewStatus()
	if err != nil {
		return s, fmt.Errorf("shadowtap status: %w", err)
	}
	s.RSS = st.VmRSS
	if s.FDs, err = p.FileDescriptorsLen(); err != nil {
		return s, fmt.Errorf("shadowtap file descriptors: %w", err)
	}
	m, err := r.scrape(ctx)
	if err != nil {
		return s, err
	}
	for _, n := range []string{"go_memstats_heap_inuse_bytes", "go_goroutines", mReplayed} {
		if !m.Has(n) {
			return s, fmt.Errorf("no %s in shadowtap's /metrics", n)
		}
	}
	s.Heap, s.Goroutines, s.Replayed = m.Sum("go_memstats_heap_inuse_bytes"), m.Sum("go_goroutines"), m.Sum(mReplayed)
	return s, nil
}

// trend compares the mean of the last third of samples with the mean of
// the first third: a resource that grew by more than its slack is a leak
// (or an unbounded buffer) for a load that did not change. It needs at
// least three samples.
func trend(samples []soakSample) []error {
	if len(samples) < 3 {
		return []error{fmt.Errorf("%d samples: too few to judge a trend (at least 3)", len(samples))}
	}
	k := len(samples) / 3
	first, last := samples[:k], samples[len(samples)-k:]
	mean := func(ss []soakSample, f func(soakSample) float64) float64 {
		var sum float64
		for _, s := range ss {
			sum += f(s)
		}
		return sum / float64(len(ss))
	}
	var errs []error
	for _, c := range []struct {
		name  string
		f     func(soakSample) float64
		slack func(base float64) float64
	}{
		{"RSS", func(s soakSample) float64 { return float64(s.RSS) }, func(b float64) float64 { return max(0.1*b, 16<<20) }},
		{"heap in use", func(s soakSample) float64 { return s.Heap }, func(b float64) float64 { return max(0.1*b, 16<<20) }},
		{"goroutines", func(s soakSample) float64 { return s.Goroutines }, func(b float64) float64 { return max(0.1*b, 16) }},
		{"open file descriptors", func(s soakSample) float64 { return float64(s.FDs) }, func(b float64) float64 { return max(0.1*b, 8) }},
	} {
		a, b := mean(first, c.f), mean(last, c.f)
		if b-a > c.slack(a) {
			errs = append(errs, fmt.Errorf("%s grew from %.0f to %.0f (allowed %.0f)", c.name, a, b, c.slack(a)))
		}
	}
	return errs
}
