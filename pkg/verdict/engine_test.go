package verdict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the fixed clock of the test engines.
var testNow = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

func newTestEngine(t testing.TB, mod func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.now = func() time.Time { return testNow }
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func mkResp(status int, latency time.Duration) *Response {
	return &Response{Status: status, Header: http.Header{}, BodyComplete: true, Latency: latency}
}

// ex builds an exchange: production's response and the answers.
func ex(method, path string, prod *Response, answers ...Answer) *Exchange {
	return &Exchange{Time: testNow, Method: method, Path: path, Host: "example.com", Production: prod, Answers: answers}
}

func shadow(r *Response) Answer   { return Answer{Target: "shadow", Response: r} }
func baseline(r *Response) Answer { return Answer{Target: "baseline", Baseline: true, Response: r} }

// run processes the exchanges synchronously (Close compares what is queued
// when Run was never started) and returns the document.
func run(t *testing.T, e *Engine, xs ...*Exchange) *Document {
	t.Helper()
	for _, x := range xs {
		e.Submit(x)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e.Document()
}

func findRoute(d *Document, target, route string) *Route {
	for i := range d.Routes {
		if d.Routes[i].Target == target && d.Routes[i].Route == route {
			return &d.Routes[i]
		}
	}
	return nil
}

func TestNewRejects(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"negative max routes":  func(c *Config) { c.MaxRoutes = -1 },
		"negative queue":       func(c *Config) { c.Queue = -1 },
		"bad route template":   func(c *Config) { c.Routes = []string{"users/{id}"} },
		"bad json path":        func(c *Config) { c.IgnoreJSONPaths = []string{"items.price"} },
		"bad route json path":  func(c *Config) { c.IgnoreJSONPaths = []string{"GET users=$.a"} },
		"empty ignore header":  func(c *Config) { c.IgnoreHeaders = []string{" "} },
		"diff log in nowhere":  func(c *Config) { c.DiffLog = "/nonexistent-dir/x/diff.jsonl" },
		"negative diff log sz": func(c *Config) { c.DiffLogMaxBytes = -5 },
	} {
		cfg := DefaultConfig()
		mod(&cfg)
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestCompareOptionsPerRoute(t *testing.T) {
	e := newTestEngine(t, func(c *Config) {
		c.IgnoreHeaders = []string{"x-build-id"}
		c.IgnoreJSONPaths = []string{"$.now", "GET /users/{id}=$.last_seen", "/orders/{id}=$.eta", "get /a=$.b"}
	})
	tests := []struct {
		route string
		want  []string
	}{
		{"GET /users/{id}", []string{"$.now", "$.last_seen"}},
		{"POST /users/{id}", []string{"$.now"}},
		{"GET /orders/{id}", []string{"$.now", "$.eta"}},
		{"DELETE /orders/{id}", []string{"$.now", "$.eta"}},
		{"GET /a", []string{"$.now", "$.b"}},
		{"GET /other", []string{"$.now"}},
	}
	for _, tc := range tests {
		o := e.options(tc.route, &Exchange{Method: "GET", Host: "h"})
		if !reflect.DeepEqual(o.IgnoreJSONPaths, tc.want) {
			t.Errorf("%s: paths %q, want %q", tc.route, o.IgnoreJSONPaths, tc.want)
		}
		if !o.IgnoreHeaders["X-Build-Id"] || !o.IgnoreHeaders["Etag"] || !o.IgnoreHeaders["Set-Cookie"] {
			t.Errorf("%s: ignored headers %v lack the canonical flag or default names", tc.route, o.IgnoreHeaders)
		}
		if o.MaxPaths != 20 || o.Host != "h" {
			t.Errorf("%s: options %+v", tc.route, o)
		}
	}
}

// Every exchange handed over ends, per shadow target, in exactly one of
// compared or uncompared by reason.
func TestAccountingSums(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.Queue = 8 })
	ok := mkResp(200, time.Millisecond)
	answers := func() []Answer {
		return []Answer{
			{Target: "a", Response: mkResp(200, time.Millisecond)},
			{Target: "b", Response: mkResp(500, time.Millisecond)},
			{Target: "base", Baseline: true, Response: mkResp(200, time.Millisecond)},
		}
	}
	submitted := 0
	submit := func(x *Exchange) { submitted++; e.Submit(x) }
	// 8 fit in the queue (no Run yet), 4 more are "busy".
	for i := 0; i < 12; i++ {
		submit(&Exchange{Method: "GET", Path: "/p", Production: ok, Answers: answers()})
	}
	e.Uncompared("a", "budget") // replay could not hand one over
	e.Uncompared("b", "budget")
	submitted++
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	waitFor(t, func() bool { c, _ := e.Totals(); return c == 16 }) // the 8 queued, for a and b
	// Production missing, with and without a reason.
	submit(&Exchange{Method: "GET", Path: "/p", ProductionMissing: "gap", Answers: answers()})
	submit(&Exchange{Method: "GET", Path: "/p", Answers: answers()})
	// Stopped answers, shadow errors.
	xs := answers()
	xs[0] = Answer{Target: "a", Error: "stopped"}
	xs[1] = Answer{Target: "b", Error: "timeout"}
	submit(&Exchange{Method: "GET", Path: "/p", Production: ok, Answers: xs})
	xs = answers()
	xs[0] = Answer{Target: "a", Error: "drain"}
	xs[2] = Answer{Target: "base", Baseline: true, Error: "timeout"}
	submit(&Exchange{Method: "GET", Path: "/q", Production: ok, Answers: xs})
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cancel()
	submit(&Exchange{Method: "GET", Path: "/p", Production: ok, Answers: answers()}) // after Close

	d := e.Document()
	for _, target := range []string{"a", "b"} {
		var compared, uncompared uint64
		for _, r := range d.Routes {
			if r.Target == target {
				compared += r.Exchanges
			}
		}
		reasons := map[string]uint64{}
		for reason, n := range e.targets[target].uncompared {
			uncompared += n
			reasons[reason] = n
		}
		if compared+uncompared != uint64(submitted) {
			t.Errorf("target %s: compared %d + uncompared %d (%v) != %d handed over", target, compared, uncompared, reasons, submitted)
		}
	}
	wantReasons := map[string]map[string]uint64{
		"a": {"busy": 4, "budget": 1, "gap": 1, "no_production": 1, "stopped": 3}, // 2 answers stopped, 1 after Close
		"b": {"busy": 4, "budget": 1, "gap": 1, "no_production": 1, "stopped": 1},
	}
	for target, want := range wantReasons {
		if got := e.targets[target].uncompared; !reflect.DeepEqual(got, want) {
			t.Errorf("target %s: uncompared %v, want %v", target, got, want)
		}
	}
	if _, ok := e.targets["base"]; ok && len(e.targets["base"].uncompared) > 0 {
		t.Errorf("the baseline is counted uncompared: %v", e.targets["base"].uncompared)
	}
	for _, r := range d.Routes {
		if r.Target == "base" {
			t.Errorf("the baseline has a route entry: %+v", r)
		}
	}
	// b: the timeout answer is compared, a shadow_error difference.
	rb := findRoute(d, "b", "GET /p")
	if rb == nil || rb.Kinds[KindShadowError] != 1 {
		t.Fatalf("target b GET /p: %+v, want one shadow_error", rb)
	}
	c, diff := e.Totals()
	if c != d.Totals.Exchanges || diff != d.Totals.Differing || c == 0 {
		t.Errorf("Totals() = %d, %d; document %d, %d", c, diff, d.Totals.Exchanges, d.Totals.Differing)
	}
	var sum uint64
	for _, n := range d.Totals.Uncompared {
		sum += n
	}
	if sum != uint64(2*submitted)-d.Totals.Exchanges {
		t.Errorf("document: uncompared %d + compared %d != 2 targets x %d", sum, d.Totals.Exchanges, submitted)
	}
}

func TestShadowError(t *testing.T) {
	e := newTestEngine(t, nil)
	d := run(t, e,
		ex("GET", "/a/1", mkResp(200, time.Millisecond), Answer{Target: "shadow", Error: "timeout"}),
		ex("GET", "/a/2", mkResp(200, time.Millisecond), Answer{Target: "shadow"}),
	)
	r := findRoute(d, "shadow", "GET /a/{id}")
	if r == nil {
		t.Fatalf("no route GET /a/{id}: %+v", d.Routes)
	}
	if r.Exchanges != 2 || r.Differing != 2 || r.Kinds[KindShadowError] != 2 || len(r.Kinds) != 1 {
		t.Errorf("route %+v: want 2 exchanges, 2 differing, shadow_error 2 only", r)
	}
	if r.Latency.Production.Count != 2 || r.Latency.Shadow.Count != 0 {
		t.Errorf("latency counts production %d shadow %d, want 2 and 0 (no answer, no latency)",
			r.Latency.Production.Count, r.Latency.Shadow.Count)
	}
}

// Baseline learning, with the differences the comparison gives now (status).
// step is one exchange of TestBaselineNoise: statuses of production, the
// baseline (0: it did not answer) and the shadow.
type step struct {
	path             string
	prod, base, shad int
}

// repeatStep repeats s n times.
func repeatStep(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestBaselineNoise(t *testing.T) {
	tests := []struct {
		name      string
		steps     []step
		route     string
		differing uint64
		noise     uint64
		sources   []string // NoiseFields sources with a count, most counted first
	}{
		{
			name:  "baseline differs on the same exchange: exchange noise",
			steps: []step{{"/r/1", 200, 503, 503}},
			route: "GET /r/{id}", differing: 0, noise: 1, sources: []string{NoiseBaselineExchange},
		},
		{
			name:  "the shadow alone differs: a difference",
			steps: []step{{"/r/1", 200, 200, 503}},
			route: "GET /r/{id}", differing: 1, noise: 0,
		},
		{
			name:  "learned on the route, then ignored when the baseline agrees",
			steps: append(repeatStep(3, step{"/r/1", 200, 503, 200}), step{"/r/2", 200, 200, 404}),
			route: "GET /r/{id}", differing: 0, noise: 1, sources: []string{NoiseBaseline},
		},
		{
			name:  "route noise applies when the baseline did not answer",
			steps: append(repeatStep(3, step{"/r/1", 200, 500, 200}), step{"/r/2", 200, 0, 500}),
			route: "GET /r/{id}", differing: 0, noise: 1, sources: []string{NoiseBaseline},
		},
		{
			name:  "learned on another route: still a difference here",
			steps: append(repeatStep(3, step{"/other/1", 200, 500, 200}), step{"/r/2", 200, 200, 500}),
			route: "GET /r/{id}", differing: 1, noise: 0,
		},
		{
			name:  "a baseline that failed once is not route noise",
			steps: []step{{"/r/1", 200, 500, 200}, {"/r/1", 200, 500, 200}, {"/r/2", 200, 200, 503}},
			route: "GET /r/{id}", differing: 1, noise: 0,
		},
		{
			name: "a burst of baseline differences stops being noise as the route grows",
			steps: append(append(repeatStep(3, step{"/r/1", 200, 503, 200}), repeatStep(60, step{"/r/3", 200, 200, 200})...),
				step{"/r/2", 200, 200, 503}),
			route: "GET /r/{id}", differing: 1, noise: 0,
		},
		{
			name:  "no baseline answer and nothing learned: a difference",
			steps: []step{{"/r/2", 200, 0, 500}},
			route: "GET /r/{id}", differing: 1, noise: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, func(c *Config) { c.Baseline = "baseline" })
			var xs []*Exchange
			for _, s := range tc.steps {
				b := Answer{Target: "baseline", Error: "timeout"} // named by Config.Baseline
				if s.base != 0 {
					b.Response = mkResp(s.base, time.Millisecond)
				}
				xs = append(xs, ex("GET", s.path, mkResp(s.prod, time.Millisecond), b, shadow(mkResp(s.shad, time.Millisecond))))
			}
			d := run(t, e, xs...)
			r := findRoute(d, "shadow", tc.route)
			if r == nil {
				t.Fatalf("no route %s: %+v", tc.route, d.Routes)
			}
			if r.Differing != tc.differing || r.Kinds[KindStatus] != tc.differing {
				t.Errorf("differing %d (kinds %v), want %d", r.Differing, r.Kinds, tc.differing)
			}
			if r.Noise[KindStatus] != tc.noise || d.Totals.Noise[KindStatus] < tc.noise {
				t.Errorf("noise %v (totals %v), want status %d", r.Noise, d.Totals.Noise, tc.noise)
			}
			var sources []string
			for _, f := range r.NoiseFields {
				if f.Count > 0 {
					sources = append(sources, f.Source)
					if f.Kind != KindStatus || f.Field != "status" {
						t.Errorf("noise field %+v, want kind status field status", f)
					}
				}
			}
			if !reflect.DeepEqual(sources, tc.sources) {
				t.Errorf("noise field sources %v, want %v (fields %+v)", sources, tc.sources, r.NoiseFields)
			}
			for _, rr := range d.Routes {
				if rr.Target == "baseline" {
					t.Errorf("the baseline has a route entry: %+v", rr)
				}
			}
		})
	}
}

func TestTimelineBounded(t *testing.T) {
	e := newTestEngine(t, nil)
	var xs []*Exchange
	for i := 0; i < timelineMinutes+30; i++ {
		x := ex("GET", "/t", mkResp(200, 0), shadow(mkResp(200+i%2*300, 0)))
		x.Time = testNow.Add(time.Duration(i) * time.Minute)
		xs = append(xs, x)
	}
	old := ex("GET", "/t", mkResp(200, 0), shadow(mkResp(200, 0)))
	old.Time = testNow.Add(-time.Hour) // older than the timeline keeps at the end
	xs = append(xs, old)
	d := run(t, e, xs...)
	if len(d.Timeline) != timelineMinutes {
		t.Fatalf("timeline of %d minutes, want %d", len(d.Timeline), timelineMinutes)
	}
	first := testNow.Add(30 * time.Minute)
	if !d.Timeline[0].Start.Equal(first) || !d.Timeline[len(d.Timeline)-1].Start.Equal(testNow.Add(time.Duration(timelineMinutes+29)*time.Minute)) {
		t.Errorf("timeline from %v to %v, want the last %d minutes from %v", d.Timeline[0].Start, d.Timeline[len(d.Timeline)-1].Start, timelineMinutes, first)
	}
	for i, m := range d.Timeline {
		if i > 0 && !m.Start.After(d.Timeline[i-1].Start) {
			t.Fatalf("timeline not in order at %d", i)
		}
		wantDiff := uint64((30 + i) % 2)
		if m.Exchanges != 1 || m.Differing != wantDiff || m.Kinds[KindStatus] != wantDiff {
			t.Errorf("minute %v: %+v, want 1 exchange, %d differing", m.Start, m, wantDiff)
		}
	}
	if d.Totals.Exchanges != timelineMinutes+31 {
		t.Errorf("totals count %d exchanges, want all %d (the timeline is bounded, not the totals)", d.Totals.Exchanges, timelineMinutes+31)
	}
}

func TestTimelineOutOfOrder(t *testing.T) {
	e := newTestEngine(t, nil)
	var xs []*Exchange
	for _, m := range []int{5, 2, 5, 9, 2, 0} {
		x := ex("GET", "/t", mkResp(200, 0), shadow(mkResp(200, 0)))
		x.Time = testNow.Add(time.Duration(m)*time.Minute + 13*time.Second)
		xs = append(xs, x)
	}
	d := run(t, e, xs...)
	var got []string
	for _, m := range d.Timeline {
		got = append(got, m.Start.Sub(testNow).String()+"="+string(rune('0'+m.Exchanges)))
	}
	want := []string{"0s=1", "2m0s=2", "5m0s=2", "9m0s=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
}

// The document's JSON has exactly the field names document.go declares,
// and decodes back to the same document.
func TestDocumentJSONRoundTrip(t *testing.T) {
	e := newTestEngine(t, func(c *Config) {
		c.Baseline = "baseline"
		c.IgnoreJSONPaths = []string{"$.now"}
	})
	d := run(t, e,
		ex("GET", "/users/1", mkResp(200, 3*time.Millisecond), baseline(mkResp(500, time.Millisecond)), shadow(mkResp(500, 40*time.Millisecond))),
		ex("GET", "/users/1", mkResp(200, 3*time.Millisecond), baseline(mkResp(500, time.Millisecond)), shadow(mkResp(500, 40*time.Millisecond))),
		ex("GET", "/users/1", mkResp(200, 3*time.Millisecond), baseline(mkResp(500, time.Millisecond)), shadow(mkResp(500, 40*time.Millisecond))),
		ex("GET", "/users/2", mkResp(200, 3*time.Millisecond), baseline(mkResp(200, time.Millisecond)), shadow(mkResp(404, 40*time.Millisecond))),
		ex("GET", "/items", mkResp(200, 3*time.Millisecond), baseline(mkResp(200, time.Millisecond)), Answer{Target: "shadow", Error: "reset"}),
	)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Document
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalizeTimes(*d), normalizeTimes(back)) {
		t.Errorf("round trip changed the document:\n%+v\n%+v", *d, back)
	}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	keys := func(v any) []string {
		m, _ := v.(map[string]any)
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	check := func(what string, v any, want ...string) {
		t.Helper()
		sort.Strings(want)
		if got := keys(v); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fields %v, want %v", what, got, want)
		}
	}
	check("document", raw, "schema", "generated", "started", "receivers", "totals", "routes", "timeline", "ignored")
	check("totals", raw["totals"], "exchanges", "differing", "kinds", "noise", "uncompared")
	check("ignored", raw["ignored"], "headers", "json_paths", "baseline")
	routes := raw["routes"].([]any)
	if len(routes) != 2 {
		t.Fatalf("%d routes, want 2 (GET /items, GET /users/{id}): %s", len(routes), b)
	}
	check("route", routes[1], "target", "route", "exchanges", "differing", "kinds", "noise", "noise_fields", "latency")
	route := routes[1].(map[string]any)
	check("latency", route["latency"], "production", "shadow")
	check("histogram", route["latency"].(map[string]any)["shadow"], "bounds", "counts", "count", "sum", "p50", "p90", "p99")
	check("noise field", route["noise_fields"].([]any)[0], "kind", "field", "count", "source")
	check("minute", raw["timeline"].([]any)[0], "start", "exchanges", "differing", "kinds")
	if d.Schema != SchemaVersion || d.Receivers != 1 || d.Ignored.Baseline != "baseline" || d.Ignored.JSONPaths[0] != "$.now" {
		t.Errorf("document header %+v", d)
	}
	if d.Routes[0].Route != "GET /items" || d.Routes[1].Route != "GET /users/{id}" {
		t.Errorf("routes not sorted: %s, %s", d.Routes[0].Route, d.Routes[1].Route)
	}
	// /users/1 three times: the baseline differs as the shadow does
	// (exchange noise); /users/2: status is noise learned on the route.
	u := d.Routes[1]
	if u.Differing != 0 || u.Noise[KindStatus] != 4 || len(u.NoiseFields) != 2 || u.Latency.Shadow.Count != 4 {
		t.Errorf("GET /users/{id}: %+v", u)
	}
	if p := u.Latency.Shadow.P50; p < 0.02 || p > 0.05 {
		t.Errorf("shadow p50 %g s, want within the 20-50 ms bucket", p)
	}
}

func normalizeTimes(d Document) Document {
	d.Generated = d.Generated.UTC()
	d.Started = d.Started.UTC()
	for i := range d.Timeline {
		d.Timeline[i].Start = d.Timeline[i].Start.UTC()
	}
	return d
}

func TestHandler(t *testing.T) {
	e := newTestEngine(t, nil)
	run(t, e, ex("GET", "/a", mkResp(200, 0), shadow(mkResp(500, 0))))
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	res, err := http.Get(srv.URL + "/verdict")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var d Document
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("GET: %v: %s", err, body)
	}
	if d.Totals.Differing != 1 || len(d.Routes) != 1 {
		t.Errorf("GET: %+v", d)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL+"/verdict", strings.NewReader("x"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") == "" {
			t.Errorf("%s: %d, Allow %q; want 405 with Allow", m, res.StatusCode, res.Header.Get("Allow"))
		}
	}
}

func TestWriteFile(t *testing.T) {
	e := newTestEngine(t, nil)
	run(t, e, ex("GET", "/a", mkResp(200, 0), shadow(mkResp(200, 0))))
	dir := t.TempDir()
	path := filepath.Join(dir, "verdict.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	var d Document
	if err := json.Unmarshal(b, &d); err != nil || d.Totals.Exchanges != 1 {
		t.Errorf("file: %v, %+v", err, d.Totals)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := e.WriteFile(filepath.Join(dir, "missing", "v.json")); err == nil {
		t.Error("WriteFile into a missing directory: no error")
	}
}

// Run, Submit from several goroutines, and the document, metrics and
// totals read all at once: race-clean (go test -race), and every exchange
// accounted for.
func TestConcurrent(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.Queue = 64; c.DiffLog = filepath.Join(t.TempDir(), "d.jsonl") })
	ctx := context.Background()
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(ctx) }()
	// Close before Run has started is a different case (Run then refuses):
	// this test is about Run draining while Submits and reads go on.
	waitFor(t, func() bool { e.runMu.Lock(); defer e.runMu.Unlock(); return e.running })
	const workers, each = 4, 500
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e.Submit(ex("GET", "/w/"+string(rune('a'+w))+"/"+string(rune('0'+i%10)), mkResp(200, time.Millisecond),
					shadow(mkResp(200+i%2*300, time.Millisecond))))
			}
		}(w)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.Document()
			gatherCount(t, e)
			e.Totals()
		}
	}()
	wg.Wait()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	readers.Wait()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	d := e.Document()
	total := d.Totals.Exchanges
	for _, n := range d.Totals.Uncompared {
		total += n
	}
	if total != workers*each {
		t.Errorf("compared %d + uncompared %v != %d", d.Totals.Exchanges, d.Totals.Uncompared, workers*each)
	}
	if err := e.Run(ctx); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("second Run: %v, want an error that is not ErrClosed", err)
	}
}

// Close before Run (a daemon whose intake ends at once): Close compares
// the queue itself and a late Run returns ErrClosed, which callers ignore.
func TestCloseBeforeRun(t *testing.T) {
	e := newTestEngine(t, nil)
	e.Submit(ex("GET", "/a", mkResp(200, 0), shadow(mkResp(500, 0))))
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, d := e.Totals(); c != 1 || d != 1 {
		t.Errorf("compared %d differing %d, want 1 and 1", c, d)
	}
	if err := e.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

// full builds a response with headers ("Name: value" lines) and a JSON body.
func full(status int, body string, hdr ...string) *Response {
	r := &Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(body), BodyLen: int64(len(body)), BodyComplete: true, Latency: time.Millisecond}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Add(k, v)
	}
	return r
}

// Baseline learning for every kind the comparison gives: a field that
// differs between production and the baseline is noise; the same field
// differing only on the shadow is a difference.
func TestBaselineNoiseKinds(t *testing.T) {
	type trio struct{ prod, base, shad *Response }
	tests := []struct {
		name      string
		exchanges []trio
		kinds     map[Kind]uint64 // on the last exchange's route, after noise
		noise     map[Kind]uint64
		fields    []string // noise fields with a count: "source kind field"
	}{
		{
			name: "a header that varies on the baseline is noise",
			exchanges: []trio{{
				full(200, `{}`, "X-Served-By: a"), full(200, `{}`, "X-Served-By: b"), full(200, `{}`, "X-Served-By: c")}},
			kinds: map[Kind]uint64{}, noise: map[Kind]uint64{KindHeader: 1},
			fields: []string{"baseline-exchange header X-Served-By"},
		},
		{
			name: "a header dropped by the shadow alone is a difference",
			exchanges: []trio{{
				full(200, `{}`, "Cache-Control: no-store"), full(200, `{}`, "Cache-Control: no-store"), full(200, `{}`)}},
			kinds: map[Kind]uint64{KindHeader: 1}, noise: map[Kind]uint64{},
		},
		{
			name: "a cookie scope the baseline also changes is noise",
			exchanges: []trio{{
				full(200, `{}`, "Set-Cookie: sid=1; Domain=.example.com; Path=/"),
				full(200, `{}`, "Set-Cookie: sid=2; Path=/"),
				full(200, `{}`, "Set-Cookie: sid=3; Path=/")}},
			kinds: map[Kind]uint64{}, noise: map[Kind]uint64{KindCookie: 1},
			fields: []string{"baseline-exchange cookie sid; Domain"},
		},
		{
			name: "the cookie incident: the shadow alone drops Domain",
			exchanges: []trio{{
				full(200, `{}`, "Set-Cookie: sid=1; Domain=.example.com; Path=/"),
				full(200, `{}`, "Set-Cookie: sid=2; Domain=.example.com; Path=/"),
				full(200, `{}`, "Set-Cookie: sid=3; Path=/")}},
			kinds: map[Kind]uint64{KindCookie: 1}, noise: map[Kind]uint64{},
		},
		{
			name: "a JSON field learned at one index is noise at another",
			exchanges: []trio{
				{full(200, `{"items":[{"stock":3}]}`), full(200, `{"items":[{"stock":2}]}`), full(200, `{"items":[{"stock":3}]}`)},
				{full(200, `{"items":[{"stock":3}]}`), full(200, `{"items":[{"stock":2}]}`), full(200, `{"items":[{"stock":3}]}`)},
				{full(200, `{"items":[{"stock":3}]}`), full(200, `{"items":[{"stock":2}]}`), full(200, `{"items":[{"stock":3}]}`)},
				{full(200, `{"items":[{"stock":1},{"stock":5}]}`), full(200, `{"items":[{"stock":1},{"stock":5}]}`), full(200, `{"items":[{"stock":1},{"stock":4}]}`)},
			},
			kinds: map[Kind]uint64{}, noise: map[Kind]uint64{KindBody: 1},
			fields: []string{"baseline body $['items'][*]['stock']"},
		},
		{
			name: "replica lag on one field, a real change on another",
			exchanges: []trio{{
				full(200, `{"seen":5,"price":10}`), full(200, `{"seen":4,"price":10}`), full(200, `{"seen":4,"price":12}`)}},
			kinds: map[Kind]uint64{KindBody: 1}, noise: map[Kind]uint64{KindBody: 1},
			fields: []string{"baseline-exchange body $['seen']"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, nil)
			var xs []*Exchange
			for i, tr := range tc.exchanges {
				xs = append(xs, ex("GET", fmt.Sprintf("/p/%d", i), tr.prod, baseline(tr.base), shadow(tr.shad)))
			}
			d := run(t, e, xs...)
			r := findRoute(d, "shadow", "GET /p/{id}")
			if r == nil {
				t.Fatalf("no route: %+v", d.Routes)
			}
			if !reflect.DeepEqual(r.Kinds, tc.kinds) || !reflect.DeepEqual(r.Noise, tc.noise) {
				t.Errorf("kinds %v noise %v, want %v and %v", r.Kinds, r.Noise, tc.kinds, tc.noise)
			}
			var fields []string
			for _, f := range r.NoiseFields {
				if f.Count > 0 {
					fields = append(fields, f.Source+" "+string(f.Kind)+" "+f.Field)
				}
			}
			if !reflect.DeepEqual(fields, tc.fields) {
				t.Errorf("noise fields %q, want %q", fields, tc.fields)
			}
		})
	}
}

// A body that cannot be verified still has its status, headers and
// cookies compared, and is counted.
func TestBodyUnverified(t *testing.T) {
	e := newTestEngine(t, nil)
	p := full(200, "xxxx", "Content-Encoding: x-unknown", "Cache-Control: no-store")
	s := full(200, "yyyy", "Content-Encoding: x-unknown")
	d := run(t, e, ex("GET", "/u", p, shadow(s)))
	r := findRoute(d, "shadow", "GET /u")
	if r == nil || r.Exchanges != 1 || r.Kinds[KindHeader] != 1 || r.Kinds[KindBody] != 0 {
		t.Fatalf("route %+v: want compared, a header difference, no body one", r)
	}
	if v, _ := value(gather(t, e), MetricBodyUnverified, map[string]string{"target": "shadow"}); v != 1 {
		t.Errorf("%s = %g, want 1", MetricBodyUnverified, v)
	}
}

// BenchmarkProcess is the engine's cost per exchange with one shadow and a
// baseline: routing, two comparisons of a small JSON answer, noise and
// counting (the diff log off).
func BenchmarkProcess(b *testing.B) {
	e := newTestEngine(b, nil)
	body := `{"id":42,"name":"a","items":[{"id":1,"price":10},{"id":2,"price":20}],"total":30}`
	prod := full(200, body, "Cache-Control: no-store", "Set-Cookie: sid=1; Path=/; HttpOnly")
	base := full(200, body, "Cache-Control: no-store", "Set-Cookie: sid=2; Path=/; HttpOnly")
	shad := full(200, strings.Replace(body, "30", "31", 1), "Set-Cookie: sid=3; Path=/; HttpOnly")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.process(ex("GET", fmt.Sprintf("/users/%d/items", i%1000), prod, baseline(base), shadow(shad)))
	}
}
