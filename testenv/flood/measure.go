package flood

import (
	"context"
	"fmt"
	"time"
)

// Report is one flood measured against a running shadowtap.
type Report struct {
	Spec Spec
	Sent Result
	// PeakRSS is the highest RSS sampled (every 50 ms) from the start of
	// the warm-up to the end of the settle time.
	PeakRSS uint64
	// Steady replays per second the shadow received from the steady
	// connection in the warm-up before the flood, and from the start of
	// the flood to the end of the settle time (replays queued behind the
	// flood's arrive late but arrive: only lost ones lower the rate).
	SteadyBefore, SteadyDuring float64
	// SteadyDuringCount is the steady connection's replays from the start
	// of the flood to the end of the settle time.
	SteadyDuringCount uint64
	// Others is the flood's requests the shadow received during the flood
	// and the settle time.
	Others uint64
}

// Measure runs one flood against the shadowtap process p, whose replays go
// to sh, while the steady connection (Sender.Steady, started by the
// caller) runs: warm, the flood, then settle.
func Measure(ctx context.Context, snd *Sender, sh *Shadow, p Proc, spec Spec, warm, settle time.Duration) (Report, error) {
	rep := Report{Spec: spec}
	w := WatchPeak(p, 50*time.Millisecond)
	b0 := sh.Steady()
	if err := sleep(ctx, warm); err != nil {
		w.Stop()
		return rep, err
	}
	b1, o1 := sh.Steady(), sh.Others()
	rep.SteadyBefore = float64(b1-b0) / warm.Seconds()
	res, err := snd.Run(ctx, spec)
	rep.Sent = res
	if err == nil {
		err = sleep(ctx, settle)
	}
	b2 := sh.Steady()
	rep.SteadyDuringCount = b2 - b1
	if d := res.Elapsed + settle; d > 0 {
		rep.SteadyDuring = float64(b2-b1) / d.Seconds()
	}
	rep.Others = sh.Others() - o1
	peak, werr := w.Stop()
	rep.PeakRSS = peak
	if err != nil {
		return rep, fmt.Errorf("flood: %w", err)
	}
	if werr != nil {
		return rep, fmt.Errorf("flood: watching shadowtap: %w", werr)
	}
	return rep, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// What says what the flood sent, for a report.
func (r Report) What() string {
	return fmt.Sprintf("%d GETs with %d MiB bodies on %d connections, never answered", r.Sent.Requests, r.Spec.BodyBytes>>20, r.Spec.Conns)
}
