package verdict

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather registers the engine's collectors in a pedantic registry (which
// checks descriptions, label consistency and duplicates) and gathers.
func gather(t testing.TB, e *Engine) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range e.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// seriesCount counts the series of an exposition as Prometheus stores them:
// one per counter, buckets + _sum + _count per histogram.
func seriesCount(mfs []*dto.MetricFamily) int {
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if h := m.GetHistogram(); h != nil {
				n += len(h.Bucket) + 3 // the buckets, +Inf, _sum, _count
				continue
			}
			n++
		}
	}
	return n
}

func gatherCount(t testing.TB, e *Engine) int { return seriesCount(gather(t, e)) }

// value finds a counter or a histogram's count by family and labels.
func value(mfs []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			if len(m.Label) != len(labels) {
				continue
			}
			for _, l := range m.Label {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount()), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func labelValues(mfs []*dto.MetricFamily, name, label string) []string {
	seen := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == label {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// At default settings the exposition stays under 5 000 series whatever the
// traffic: 10 000 distinct routes, each differing by status on one exchange
// and by shadow_error on another.
func TestSeriesCap(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.Queue = 20000 })
	var xs []*Exchange
	for i := 0; i < 10000; i++ {
		p := fmt.Sprintf("/r%d/x", i) // "r123" is a literal segment: a distinct route each
		prod := mkResp(200, time.Duration(i)*time.Microsecond)
		xs = append(xs, ex("GET", p, prod, shadow(mkResp(500, time.Millisecond))),
			ex("GET", p, prod, Answer{Target: "shadow", Error: "reset"}))
	}
	d := run(t, e, xs...)
	mfs := gather(t, e)
	n := seriesCount(mfs)
	// The worst case has every exchange kind on every route; this traffic
	// has two of them, so add what the three others would.
	kinds := labelValues(mfs, MetricDifferences, "kind")
	worst := n + (len(ExchangeKinds())-len(kinds))*501
	if len(kinds) != 2 || worst >= 5000 {
		t.Errorf("%d series with kinds %v (worst case %d) at default settings, want < 5000", n, kinds, worst)
	}
	routes := labelValues(mfs, MetricCompared, "route")
	if len(routes) != 501 {
		t.Errorf("%d route labels, want 500 and other", len(routes))
	}
	if v, _ := value(mfs, MetricCompared, map[string]string{"target": "shadow", "route": OtherRoute}); v != 2*9500 {
		t.Errorf("compared{route=other} = %g, want %d (the routes beyond the 500th)", v, 2*9500)
	}
	if v, _ := value(mfs, MetricDifferences, map[string]string{"target": "shadow", "route": OtherRoute, "kind": "shadow_error"}); v != 9500 {
		t.Errorf("differences{route=other,kind=shadow_error} = %g, want 9500", v)
	}
	lat := labelValues(mfs, MetricLatency, "route")
	if len(lat) != 26 {
		t.Errorf("latency histograms for %d routes, want 25 and other", len(lat))
	}
	if v, _ := value(mfs, MetricLatency, map[string]string{"target": "shadow", "route": OtherRoute, "side": "production"}); v != 2*(10000-25) {
		t.Errorf("latency{route=other,side=production} count %g, want %d", v, 2*(10000-25))
	}
	if len(d.Routes) != 501 {
		t.Errorf("document: %d routes, want 501", len(d.Routes))
	}
	t.Logf("%d series for 10000 routes (worst case %d)", n, worst)
}

func TestCollectorFamilies(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.Baseline = "base" })
	d := run(t, e,
		ex("GET", "/a", mkResp(200, time.Millisecond), shadow(mkResp(200, time.Millisecond)), Answer{Target: "base", Response: mkResp(200, time.Millisecond)}),
		ex("GET", "/a", mkResp(200, time.Millisecond), shadow(mkResp(503, time.Millisecond)), Answer{Target: "base", Response: mkResp(200, time.Millisecond)}),
		ex("GET", "/b", mkResp(404, time.Millisecond), shadow(mkResp(200, time.Millisecond)), Answer{Target: "base", Response: mkResp(200, time.Millisecond)}),
		ex("GET", "/c", mkResp(200, time.Millisecond), Answer{Target: "shadow", Error: "connect"}),
		&Exchange{Method: "GET", Path: "/a", ProductionMissing: "gap", Answers: []Answer{shadow(mkResp(302, 0))}},
		ex("GET", "/a", &Response{Status: 200, BodyLen: 10}, shadow(&Response{Status: 200, BodyLen: 12})),
	)
	mfs := gather(t, e)
	for _, mf := range mfs {
		if len(mf.GetHelp()) < 30 || !strings.HasSuffix(mf.GetHelp(), ".") {
			t.Errorf("%s: help %q is not a sentence", mf.GetName(), mf.GetHelp())
		}
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{MetricCompared, map[string]string{"target": "shadow", "route": "GET /a"}, 3},
		{MetricDiffering, map[string]string{"target": "shadow", "route": "GET /a"}, 2}, // 503, and 12 body bytes for 10
		{MetricDifferences, map[string]string{"target": "shadow", "route": "GET /a", "kind": "status"}, 1},
		{MetricDifferences, map[string]string{"target": "shadow", "route": "GET /a", "kind": "body"}, 1},
		{MetricDifferences, map[string]string{"target": "shadow", "route": "GET /c", "kind": "shadow_error"}, 1},
		// /b: the baseline also answered 200 where production said 404: noise.
		{MetricDiffering, map[string]string{"target": "shadow", "route": "GET /b"}, 0},
		{MetricNoise, map[string]string{"target": "shadow", "kind": "status"}, 1},
		{MetricNoise, map[string]string{"target": "shadow", "kind": "header"}, 0},
		{MetricUncompared, map[string]string{"target": "shadow", "reason": "gap"}, 1},
		{MetricLatency, map[string]string{"target": "shadow", "route": "GET /a", "side": "production"}, 3},
		{MetricLatency, map[string]string{"target": "shadow", "route": "GET /c", "side": "shadow"}, 0},
		{MetricBodyUnverified, map[string]string{"target": "shadow"}, 0},
		// The legacy replay families, for every target that answered.
		{MetricLegacyCompare, map[string]string{"target": "shadow", "production": "2xx", "shadow": "2xx"}, 2},
		{MetricLegacyCompare, map[string]string{"target": "shadow", "production": "2xx", "shadow": "5xx"}, 1},
		{MetricLegacyCompare, map[string]string{"target": "shadow", "production": "4xx", "shadow": "2xx"}, 1},
		{MetricLegacyCompare, map[string]string{"target": "shadow", "production": "none", "shadow": "3xx"}, 1},
		{MetricLegacyCompare, map[string]string{"target": "base", "production": "2xx", "shadow": "2xx"}, 2},
		{MetricLegacyMismatch, map[string]string{"target": "shadow", "kind": "status"}, 2},
		{MetricLegacyMismatch, map[string]string{"target": "shadow", "kind": "body_length"}, 1},
		{MetricNoiseOverflow, map[string]string{}, 0},
	}
	for _, tc := range tests {
		got, ok := value(mfs, tc.name, tc.labels)
		if !ok {
			t.Errorf("%s%v: no such series", tc.name, tc.labels)
			continue
		}
		if got != tc.want {
			t.Errorf("%s%v = %g, want %g", tc.name, tc.labels, got, tc.want)
		}
	}
	// differences_total only for kinds that occurred.
	if _, ok := value(mfs, MetricDifferences, map[string]string{"target": "shadow", "route": "GET /a", "kind": "cookie"}); ok {
		t.Error("differences_total exported for a kind that never occurred")
	}
	// The baseline has no verdict series of its own.
	if _, ok := value(mfs, MetricCompared, map[string]string{"target": "base", "route": "GET /a"}); ok {
		t.Error("the baseline has compared_total series")
	}
	// The metrics agree with the document.
	if v, _ := value(mfs, MetricCompared, map[string]string{"target": "shadow", "route": "GET /a"}); uint64(v) != findRoute(d, "shadow", "GET /a").Exchanges {
		t.Errorf("metrics and document disagree on GET /a")
	}
	// No diff log: no diff log families.
	for _, mf := range mfs {
		if strings.Contains(mf.GetName(), "difflog") {
			t.Errorf("%s exported without --diff-log", mf.GetName())
		}
	}
}
