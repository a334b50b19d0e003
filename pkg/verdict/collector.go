package verdict

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the engine's figures at scrape time. The series are
// bounded whatever the traffic: routes are capped per target (MaxRoutes,
// then "other"), differences_total is exported only for kinds that
// occurred, and latency histograms exist only for a target's first
// LatencyRoutes routes, the others merged under route="other".
type collector struct {
	e *Engine

	compared, differing, differences, noise, uncompared *prometheus.Desc
	latency, unverified, overflow                       *prometheus.Desc
	dlLines, dlSkipped                                  *prometheus.Desc
	legacyCompare, legacyMismatch                       *prometheus.Desc
}

func newCollector(e *Engine) *collector {
	d := prometheus.NewDesc
	return &collector{
		e: e,
		compared: d(MetricCompared,
			"Replayed exchanges whose target's answer was compared with production's response, by target and route template (\"other\" beyond --max-routes).",
			[]string{"target", "route"}, nil),
		differing: d(MetricDiffering,
			"Compared exchanges where the target's answer differs from production's in at least one way that is not noise.",
			[]string{"target", "route"}, nil),
		differences: d(MetricDifferences,
			"Differing exchanges by kind of difference (status, header, cookie, body, shadow_error); one exchange counts once under each kind it shows.",
			[]string{"target", "route", "kind"}, nil),
		noise: d(MetricNoise,
			"Differences not counted because the baseline (old code) differed from production in the same field, by kind.",
			[]string{"target", "kind"}, nil),
		uncompared: d(MetricUncompared,
			"Exchanges that could not be compared, by reason (busy: comparison queue full; stopped: shutting down; or why production's response was not seen).",
			[]string{"target", "reason"}, nil),
		latency: d(MetricLatency,
			"Response latency in seconds by route and side: production's measured on the mirror, the target's from request written to first response byte. Beyond a target's first routes, merged under route=\"other\".",
			[]string{"target", "route", "side"}, nil),
		unverified: d(MetricBodyUnverified,
			"Compared exchanges whose bodies could not be verified (beyond --compare-body-bytes, or not decodable): their status, headers and cookies were compared.",
			[]string{"target"}, nil),
		overflow: d(MetricNoiseOverflow,
			"Fields seen differing between production and the baseline but not learned as noise because their route already holds the most noise fields it may.",
			nil, nil),
		dlLines: d(MetricDiffLogLines,
			"Lines written to the --diff-log file.",
			nil, nil),
		dlSkipped: d(MetricDiffLogSkipped,
			"Differing exchanges not written to the --diff-log file, by reason (rate: beyond the examples per route and kind per minute; error: the file could not be written; closed: after shutdown).",
			[]string{"reason"}, nil),
		legacyCompare: d(MetricLegacyCompare,
			"Answers by production's status class and the target's (production=\"none\" when production's response was not seen).",
			[]string{"target", "production", "shadow"}, nil),
		legacyMismatch: d(MetricLegacyMismatch,
			"Answers whose status or body length differs from production's, by kind: status, body_length.",
			[]string{"target", "kind"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.compared, c.differing, c.differences, c.noise, c.uncompared,
		c.latency, c.unverified, c.overflow, c.dlLines, c.dlSkipped, c.legacyCompare, c.legacyMismatch} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	// A label value that is not valid UTF-8 cannot be exported; route
	// labels are made valid by the router and target names come from the
	// configuration, so such a series is left out rather than panicking.
	// The metrics are made under the engine's lock and sent after it, so a
	// slow scrape never holds up the comparison.
	var out []prometheus.Metric
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		if m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), labels...); err == nil {
			out = append(out, m)
		}
	}
	hist := func(h *Histogram, labels ...string) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			cum += h.Counts[i]
			buckets[b] = cum
		}
		if m, err := prometheus.NewConstHistogram(c.latency, h.Count, h.Sum, buckets, labels...); err == nil {
			out = append(out, m)
		}
	}

	e := c.e
	e.mu.Lock()
	names := e.targetNames()
	for _, n := range names {
		t := e.targets[n]
		noise := make(map[Kind]uint64)
		type pair struct{ prod, shadow Histogram }
		lat := make(map[string]*pair)
		var latOrder []string
		for _, r := range t.order {
			counter(c.compared, r.exchanges, n, r.route)
			counter(c.differing, r.differing, n, r.route)
			for k, v := range r.kinds {
				if v > 0 {
					counter(c.differences, v, n, r.route, string(k))
				}
			}
			for k, v := range r.noise {
				noise[k] += v
			}
			label := r.route
			if r.rank >= e.cfg.LatencyRoutes {
				label = OtherRoute
			}
			p := lat[label]
			if p == nil {
				p = &pair{prod: NewHistogram(), shadow: NewHistogram()}
				lat[label] = p
				latOrder = append(latOrder, label)
			}
			p.prod.Merge(r.prod)     //nolint:errcheck // same bounds by construction
			p.shadow.Merge(r.shadow) //nolint:errcheck
		}
		for _, label := range latOrder {
			hist(&lat[label].prod, n, label, "production")
			hist(&lat[label].shadow, n, label, "shadow")
		}
		if len(t.order) > 0 {
			for _, k := range ExchangeKinds() {
				counter(c.noise, noise[k], n, string(k))
			}
			counter(c.unverified, t.unverified, n)
		}
		for reason, v := range t.uncompared {
			counter(c.uncompared, v, n, reason)
		}
		for p := range t.pairs {
			for s := range t.pairs[p] {
				if v := t.pairs[p][s]; v > 0 {
					counter(c.legacyCompare, v, n, classNames[p], classNames[s])
				}
			}
		}
		counter(c.legacyMismatch, t.statusMismatch, n, "status")
		counter(c.legacyMismatch, t.bodyLenMismatch, n, "body_length")
	}
	counter(c.overflow, e.overflow)
	e.mu.Unlock()

	if e.dl != nil {
		written, skipped := e.dl.counts()
		counter(c.dlLines, written)
		for _, r := range []string{SkipRate, SkipError, SkipClosed} {
			counter(c.dlSkipped, skipped[r], r)
		}
	}
	for _, m := range out {
		ch <- m
	}
}
