package verdict

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

func TestHistogramObserveBuckets(t *testing.T) {
	tests := []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0},
		{500 * time.Microsecond, 0}, // on the bound: le
		{501 * time.Microsecond, 1},
		{time.Millisecond, 1},
		{3 * time.Millisecond, 3},
		{10 * time.Second, 13},
		{11 * time.Second, 14}, // above the last bound
	}
	for _, tc := range tests {
		h := NewHistogram()
		h.Observe(tc.d)
		if h.Counts[tc.bucket] != 1 || h.Count != 1 || h.Sum != tc.d.Seconds() {
			t.Errorf("Observe(%v): counts %v, count %d, sum %g; want bucket %d", tc.d, h.Counts, h.Count, h.Sum, tc.bucket)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	obs := func(ds ...time.Duration) Histogram {
		h := NewHistogram()
		for _, d := range ds {
			h.Observe(d)
		}
		return h
	}
	ms := time.Millisecond
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want float64
	}{
		// 4 in (2ms, 5ms]: rank 2 of 4 is halfway through the bucket.
		{"half a bucket", obs(3*ms, 3*ms, 4*ms, 4*ms), 0.5, 0.0035},
		// 1 in (0, 0.5ms], 1 in (10ms, 20ms]: p50 is the end of the first bucket.
		{"first bucket", obs(0, 15*ms), 0.5, 0.0005},
		{"second of two", obs(0, 15*ms), 0.99, 0.01 + 0.01*0.98},
		{"above the last bound", obs(time.Minute, time.Minute), 0.9, 10},
		{"p90 of ten", obs(ms, ms, ms, ms, ms, ms, ms, ms, ms, 150*ms), 0.9, 0.001},
		{"p99 of ten", obs(ms, ms, ms, ms, ms, ms, ms, ms, ms, 150*ms), 0.99, 0.1 + 0.1*0.9},
	}
	for _, tc := range tests {
		if got := tc.h.Quantile(tc.q); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: Quantile(%g) = %g, want %g", tc.name, tc.q, got, tc.want)
		}
	}
	empty := NewHistogram()
	if !math.IsNaN(empty.Quantile(0.5)) {
		t.Error("Quantile of an empty histogram is not NaN")
	}
	empty.Finish()
	if empty.P50 != 0 || empty.P99 != 0 {
		t.Errorf("Finish on empty: %g %g, want 0", empty.P50, empty.P99)
	}
	h := obs(3*ms, 3*ms, 4*ms, 4*ms)
	h.Finish()
	if h.P50 != h.Quantile(0.5) || h.P90 != h.Quantile(0.9) || h.P99 != h.Quantile(0.99) || !(h.P50 < h.P90 && h.P90 < h.P99) {
		t.Errorf("Finish: %g %g %g", h.P50, h.P90, h.P99)
	}
}

// Merging histograms is exact: the merge of parts equals one histogram of
// everything, also after a trip through JSON (documents from receivers).
func TestHistogramMerge(t *testing.T) {
	var all []time.Duration
	for i := 0; i < 300; i++ {
		all = append(all, time.Duration(i*i)*time.Microsecond*7)
	}
	whole := NewHistogram()
	parts := []Histogram{NewHistogram(), NewHistogram(), NewHistogram()}
	for i, d := range all {
		whole.Observe(d)
		parts[i%3].Observe(d)
	}
	var merged Histogram // the zero value merges too
	for _, p := range parts {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Histogram
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if err := merged.Merge(back); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(merged.Counts, whole.Counts) || merged.Count != whole.Count || math.Abs(merged.Sum-whole.Sum) > 1e-9 {
		t.Errorf("merged %v/%d/%g, want %v/%d/%g", merged.Counts, merged.Count, merged.Sum, whole.Counts, whole.Count, whole.Sum)
	}
	if merged.Quantile(0.9) != whole.Quantile(0.9) {
		t.Errorf("p90 of the merge %g, of the whole %g", merged.Quantile(0.9), whole.Quantile(0.9))
	}
	if err := merged.Merge(Histogram{}); err != nil || merged.Count != whole.Count {
		t.Errorf("merging an empty histogram: %v, count %d", err, merged.Count)
	}

	other := Histogram{Bounds: []float64{1, 2}, Counts: []uint64{1, 0, 0}, Count: 1}
	if err := merged.Merge(other); err == nil {
		t.Error("merging different bucket counts: no error")
	}
	shifted := NewHistogram()
	shifted.Bounds[3] = 0.004
	shifted.Observe(time.Millisecond)
	if err := merged.Merge(shifted); err == nil {
		t.Error("merging different bounds: no error")
	}
	if merged.Count != whole.Count {
		t.Error("a failed merge changed the histogram")
	}
}
