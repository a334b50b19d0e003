package pipeline

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// observer is the sink when no --target is given: it counts what the parser
// produced and replays nothing.
type observer struct {
	requests, responses, noResponse atomic.Uint64
}

// ObserveSnapshot is what the observe-only sink counted.
type ObserveSnapshot struct {
	Requests, Responses, NoResponse uint64
}

// MetricHelp documents the observe-only counters (shadowtap_observe_*).
func (ObserveSnapshot) MetricHelp() map[string]string {
	return map[string]string{
		"Requests":   "Requests parsed while observing only (no --target): nothing is replayed.",
		"Responses":  "Production responses paired with a request while observing only.",
		"NoResponse": "Requests that ended without production's response while observing only.",
	}
}

func (o *observer) Request(*httpx.Exchange) { o.requests.Add(1) }

// WantBody implements httpx.HeadDecider: observing only, no request body
// is ever used, so none is kept.
func (o *observer) WantBody(*httpx.Exchange) bool { return false }

func (o *observer) Response(ex *httpx.Exchange) {
	if ex.Resp != nil && ex.Reason == httpx.RespOK {
		o.responses.Add(1)
	} else {
		o.noResponse.Add(1)
	}
}

func (o *observer) snapshot() ObserveSnapshot {
	return ObserveSnapshot{o.requests.Load(), o.responses.Load(), o.noResponse.Load()}
}

// summaryState remembers the last summary's capture counters for rates.
type summaryState struct {
	last     event.Counters
	lastTime time.Time
}

func (p *stages) summaryLoop(ctx context.Context, cfg Config, log *slog.Logger) {
	p.summary.lastTime = time.Now()
	t := time.NewTicker(cfg.LogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.logSummary(log, "summary")
			p.writeVerdict(cfg, log)
		}
	}
}

// logSummary writes one line: capture rates by outcome, then the totals of
// each later stage.
func (p *stages) logSummary(log *slog.Logger, msg string) {
	now := time.Now()
	c, err := p.source.Counters()
	if err != nil {
		log.Warn("reading capture counters", "err", err)
		return
	}
	secs := now.Sub(p.summary.lastTime).Seconds()
	if secs <= 0 {
		secs = 1
	}
	attrs := []any{
		"pps", rate(c.Packets(), p.summary.last.Packets(), secs),
		"bps", rate(c.Bytes, p.summary.last.Bytes, secs) * 8,
	}
	for o := event.Outcome(0); o < event.NumOutcomes; o++ {
		if d := c.Outcomes[o] - p.summary.last.Outcomes[o]; d > 0 || o == event.Emit {
			attrs = append(attrs, o.String()+"_pps", rate(c.Outcomes[o], p.summary.last.Outcomes[o], secs))
		}
	}
	attrs = append(attrs, "truncated", c.Truncated)
	p.summary.last, p.summary.lastTime = c, now

	f := p.dispatch.Stats()
	attrs = append(attrs, slog.Group("flow",
		"conns", f.ConnsTracked, "opened", f.ConnsOpened, "gaps", f.Gaps,
		"evicted", f.ClosedEvicted, "queue_full", f.QueueFullEvents))
	h := p.httpStats.Snapshot()
	attrs = append(attrs, slog.Group("http",
		"requests", h.Requests, "responses", h.Responses,
		"too_large", h.RequestsTooLarge+h.ResponsesTooLarge,
		"gap_dropped", h.RequestsGap+h.ResponsesGap,
		"not_http", h.GaveUpNotHTTP, "upgrades", h.GaveUpUpgrade+h.GaveUpConnect))
	if p.replayer != nil {
		r := p.replayer.Stats().Snapshot()
		var replayed, dropped, failed, pending uint64
		for _, t := range r.Targets {
			replayed += t.ReplayedTotal()
			dropped += t.Dropped()
			failed += t.Failed()
			pending += t.Queued + t.InFlight + t.Duplicates.Queued + t.Duplicates.InFlight
		}
		attrs = append(attrs, slog.Group("replay",
			"replayed", replayed, "filtered", r.FilteredMethod+r.FilteredPath,
			"sampled_out", r.SampledOut, "too_large", r.TooLarge,
			"dropped", dropped, "failed", failed, "pending", pending))
		if p.engine != nil {
			compared, differing := p.engine.Totals()
			attrs = append(attrs, slog.Group("verdict", "compared", compared, "differing", differing))
		}
	} else {
		o := p.observer.snapshot()
		attrs = append(attrs, slog.Group("observe", "requests", o.Requests, "responses", o.Responses))
	}
	log.Info(msg, attrs...)
}

func rate(now, before uint64, secs float64) uint64 {
	if now < before {
		return 0
	}
	return uint64(float64(now-before)/secs + 0.5)
}
