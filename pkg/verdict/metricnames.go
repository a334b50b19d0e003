package verdict

// Prometheus metric families of the verdict stage. `shadowtap verdict
// --prometheus` queries them by these names.
const (
	// MetricCompared counts compared exchanges, labels target, route.
	MetricCompared = "shadowtap_verdict_compared_total"
	// MetricDiffering counts compared exchanges with a difference after noise, labels target, route.
	MetricDiffering = "shadowtap_verdict_differing_total"
	// MetricDifferences counts differing exchanges by kind, labels target, route, kind.
	MetricDifferences = "shadowtap_verdict_differences_total"
	// MetricNoise counts differences discarded as baseline noise, labels target, kind.
	MetricNoise = "shadowtap_verdict_noise_total"
	// MetricUncompared counts exchanges that could not be compared, labels target, reason.
	MetricUncompared = "shadowtap_verdict_uncompared_total"
	// MetricLatency is the latency histogram, labels target, route, side ("production" or "shadow").
	MetricLatency = "shadowtap_verdict_latency_seconds"
)

// Families of the verdict stage's own outcomes.
const (
	// MetricBodyUnverified counts compared exchanges whose bodies could not
	// be verified (beyond --compare-body-bytes, or not decodable), label target.
	MetricBodyUnverified = "shadowtap_verdict_body_unverified_total"
	// MetricDiffLogLines counts lines written to --diff-log.
	MetricDiffLogLines = "shadowtap_verdict_difflog_lines_total"
	// MetricDiffLogSkipped counts differing exchanges not written to
	// --diff-log, label reason ("rate", "error", "closed").
	MetricDiffLogSkipped = "shadowtap_verdict_difflog_skipped_total"
	// MetricNoiseOverflow counts baseline differences not learned because
	// the route already holds the most noise fields it may.
	MetricNoiseOverflow = "shadowtap_verdict_noise_overflow_total"
)

// Families replay exported before the verdict stage, now computed here from
// the same exchanges (labels unchanged so that dashboards keep working).
const (
	// MetricLegacyCompare counts answers by production's status class and
	// the target's, labels target, production, shadow ("1xx".."5xx",
	// "other", production "none" when its response was not seen).
	MetricLegacyCompare = "shadowtap_replay_compare_total"
	// MetricLegacyMismatch counts answers that differ from production's,
	// labels target, kind ("status", "body_length").
	MetricLegacyMismatch = "shadowtap_replay_mismatch_total"
)
