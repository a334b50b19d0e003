package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/pipeline"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/flood"
)

// floodFlags are the bounds of the small floods, and floodConfig the same
// as pipeline configuration, for its memory budget.
var floodFlags = []string{
	"--max-conns", "4096",
	"--body-budget", fmt.Sprint(32 << 20),
	"--queue-bytes", fmt.Sprint(16 << 20),
	"--compare-budget", fmt.Sprint(32 << 20),
	"--timeout", "2s",
	"--max-inflight", "16",
}

func floodConfig() pipeline.Config {
	c := pipeline.Defaults()
	c.Targets = []string{"http://shadow"}
	c.MaxConns, c.BodyBudget, c.CompareBudget, c.MaxInflight = 4096, 32<<20, 32<<20, 16
	return c
}

// TestFloodsSmall runs a small version of each flood of `make flood`
// (issue 10) against one shadowtap, a few seconds each, while a steady
// keep-alive connection sends small GETs: shadowtap's RSS must stay under
// floodRSSBudget, and the steady connection must keep being replayed
// during every flood.
func TestFloodsSmall(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	shadow, err := flood.StartShadow(lab, lab.ShadowNS, fmt.Sprintf(":%d", shadowPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shadow.Close() })
	// The memory budget of these bounds (README "Memory budget"): shard
	// queues, ring buffer, connection tables, body and compare budgets,
	// response heads being read, the runtime.
	budget := uint64(pipeline.MemoryBudget(floodConfig()))
	p := startRun(t, lab, newPinRoot(t), append([]string{"--target", shadowTarget(lab, shadowPort)}, floodFlags...)...)
	proc := flood.Proc{PID: p.pid()}

	snd, err := flood.NewSender(lab, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stopSteady, err := snd.Steady(ctx, 400)
	if err != nil {
		t.Fatal(err)
	}
	defer stopSteady()

	const d = 4 * time.Second
	// Rates a shared CI machine sustains with shadowtap on the same cores.
	// RSS seldom shrinks once grown, so each flood's peak includes what
	// the floods before left: the heaviest for the shadow comes last.
	specs := []flood.Spec{
		{Kind: flood.Flows, Duration: d, Flows: 100_000, Rate: 100e3},
		{Kind: flood.Bodies, Duration: d, BodyBytes: 16 << 20, Conns: 8, Rate: 100e3},
		{Kind: flood.Random, Duration: d, Rate: 100e3},
		{Kind: flood.Heads, Duration: d, HeadBytes: 100 << 20, Conns: 16, Rate: 1e3},
	}
	// What each flood must have made shadowtap count: proof that it
	// reached the stage it aims at.
	evidence := map[flood.Kind][]string{
		flood.Flows:  {"shadowtap_flow_evicted_unconfirmed_total"},
		flood.Bodies: {"shadowtap_replay_filtered_total", "reason", "body_budget"},
		flood.Random: {"shadowtap_capture_packets_total", "outcome", "drop_malformed"},
		flood.Heads:  {"shadowtap_replay_failed_total", "reason", "response_too_large"},
	}
	for _, spec := range specs {
		ev := evidence[spec.Kind]
		before := flood.Sum(p.metrics(), ev[0], ev[1:]...)
		rep, err := flood.Measure(ctx, snd, shadow, proc, spec, 2*time.Second, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s, %.0f frames/s; peak RSS %.1f MiB; steady replays %.0f/s before, %.0f/s during (%d)",
			spec.Kind, rep.What(), rep.Sent.PPS(), float64(rep.PeakRSS)/(1<<20), rep.SteadyBefore, rep.SteadyDuring, rep.SteadyDuringCount)
		if rep.PeakRSS > budget {
			t.Errorf("%s: shadowtap RSS peaked at %.1f MiB, budget %d MiB", spec.Kind, float64(rep.PeakRSS)/(1<<20), budget>>20)
		}
		if rep.SteadyBefore == 0 {
			t.Fatalf("%s: the steady connection was not replayed before the flood", spec.Kind)
		}
		if rep.SteadyDuring < rep.SteadyBefore/2 {
			t.Errorf("%s: the steady connection was replayed %.1f/s during the flood, %.1f/s before: want at least half", spec.Kind, rep.SteadyDuring, rep.SteadyBefore)
		}
		if after := flood.Sum(p.metrics(), ev[0], ev[1:]...); after <= before {
			t.Errorf("%s: %s%q did not grow (%v): the flood did not reach its stage", spec.Kind, ev[0], ev[1:], after)
		}
		select {
		case <-p.done:
			t.Fatalf("shadowtap exited during the %s flood (%v)", spec.Kind, p.state)
		default:
		}
	}
	m := p.metrics()
	t.Logf("after the floods: evicted %v (unconfirmed %v), body budget drops %v, queue drops %v, response_too_large %v",
		flood.Sum(m, "shadowtap_flow_closed_evicted_total"), flood.Sum(m, "shadowtap_flow_evicted_unconfirmed_total"),
		flood.Sum(m, "shadowtap_replay_filtered_total", "reason", "body_budget"), flood.Sum(m, "shadowtap_replay_dropped_total", "reason", "queue"),
		flood.Sum(m, "shadowtap_replay_failed_total", "reason", "response_too_large"))
}
