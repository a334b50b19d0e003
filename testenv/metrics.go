package testenv

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a Prometheus text exposition.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is one parsed scrape of shadowtap's /metrics, as the lab's tests,
// the demo and the benchmark driver read it.
type Metrics []Sample

// ParseMetrics reads the Prometheus text format with prometheus/common's
// parser and flattens it into samples as the exposition shows them: a
// histogram becomes NAME_bucket{le=...} (cumulative), NAME_sum and
// NAME_count; a summary NAME{quantile=...}, NAME_sum and NAME_count.
// Families are in name order, series in exposition order.
func ParseMetrics(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	names := make([]string, 0, len(mfs))
	for n := range mfs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out Metrics
	for _, n := range names {
		for _, m := range mfs[n].GetMetric() {
			out = append(out, samples(n, m)...)
		}
	}
	return out, nil
}

// samples flattens one metric of family name.
func samples(name string, m *dto.Metric) []Sample {
	labels := func(extra ...string) map[string]string {
		l := make(map[string]string, len(m.GetLabel())+1)
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	switch {
	case m.Histogram != nil:
		h := m.GetHistogram()
		var out []Sample
		inf := false
		for _, b := range h.GetBucket() {
			le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
			if math.IsInf(b.GetUpperBound(), 1) {
				le, inf = "+Inf", true
			}
			out = append(out, Sample{name + "_bucket", labels("le", le), float64(b.GetCumulativeCount())})
		}
		if !inf {
			out = append(out, Sample{name + "_bucket", labels("le", "+Inf"), float64(h.GetSampleCount())})
		}
		return append(out, Sample{name + "_sum", labels(), h.GetSampleSum()}, Sample{name + "_count", labels(), float64(h.GetSampleCount())})
	case m.Summary != nil:
		sm := m.GetSummary()
		var out []Sample
		for _, q := range sm.GetQuantile() {
			out = append(out, Sample{name, labels("quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)), q.GetValue()})
		}
		return append(out, Sample{name + "_sum", labels(), sm.GetSampleSum()}, Sample{name + "_count", labels(), float64(sm.GetSampleCount())})
	case m.Counter != nil:
		return []Sample{{name, labels(), m.GetCounter().GetValue()}}
	case m.Gauge != nil:
		return []Sample{{name, labels(), m.GetGauge().GetValue()}}
	default:
		return []Sample{{name, labels(), m.GetUntyped().GetValue()}}
	}
}

// Lookup adds every series of the metric name whose labels include all of
// match (label, value pairs); ok is false when no series matches.
func (m Metrics) Lookup(name string, match ...string) (total float64, ok bool) {
	for _, s := range m {
		if s.Name == name && hasLabels(s.Labels, match) {
			total += s.Value
			ok = true
		}
	}
	return total, ok
}

// Sum is Lookup's total, 0 when no series matches: for reports (the demo,
// the benchmark) that check the names they need with Has. Tests use Get.
func (m Metrics) Sum(name string, match ...string) float64 {
	v, _ := m.Lookup(name, match...)
	return v
}

// Get is Lookup for tests: a series that is not there fails the test at
// once, so that a renamed or vanished metric cannot pass a check for zero.
func (m Metrics) Get(t testing.TB, name string, match ...string) float64 {
	t.Helper()
	v, ok := m.Lookup(name, match...)
	if !ok {
		t.Fatalf("no series %s%q in the scrape (renamed or not exported?)", name, match)
	}
	return v
}

// Has reports whether any series of the metric name has all of match.
func (m Metrics) Has(name string, match ...string) bool {
	for _, s := range m {
		if s.Name == name && hasLabels(s.Labels, match) {
			return true
		}
	}
	return false
}

// ByLabel returns the metric's values summed per value of label.
func (m Metrics) ByLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.Name == name {
			out[s.Labels[label]] += s.Value
		}
	}
	return out
}

// Names lists the distinct metric names with the given prefix, sorted.
func (m Metrics) Names(prefix string) []string {
	seen := map[string]bool{}
	for _, s := range m {
		if strings.HasPrefix(s.Name, prefix) {
			seen[s.Name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// String formats the non-zero shadowtap_* series, one a line, for failure
// messages.
func (m Metrics) String() string {
	var b strings.Builder
	for _, s := range m {
		if !strings.HasPrefix(s.Name, "shadowtap_") || s.Value == 0 {
			continue
		}
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(s.Name)
		for i, k := range keys {
			sep := ","
			if i == 0 {
				sep = "{"
			}
			fmt.Fprintf(&b, "%s%s=%q", sep, k, s.Labels[k])
		}
		if len(keys) > 0 {
			b.WriteByte('}')
		}
		fmt.Fprintf(&b, " %v\n", s.Value)
	}
	return b.String()
}

func hasLabels(labels map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}
