package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

// Metric names (see pkg/metrics, pkg/replay/metrics.go and the Stats
// snapshots of pkg/flow and pkg/httpx).
const (
	mCapturePackets  = "shadowtap_capture_packets_total" // {outcome}
	mFlowQueueFull   = "shadowtap_flow_queue_full_events_total"
	mFlowGaps        = "shadowtap_flow_gaps_total"
	mHTTPRequests    = "shadowtap_http_requests_total"
	mHTTPReqGap      = "shadowtap_http_requests_gap_total"
	mHTTPReqBad      = "shadowtap_http_requests_malformed_total"
	mHTTPReqTooLarge = "shadowtap_http_requests_too_large_total"
	mReplayRequests  = "shadowtap_replay_requests_total"
	mReplayFiltered  = "shadowtap_replay_filtered_total" // {reason}
	mReplayed        = "shadowtap_replay_replayed_total" // {target,class}
	mReplayDropped   = "shadowtap_replay_dropped_total"  // {target,reason}
	mReplayFailed    = "shadowtap_replay_failed_total"   // {target,reason}
	mReplayQueued    = "shadowtap_replay_queued"         // gauge {target}
	mReplayInflight  = "shadowtap_replay_inflight"       // gauge {target}
	mVerdictCompared = "shadowtap_verdict_compared_total"
	mVerdictUncomp   = "shadowtap_verdict_uncompared_total" // {reason}
	mAdmitted        = "shadowtap_replay_admitted_ratio"    // gauge
)

// counters are the cumulative figures read at the edge of a step.
type counters struct {
	outcomes                  map[string]float64
	flowQueueFull, flowGaps   float64
	parsed, reqGap, reqBad    float64
	reqTooLarge               float64
	replayReqs, filtered      float64
	replayed, dropped, failed float64
	dropReasons, failReasons  map[string]float64
	pending                   float64 // queued + in flight now
	compared                  float64
	uncompared                map[string]float64
	admitted                  float64 // gauge now; 1 when absent
	shadowtapCPU, shadowCPU   time.Duration
	selfCPU                   time.Duration
	sys                       sysCPU
	recvRxDropped             uint64 // recv mir0 rx_dropped (veth: before XDP or the stack)
	prodTxDropped             uint64
}

func (c counters) emit() float64 { return c.outcomes["emit"] }
func (c counters) lost() float64 { return c.outcomes["lost_ringbuf"] + c.outcomes["lost_socket"] }
func (c counters) seen() float64 {
	var n float64
	for _, v := range c.outcomes {
		n += v
	}
	return n
}

// ended is the replay requests that reached an outcome.
func (c counters) ended() float64 { return c.filtered + c.replayed + c.dropped + c.failed }

func countersFrom(sc testenv.Metrics) counters {
	return counters{
		outcomes:      sc.ByLabel(mCapturePackets, "outcome"),
		flowQueueFull: sc.Sum(mFlowQueueFull),
		flowGaps:      sc.Sum(mFlowGaps),
		parsed:        sc.Sum(mHTTPRequests),
		reqGap:        sc.Sum(mHTTPReqGap),
		reqBad:        sc.Sum(mHTTPReqBad),
		reqTooLarge:   sc.Sum(mHTTPReqTooLarge),
		replayReqs:    sc.Sum(mReplayRequests),
		filtered:      sc.Sum(mReplayFiltered),
		replayed:      sc.Sum(mReplayed),
		dropped:       sc.Sum(mReplayDropped),
		failed:        sc.Sum(mReplayFailed),
		dropReasons:   sc.ByLabel(mReplayDropped, "reason"),
		failReasons:   sc.ByLabel(mReplayFailed, "reason"),
		pending:       sc.Sum(mReplayQueued) + sc.Sum(mReplayInflight),
		compared:      sc.Sum(mVerdictCompared),
		uncompared:    sc.ByLabel(mVerdictUncomp, "reason"),
		admitted:      admittedRatio(sc),
	}
}

// admittedRatio is the lowest admitted ratio of the targets, 1 without one.
func admittedRatio(sc testenv.Metrics) float64 {
	if !sc.Has(mAdmitted) {
		return 1
	}
	lo := 1.0
	for _, v := range sc.ByLabel(mAdmitted, "target") {
		lo = min(lo, v)
	}
	if len(sc.ByLabel(mAdmitted, "target")) == 0 {
		lo = min(lo, sc.Sum(mAdmitted))
	}
	return lo
}

// missingMetrics lists the metric names the benchmark needs that a scrape
// lacks, so a renamed metric fails loudly instead of reading as zero.
func missingMetrics(sc testenv.Metrics, replay bool) []string {
	var out []string
	need := []string{mCapturePackets, mFlowQueueFull, mHTTPRequests}
	if replay {
		need = append(need, mReplayRequests, mReplayed, mReplayDropped, mReplayFailed)
	}
	for _, n := range need {
		if !sc.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

// read takes every counter of a step edge.
func read(ctx context.Context, lab *testenv.Lab, r *receiver, shadow *shadowProc) (counters, error) {
	sc, err := r.scrape(ctx)
	if err != nil {
		return counters{}, err
	}
	if miss := missingMetrics(sc, r.variant != variantParse); len(miss) > 0 {
		return counters{}, fmt.Errorf("shadowtap's /metrics lacks %s (has: %s)", strings.Join(miss, ", "), strings.Join(sc.Names("shadowtap_"), " "))
	}
	c := countersFrom(sc)
	if c.shadowtapCPU, err = r.cpu(); err != nil {
		return c, err
	}
	if c.selfCPU, err = selfCPU(); err != nil {
		return c, err
	}
	if shadow != nil {
		if c.shadowCPU, err = shadow.cpu(); err != nil {
			return c, err
		}
	}
	if c.sys, err = readSysCPU(); err != nil {
		return c, err
	}
	rs, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
	if err != nil {
		return c, err
	}
	ps, err := lab.LinkStats(ctx, lab.ProdNS, testenv.ProdMirrorIface)
	if err != nil {
		return c, err
	}
	c.recvRxDropped, c.prodTxDropped = rs.RxDropped, ps.TxDropped
	return c, nil
}

// settle waits until shadowtap has finished with what the step sent: no
// replay queued or in flight and the capture, parse and replay counters
// unchanged over one poll interval; at most maxWait.
func settle(ctx context.Context, r *receiver, maxWait time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(maxWait)
	const poll = 250 * time.Millisecond
	var prev counters
	havePrev := false
	for {
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(poll):
		}
		sc, err := r.scrape(ctx)
		if err != nil {
			return time.Since(start), err
		}
		c := countersFrom(sc)
		if havePrev && c.pending == 0 && c.seen() == prev.seen() && c.parsed == prev.parsed &&
			c.ended() == prev.ended() && c.ended() >= c.replayReqs {
			return time.Since(start), nil
		}
		prev, havePrev = c, true
		if time.Now().After(deadline) {
			return time.Since(start), nil
		}
	}
}

// stepResult is one rate step of one mode.
type stepResult struct {
	Shape     string
	Variant   string // "" is end to end
	Mode      string
	Requested float64
	Gen       genResult
	Settle    time.Duration

	// Drops on the mirror link, before capture: the receiving veth's
	// rx_dropped and the sending veth's tx_dropped. A veth with an XDP
	// program queues frames to the peer's NAPI ring; when that ring is full
	// (the receiver does not keep up) the frame is dropped, counted in
	// tx_dropped, and sendmmsg reports ENOBUFS (Gen.Refused).
	RecvRxDropped, ProdTxDropped uint64
	Seen, Emit, Lost             float64 // capture outcomes
	CaptureOther                 float64 // any other capture outcome (pass_*, drop_*)
	FlowQueueFull, FlowGaps      float64
	Parsed, ReqGap, ReqBad       float64
	ReqTooLarge                  float64
	ReplayReqs, Filtered         float64
	Replayed, Dropped, Failed    float64
	DropReasons, FailReasons     map[string]float64
	Compared                     float64
	Uncompared                   map[string]float64
	Admitted                     float64 // lowest admitted ratio at the end of the step

	CPU, SelfCPU time.Duration // shadowtap; this process (the generator)
	ShadowCPU    time.Duration // the shadow server
	Sys          sysCPU        // whole machine
	PeakRSS      uint64

	Lossless bool
	Why      []string
}

func diffMap(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func newStepResult(mode string, rate float64, gen genResult, before, after counters) stepResult {
	s := stepResult{
		Mode: mode, Requested: rate, Gen: gen,
		RecvRxDropped: after.recvRxDropped - before.recvRxDropped,
		ProdTxDropped: after.prodTxDropped - before.prodTxDropped,
		Seen:          after.seen() - before.seen(),
		Emit:          after.emit() - before.emit(),
		Lost:          after.lost() - before.lost(),
		FlowQueueFull: after.flowQueueFull - before.flowQueueFull,
		FlowGaps:      after.flowGaps - before.flowGaps,
		Parsed:        after.parsed - before.parsed,
		ReqGap:        after.reqGap - before.reqGap,
		ReqBad:        after.reqBad - before.reqBad,
		ReqTooLarge:   after.reqTooLarge - before.reqTooLarge,
		ReplayReqs:    after.replayReqs - before.replayReqs,
		Filtered:      after.filtered - before.filtered,
		Replayed:      after.replayed - before.replayed,
		Dropped:       after.dropped - before.dropped,
		Failed:        after.failed - before.failed,
		DropReasons:   diffMap(after.dropReasons, before.dropReasons),
		FailReasons:   diffMap(after.failReasons, before.failReasons),
		Compared:      after.compared - before.compared,
		Uncompared:    diffMap(after.uncompared, before.uncompared),
		Admitted:      after.admitted,
		CPU:           after.shadowtapCPU - before.shadowtapCPU,
		ShadowCPU:     after.shadowCPU - before.shadowCPU,
		SelfCPU:       after.selfCPU - before.selfCPU,
		Sys:           after.sys.sub(before.sys),
	}
	s.CaptureOther = s.Seen - s.Emit - s.Lost
	s.judge()
	return s
}

// endToEnd says whether the step replayed.
func (s stepResult) endToEnd() bool { return s.Variant != variantParse }

// judge decides whether the step was lossless: every mirrored packet the
// generator sent was handed on by the capture stage, and every request the
// generator sent completely was parsed and, end to end, replayed (none
// dropped, failed or filtered). Events a full flow shard queue dropped are
// reported, and count only through the requests they cost.
func (s *stepResult) judge() {
	var why []string
	sent := float64(s.Gen.Sent())
	if s.Gen.Refused > 0 || s.ProdTxDropped > 0 || s.RecvRxDropped > 0 {
		why = append(why, fmt.Sprintf("mirror link dropped before capture: ENOBUFS %d, tx_dropped %d, rx_dropped %d",
			s.Gen.Refused, s.ProdTxDropped, s.RecvRxDropped))
	}
	if s.Lost > 0 {
		why = append(why, fmt.Sprintf("capture lost %.0f (lost_ringbuf, lost_socket)", s.Lost))
	}
	if s.Emit < sent {
		why = append(why, fmt.Sprintf("capture emitted %.0f of %.0f sent", s.Emit, sent))
	}
	if s.Parsed < float64(s.Gen.RequestsSent) {
		why = append(why, fmt.Sprintf("parsed %.0f of %d requests", s.Parsed, s.Gen.RequestsSent))
	}
	if !s.endToEnd() {
		s.Why = why
		s.Lossless = len(why) == 0
		return
	}
	if s.Dropped > 0 {
		why = append(why, fmt.Sprintf("replay dropped %.0f %v", s.Dropped, s.DropReasons))
	}
	if s.Failed > 0 {
		why = append(why, fmt.Sprintf("replay failed %.0f %v", s.Failed, s.FailReasons))
	}
	if s.Filtered > 0 {
		why = append(why, fmt.Sprintf("filtered %.0f", s.Filtered))
	}
	if s.Replayed < s.Parsed {
		why = append(why, fmt.Sprintf("replayed %.0f of %.0f parsed", s.Replayed, s.Parsed))
	} else if s.Replayed < float64(s.Gen.RequestsSent) && s.Parsed >= float64(s.Gen.RequestsSent) {
		why = append(why, fmt.Sprintf("replayed %.0f of %d sent", s.Replayed, s.Gen.RequestsSent))
	}
	s.Why = why
	s.Lossless = len(why) == 0
}

// cpuPerMpkt is CPU seconds per million mirrored packets.
func cpuPerMpkt(d time.Duration, packets uint64) float64 {
	if packets == 0 {
		return 0
	}
	return d.Seconds() / (float64(packets) / 1e6)
}

func (s stepResult) line() string {
	verdict := "LOSSLESS"
	if s.FlowQueueFull > 0 {
		verdict += fmt.Sprintf(" (flow queue full %.0f)", s.FlowQueueFull)
	}
	if !s.Lossless {
		verdict = "LOSSY: " + strings.Join(s.Why, "; ")
	}
	win := s.window().Seconds()
	return fmt.Sprintf("%s %s %-9s req %5s pkt/s  sent %8.0f pkt/s %6.0f req/s (%d pkts, %d req)  emit %.0f lost %.0f  parsed %.0f replayed %.0f (%.1f %%)  shadowtap %.2fs = %.2f cores (%.2f s/Mpkt)  shadow %.2f  generator %.2f  other %.2f cores  admitted %.2f  settle %s  %s",
		s.Shape, s.Mode, s.Variant, rateName(s.Requested), s.Gen.PPS(), s.Gen.RPS(), s.Gen.Sent(), s.Gen.RequestsSent, s.Emit, s.Lost, s.Parsed, s.Replayed, s.answered(),
		s.CPU.Seconds(), s.CPU.Seconds()/win, cpuPerMpkt(s.CPU, s.Gen.Sent()), s.ShadowCPU.Seconds()/win, s.SelfCPU.Seconds()/win, s.others().Seconds()/win,
		s.Admitted, s.Settle.Round(10*time.Millisecond), verdict)
}

// answered is the percentage of the requests sent that the shadow answered.
func (s stepResult) answered() float64 {
	if s.Gen.RequestsSent == 0 {
		return 0
	}
	return 100 * s.Replayed / float64(s.Gen.RequestsSent)
}

// window is the time the step's CPU figures cover: the generator's run and
// the settle time (the reads around them take a few milliseconds more).
func (s stepResult) window() time.Duration { return s.Gen.Elapsed + s.Settle }

// lostAtCapture is every mirrored frame lost at or before capture.
func (s stepResult) lostAtCapture() float64 {
	return s.Lost + float64(max(s.Gen.Refused, s.ProdTxDropped)+s.RecvRxDropped)
}

// others is the host's busy time during the step that neither shadowtap,
// the shadow nor this process used: other processes, and softirq work
// charged to none.
func (s stepResult) others() time.Duration {
	return max(0, s.Sys.Busy-s.CPU-s.SelfCPU-s.ShadowCPU)
}
