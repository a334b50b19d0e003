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
