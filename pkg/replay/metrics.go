package replay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collectors returns the replay stage's Prometheus collectors, for the
// caller to register: the outcome counters (read from Stats at scrape time),
// the bytes held for comparison, and per-target latency and TTFB histograms.
// The comparison's own series come from pkg/verdict.
func (r *Replayer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{newStatsCollector(r), r.latency, r.ttfb, newAdmittedCollector(r.adm)}
}

type statsCollector struct {
	r                                           *Replayer
	requests, filtered, accepted                *prometheus.Desc
	replayed, dropped, failed, queued, inflight *prometheus.Desc
	compareBytes, keyMiss, queuedBytes          *prometheus.Desc
	dups, dupReplayed, dupDropped, dupFailed    *prometheus.Desc
	discarded                                   *prometheus.Desc
	pipeBatches, pipelined, pipeFallbacks       *prometheus.Desc
}

func newStatsCollector(r *Replayer) *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("shadowtap_replay_"+name, help, labels, nil)
	}
	return &statsCollector{
		r:            r,
		requests:     d("requests_total", "Requests handed to the replay stage by the parser."),
		filtered:     d("filtered_total", "Requests not replayed, by reason: method, path, sampled_out, too_large, body_budget (the body would have gone beyond --body-budget).", "reason"),
		accepted:     d("accepted_total", "Requests that passed every filter and were offered to every target."),
		replayed:     d("replayed_total", "Requests the target answered, by status class.", "target", "class"),
		dropped:      d("dropped_total", "Requests not sent to the target, by reason: queue full (--queue entries or --queue-bytes), rate limit, stopped, multiply (a --multiply below 1 sent it 0 times), overload (whole sessions shed).", "target", "reason"),
		failed:       d("failed_total", "Requests sent or attempted without an answer, by reason.", "target", "reason"),
		discarded:    d("conn_discarded_total", "Kept connections to the target closed before their reuse, by reason: unsolicited (bytes no request asked for arrived), closed (the target closed it while idle).", "target", "reason"),
		queued:       d("queued", "Requests waiting in the target's queue, duplicates included.", "target"),
		inflight:     d("inflight", "Requests being sent to the target, duplicates included.", "target"),
		queuedBytes:  d("queued_bytes", "Request body bytes waiting in the target's queue, duplicates included, at most --queue-bytes.", "target"),
		compareBytes: d("compare_held_bytes", "Bytes of production and shadow bodies held for comparison, at most --compare-budget."),
		keyMiss:      d("sample_key_missing_total", "Sampling decisions made on the client address because the key header or cookie was absent."),
		dups:         d("duplicates_total", "Extra copies of requests that --multiply asked to send to the target, beyond the first (which alone is compared).", "target"),
		dupReplayed:  d("duplicates_replayed_total", "Duplicates (--multiply copies beyond the first) the target answered, by status class.", "target", "class"),
		dupDropped:   d("duplicates_dropped_total", "Duplicates (--multiply copies beyond the first) not sent to the target, by reason: queue full, rate limit, stopped.", "target", "reason"),
		dupFailed:    d("duplicates_failed_total", "Duplicates (--multiply copies beyond the first) sent or attempted without an answer, by reason.", "target", "reason"),

		pipeBatches:   d("pipeline_batches_total", "Writes that carried several requests to the target at once (--pipeline).", "target"),
		pipelined:     d("pipeline_requests_total", "Requests sent to the target in writes that carried several (--pipeline), duplicates included.", "target"),
		pipeFallbacks: d("pipeline_fallbacks_total", "1 once the target ended a connection before answering a batch of pipelined requests (--pipeline): it is sent one request at a time since, and the unanswered requests were sent again one at a time (GET, HEAD, OPTIONS, TRACE, or with an idempotency key) or counted failed.", "target"),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.filtered, c.accepted, c.replayed, c.dropped, c.failed, c.discarded,
		c.queued, c.inflight, c.queuedBytes, c.compareBytes, c.keyMiss, c.dups, c.dupReplayed, c.dupDropped, c.dupFailed,
		c.pipeBatches, c.pipelined, c.pipeFallbacks} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	s := c.r.stats.Snapshot()
	counter(c.requests, s.Requests)
	counter(c.filtered, s.FilteredMethod, "method")
	counter(c.filtered, s.FilteredPath, "path")
	counter(c.filtered, s.SampledOut, "sampled_out")
	counter(c.filtered, s.TooLarge, "too_large")
	counter(c.filtered, s.BodyBudget, "body_budget")
	counter(c.accepted, s.Accepted)
	counter(c.keyMiss, s.SampleKeyMissing)
	for _, t := range s.Targets {
		for cl := Class1xx; cl < NumClasses; cl++ {
			counter(c.replayed, t.Replayed[cl], t.Target, cl.String())
		}
		counter(c.dropped, t.DroppedQueue, t.Target, dropNames[dropQueue])
		counter(c.dropped, t.DroppedRate, t.Target, dropNames[dropRate])
		counter(c.dropped, t.DroppedStopped, t.Target, dropNames[dropStopped])
		counter(c.dropped, t.DroppedMultiply, t.Target, dropNames[dropMultiply])
		counter(c.dropped, t.DroppedOverload, t.Target, dropNames[dropOverload])
		counter(c.failed, t.FailedConnect, t.Target, failNames[failConnect])
		counter(c.failed, t.FailedTimeout, t.Target, failNames[failTimeout])
		counter(c.failed, t.FailedDrain, t.Target, failNames[failDrain])
		counter(c.failed, t.FailedInvalid, t.Target, failNames[failInvalid])
		counter(c.failed, t.FailedError, t.Target, failNames[failError])
		counter(c.failed, t.FailedResponseTooLarge, t.Target, failNames[failTooLarge])
		counter(c.discarded, t.DiscardedUnsolicited, t.Target, discardNames[discardUnsolicited])
		counter(c.discarded, t.DiscardedClosed, t.Target, discardNames[discardClosed])
		counter(c.pipeBatches, t.PipelineBatches, t.Target)
		counter(c.pipelined, t.PipelinedRequests, t.Target)
		counter(c.pipeFallbacks, t.PipelineFallbacks, t.Target)
		d := &t.Duplicates
		gauge(c.queued, t.Queued+d.Queued, t.Target)
		gauge(c.inflight, t.InFlight+d.InFlight, t.Target)
		gauge(c.queuedBytes, t.QueuedBytes, t.Target)
		counter(c.dups, d.Due, t.Target)
		for cl := Class1xx; cl < NumClasses; cl++ {
			counter(c.dupReplayed, d.Replayed[cl], t.Target, cl.String())
		}
		counter(c.dupDropped, d.DroppedQueue, t.Target, dropNames[dropQueue])
		counter(c.dupDropped, d.DroppedRate, t.Target, dropNames[dropRate])
		counter(c.dupDropped, d.DroppedStopped, t.Target, dropNames[dropStopped])
		counter(c.dupFailed, d.FailedConnect, t.Target, failNames[failConnect])
		counter(c.dupFailed, d.FailedTimeout, t.Target, failNames[failTimeout])
		counter(c.dupFailed, d.FailedDrain, t.Target, failNames[failDrain])
		counter(c.dupFailed, d.FailedInvalid, t.Target, failNames[failInvalid])
		counter(c.dupFailed, d.FailedError, t.Target, failNames[failError])
		counter(c.dupFailed, d.FailedResponseTooLarge, t.Target, failNames[failTooLarge])
	}
	gauge(c.compareBytes, uint64(max(c.r.cmp.held.Load(), 0)))
}
