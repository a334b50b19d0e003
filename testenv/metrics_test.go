package testenv

import (
	"math"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	const text = `# HELP shadowtap_capture_packets_total Mirror packets by capture outcome.
# TYPE shadowtap_capture_packets_total counter
shadowtap_capture_packets_total{outcome="emit"} 1.5e+06
shadowtap_capture_packets_total{outcome="lost_ringbuf"} 3
shadowtap_replay_replayed_total{class="2xx",target="http://10.83.0.2:8080"} 249990
shadowtap_replay_replayed_total{class="5xx",target="http://10.83.0.2:8080"} 5
shadowtap_replay_inflight{target="http://10.83.0.2:8080"} 1 1700000000000
weird_label{a="x\"y,z}",b="\\"} +Inf
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"shadowtap_capture_packets_total", []string{"outcome", "emit"}, 1.5e6},
		{"shadowtap_capture_packets_total", nil, 1.5e6 + 3},
		{"shadowtap_replay_replayed_total", nil, 249995},
		{"shadowtap_replay_replayed_total", []string{"class", "5xx"}, 5},
		{"shadowtap_replay_inflight", nil, 1},
	} {
		if got := m.Get(t, c.name, c.match...); got != c.want {
			t.Errorf("Get(%s, %v) = %v, want %v", c.name, c.match, got, c.want)
		}
		if got, ok := m.Lookup(c.name, c.match...); got != c.want || !ok {
			t.Errorf("Lookup(%s, %v) = %v, %v; want %v, true", c.name, c.match, got, ok, c.want)
		}
	}
	// A series that is not there is not a zero.
	for _, c := range [][]string{{"shadowtap_absent"}, {"shadowtap_replay_replayed_total", "class", "4xx"}} {
		if got, ok := m.Lookup(c[0], c[1:]...); ok || got != 0 {
			t.Errorf("Lookup(%q) = %v, %v; want 0, false", c, got, ok)
		}
		if m.Sum(c[0], c[1:]...) != 0 {
			t.Errorf("Sum(%q) != 0", c)
		}
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { recover() }()
			m.Get(ft, c[0], c[1:]...)
		}()
		if !ft.failed {
			t.Errorf("Get(%q) of a missing series did not fail the test", c)
		}
	}
	if !m.Has("weird_label", "a", `x"y,z}`, "b", `\`) || !math.IsInf(m.Get(t, "weird_label"), 1) {
		t.Errorf("escaped labels or +Inf not parsed: %+v", m[len(m)-1])
	}
	if m.Has("shadowtap_absent") || m.Has("shadowtap_replay_replayed_total", "class", "4xx") {
		t.Error("Has reports a series that is not there")
	}
	if got := m.ByLabel("shadowtap_replay_replayed_total", "class"); got["2xx"] != 249990 || got["5xx"] != 5 || len(got) != 2 {
		t.Errorf("ByLabel = %v", got)
	}
	if got := strings.Join(m.Names("shadowtap_replay_"), " "); got != "shadowtap_replay_inflight shadowtap_replay_replayed_total" {
		t.Errorf("Names = %q", got)
	}
	if s := m.String(); !strings.Contains(s, `shadowtap_replay_replayed_total{class="5xx",target="http://10.83.0.2:8080"} 5`) || strings.Contains(s, "weird_label") {
		t.Errorf("String:\n%s", s)
	}
	for _, bad := range []string{"x{a=\"1\" 2\n", "novalue\n", "x{a=1} 2\n", "x 1.2.3\n"} {
		if _, err := ParseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fatalRecorder records a Fatalf instead of failing the real test; it
// panics to stop the caller as Fatalf would (recovered by the caller).
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}

// TestParseMetricsHistogram: histograms flatten as the exposition shows
// them, so tests can read buckets, sums and counts by name.
func TestParseMetricsHistogram(t *testing.T) {
	const text = `# HELP shadowtap_verdict_latency_seconds Latency.
# TYPE shadowtap_verdict_latency_seconds histogram
shadowtap_verdict_latency_seconds_bucket{side="shadow",le="0.1"} 3
shadowtap_verdict_latency_seconds_bucket{side="shadow",le="1"} 5
shadowtap_verdict_latency_seconds_bucket{side="shadow",le="+Inf"} 6
shadowtap_verdict_latency_seconds_sum{side="shadow"} 7.5
shadowtap_verdict_latency_seconds_count{side="shadow"} 6
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"shadowtap_verdict_latency_seconds_bucket", []string{"le", "0.1"}, 3},
		{"shadowtap_verdict_latency_seconds_bucket", []string{"le", "+Inf", "side", "shadow"}, 6},
		{"shadowtap_verdict_latency_seconds_sum", nil, 7.5},
		{"shadowtap_verdict_latency_seconds_count", []string{"side", "shadow"}, 6},
	} {
		if got := m.Get(t, c.name, c.match...); got != c.want {
			t.Errorf("Get(%s, %v) = %v, want %v", c.name, c.match, got, c.want)
		}
	}
}
