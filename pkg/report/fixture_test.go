package report

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const shadowTarget = "http://10.83.0.2:8080"

var t0 = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// fixRoute is a route of the fixture: n exchanges, kinds' counts (differing
// is the largest), production latencies spread around prod, the shadow's
// around shadow.
func fixRoute(route string, n uint64, kinds map[verdict.Kind]uint64, prod, shadow time.Duration) verdict.Route {
	r := verdict.Route{Target: shadowTarget, Route: route, Exchanges: n, Kinds: map[verdict.Kind]uint64{}, Noise: map[verdict.Kind]uint64{},
		NoiseFields: []verdict.NoiseField{}, Latency: verdict.RouteLatency{Production: verdict.NewHistogram(), Shadow: verdict.NewHistogram()}}
	for k, c := range kinds {
		r.Kinds[k] = c
		r.Differing = max(r.Differing, c)
	}
	for i := uint64(0); i < n; i++ {
		f := 0.5 + float64(i%20)/10 // 0.5x .. 2.4x
		r.Latency.Production.Observe(time.Duration(float64(prod) * f))
		r.Latency.Shadow.Observe(time.Duration(float64(shadow) * f))
	}
	return r
}

// fixtureDoc is a migration's document: the cookie incident on /login, a
// route answering 500, a slower search, a changed JSON field, noise learned
// from a baseline, and routes that agree.
func fixtureDoc() *verdict.Document {
	ms := time.Millisecond
	items := fixRoute("GET /api/items/{id}", 1200, map[verdict.Kind]uint64{verdict.KindBody: 24}, 6*ms, 7*ms)
	items.Noise = map[verdict.Kind]uint64{verdict.KindBody: 310, verdict.KindHeader: 1200}
	items.NoiseFields = []verdict.NoiseField{
		{Kind: verdict.KindHeader, Field: "X-Build-Id", Count: 1200, Source: "baseline"},
		{Kind: verdict.KindBody, Field: "$.generated_at", Count: 300, Source: "baseline"},
		{Kind: verdict.KindBody, Field: "$.items[0].stock", Count: 10, Source: "baseline-exchange"},
	}
	d := &verdict.Document{Schema: verdict.SchemaVersion, Generated: t0.Add(10*time.Minute + 12*time.Second), Started: t0, Receivers: 2,
		Routes: []verdict.Route{
			fixRoute("GET /login", 400, map[verdict.Kind]uint64{verdict.KindCookie: 400}, 3*ms, 3*ms),
			fixRoute("GET /api/cart", 300, map[verdict.Kind]uint64{verdict.KindStatus: 300, verdict.KindBody: 300, verdict.KindHeader: 300}, 4*ms, 2*ms),
			fixRoute("GET /search", 500, nil, 30*ms, 120*ms),
			items,
			fixRoute("GET /static/{file}", 2000, nil, 1*ms, 1*ms),
			fixRoute("GET /products/{id}", 1500, map[verdict.Kind]uint64{verdict.KindHeader: 3}, 5*ms, 5*ms),
			fixRoute("GET /very/long/path/{id}/with/many/segments/{uuid}", 50, map[verdict.Kind]uint64{verdict.KindHeader: 2}, 8*ms, 9*ms),
		},
		Ignored: verdict.Ignored{Headers: verdict.DefaultIgnoredHeaders(), JSONPaths: []string{"GET /api/items/{id}=$.request_id"}, Baseline: "http://10.83.0.3:8080"},
	}
	d.Totals = verdict.Totals{Kinds: map[verdict.Kind]uint64{}, Noise: map[verdict.Kind]uint64{}, Uncompared: map[string]uint64{"gap": 12, "busy": 3}}
	for _, r := range d.Routes {
		d.Totals.Exchanges += r.Exchanges
		d.Totals.Differing += r.Differing
		for k, n := range r.Kinds {
			d.Totals.Kinds[k] += n
		}
		for k, n := range r.Noise {
			d.Totals.Noise[k] += n
		}
	}
	for m := 0; m < 10; m++ {
		min := verdict.Minute{Start: t0.Add(time.Duration(m) * time.Minute), Exchanges: 590 + uint64(m*3), Differing: 70 + uint64(m%3), Kinds: map[verdict.Kind]uint64{
			verdict.KindCookie: 40, verdict.KindStatus: 30, verdict.KindBody: 32 + uint64(m%3)}}
		d.Timeline = append(d.Timeline, min)
	}
	out, err := verdict.Merge(d) // sorted, quantiles filled
	if err != nil {
		panic(err)
	}
	out.Receivers = 2
	return out
}

// fixtureCriteria: a pipeline's gate for the fixture.
func fixtureCriteria() gate.Criteria {
	c := gate.DefaultCriteria()
	c.MaxKind[verdict.KindCookie] = 0
	c.MaxKind[verdict.KindStatus] = 0.5
	c.MaxLatencyRatio = 1.5
	return c
}

func fixtureExamples(t *testing.T) *Examples {
	t.Helper()
	ex, err := ReadDiffLogs([]string{filepath.Join("testdata", "difflog.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/report -run %s -update to create it)", err, t.Name())
	}
	if string(got) != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it after a deliberate change)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func mustRE(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// regexpLine says whether a line of s matches pattern.
func regexpLine(s, pattern string) bool {
	return regexp.MustCompile("(?m)" + pattern).MatchString(s)
}
