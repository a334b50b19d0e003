package verdict

import (
	"fmt"
	"math"
	"time"
)

// LatencyBounds returns the upper bounds, in seconds, of the latency
// histograms: the same for every route and both sides, in /metrics and in
// the /verdict document, so that histograms from several receivers (or from
// Prometheus) merge exactly.
func LatencyBounds() []float64 {
	return []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}
}

// Histogram is a mergeable latency histogram with LatencyBounds. Counts has
// one more entry than Bounds (the last is above the last bound); counts are
// per bucket, not cumulative.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"` // seconds
	P50    float64   `json:"p50"` // seconds, estimated from the buckets
	P90    float64   `json:"p90"`
	P99    float64   `json:"p99"`
}

// NewHistogram returns an empty histogram with LatencyBounds.
func NewHistogram() Histogram {
	b := LatencyBounds()
	return Histogram{Bounds: b, Counts: make([]uint64, len(b)+1)}
}

// Observe adds one latency.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(h.Bounds) && s > h.Bounds[i] {
		i++
	}
	h.Counts[i]++
	h.Count++
	h.Sum += s
}

// Merge adds o's counts to h. Both must have the same bounds.
func (h *Histogram) Merge(o Histogram) error {
	if len(h.Bounds) == 0 && len(h.Counts) == 0 {
		*h = NewHistogram()
	}
	if len(o.Counts) == 0 && o.Count == 0 {
		return nil
	}
	if len(o.Bounds) != len(h.Bounds) || len(o.Counts) != len(h.Counts) {
		return fmt.Errorf("histograms with different buckets (%d and %d bounds)", len(h.Bounds), len(o.Bounds))
	}
	for i := range o.Bounds {
		if o.Bounds[i] != h.Bounds[i] {
			return fmt.Errorf("histograms with different bucket bounds (%g and %g)", h.Bounds[i], o.Bounds[i])
		}
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Count += o.Count
	h.Sum += o.Sum
	return nil
}

// Quantile estimates the q-quantile (0 < q < 1) in seconds by linear
// interpolation inside the bucket, as PromQL's histogram_quantile does; NaN
// when the histogram is empty. Above the last bound it answers the last bound.
func (h *Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	var cum float64
	for i, c := range h.Counts {
		prev := cum
		cum += float64(c)
		if cum < rank || c == 0 {
			continue
		}
		if i == len(h.Bounds) {
			return h.Bounds[len(h.Bounds)-1]
		}
		lo := 0.0
		if i > 0 {
			lo = h.Bounds[i-1]
		}
		return lo + (h.Bounds[i]-lo)*(rank-prev)/float64(c)
	}
	return h.Bounds[len(h.Bounds)-1]
}

// Finish fills P50, P90 and P99 from the counts (0 when empty, so the
// document stays valid JSON).
func (h *Histogram) Finish() {
	q := func(x float64) float64 {
		v := h.Quantile(x)
		if math.IsNaN(v) {
			return 0
		}
		return v
	}
	h.P50, h.P90, h.P99 = q(0.5), q(0.9), q(0.99)
}
