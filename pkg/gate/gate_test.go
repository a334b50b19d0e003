package gate

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// rt builds a route: n exchanges, the differing ones and their kinds, and
// latencies: every production answer takes prod, every shadow answer shadow.
func rt(route string, n, differing uint64, kinds map[verdict.Kind]uint64, prod, shadow time.Duration) verdict.Route {
	r := verdict.Route{Target: "http://shadow:8080", Route: route, Exchanges: n, Differing: differing, Kinds: kinds,
		Latency: verdict.RouteLatency{Production: verdict.NewHistogram(), Shadow: verdict.NewHistogram()}}
	if r.Kinds == nil {
		r.Kinds = map[verdict.Kind]uint64{}
	}
	for i := uint64(0); i < n; i++ {
		r.Latency.Production.Observe(prod)
		r.Latency.Shadow.Observe(shadow)
	}
	return r
}

func doc(routes ...verdict.Route) *verdict.Document {
	d := &verdict.Document{Schema: verdict.SchemaVersion, Receivers: 1, Routes: routes}
	for _, r := range routes {
		d.Totals.Exchanges += r.Exchanges
		d.Totals.Differing += r.Differing
	}
	return d
}

const ms = time.Millisecond

func TestJudge(t *testing.T) {
	type crit func(*Criteria)
	maxKind := func(k verdict.Kind, v float64) crit { return func(c *Criteria) { c.MaxKind[k] = v } }
	tests := []struct {
		name     string
		doc      *verdict.Document
		criteria []crit
		want     Outcome
		failures []string // "criterion kind route" of every failure, in order; route "" = all routes
		inMsg    []string // each failure message contains these, in order of failures
	}{
		{name: "pass under the default rate",
			doc:  doc(rt("GET /a", 1500, 5, map[verdict.Kind]uint64{verdict.KindBody: 5}, 2*ms, 2*ms), rt("GET /b", 500, 4, nil, 2*ms, 2*ms)),
			want: Pass},
		{name: "rate equal to the threshold passes",
			doc:  doc(rt("GET /a", 2000, 20, nil, 2*ms, 2*ms)),
			want: Pass},
		{name: "differing share above the default 1% over all routes",
			doc:      doc(rt("GET /a", 1000, 5, nil, 2*ms, 2*ms), rt("GET /b", 1000, 40, nil, 2*ms, 2*ms)),
			want:     Fail,
			failures: []string{"max-diff-rate  ", "max-diff-rate  GET /b"},
			inMsg:    []string{"all routes: differing 2.25% (45 of 2000 exchanges), threshold 1%; most on GET /b 40, GET /a 5", "route GET /b: differing 4.00% (40 of 1000 exchanges), threshold 1%"}},
		{name: "one route above the rate while the total is below",
			doc:      doc(rt("GET /a", 2000, 0, nil, 2*ms, 2*ms), rt("GET /b", 200, 10, nil, 2*ms, 2*ms)),
			want:     Fail,
			failures: []string{"max-diff-rate  GET /b"},
			inMsg:    []string{"route GET /b: differing 5.00% (10 of 200 exchanges), threshold 1%"}},
		{name: "a route below --min-route-exchanges is not judged alone",
			doc:  doc(rt("GET /a", 2000, 0, nil, 2*ms, 2*ms), rt("GET /b", 99, 10, nil, 2*ms, 2*ms)),
			want: Pass},
		{name: "--max-diff-rate raised",
			doc:      doc(rt("GET /a", 1000, 30, nil, 2*ms, 2*ms)),
			criteria: []crit{func(c *Criteria) { c.MaxDiffRate = 5 }},
			want:     Pass},
		{name: "--max cookie=0: one cookie difference on a small route fails",
			doc: doc(rt("GET /a", 2000, 0, nil, 2*ms, 2*ms),
				rt("POST /logout", 3, 1, map[verdict.Kind]uint64{verdict.KindCookie: 1}, 2*ms, 2*ms)),
			criteria: []crit{maxKind(verdict.KindCookie, 0)},
			want:     Fail,
			failures: []string{"max cookie "},
			inMsg:    []string{"max cookie: all routes: differing by cookie 0.05% (1 of 2003 exchanges), threshold 0%; most on POST /logout 1"}},
		{name: "--max status=0.5 passes at 0.4%",
			doc:      doc(rt("GET /a", 1000, 4, map[verdict.Kind]uint64{verdict.KindStatus: 4}, 2*ms, 2*ms)),
			criteria: []crit{maxKind(verdict.KindStatus, 0.5)},
			want:     Pass},
		{name: "--max status=0.5 fails at 0.6%, on the total and the route",
			doc:      doc(rt("GET /a", 1000, 6, map[verdict.Kind]uint64{verdict.KindStatus: 6}, 2*ms, 2*ms)),
			criteria: []crit{maxKind(verdict.KindStatus, 0.5)},
			want:     Fail,
			failures: []string{"max status ", "max status GET /a"},
			inMsg:    []string{"differing by status 0.60% (6 of 1000 exchanges), threshold 0.5%", "route GET /a: differing by status 0.60%"}},
		{name: "every kind has its own threshold",
			doc: doc(rt("GET /a", 1000, 9, map[verdict.Kind]uint64{verdict.KindHeader: 3, verdict.KindBody: 3, verdict.KindShadowError: 3}, 2*ms, 2*ms)),
			criteria: []crit{maxKind(verdict.KindHeader, 0.5), maxKind(verdict.KindBody, 0.2), maxKind(verdict.KindShadowError, 0.1),
				func(c *Criteria) { c.MaxDiffRate = 100 }},
			want:     Fail,
			failures: []string{"max body ", "max shadow_error ", "max body GET /a", "max shadow_error GET /a"},
		},
		{name: "shadow three times slower at p99",
			doc:      doc(rt("GET /a", 1000, 0, nil, 2*ms, 2*ms), rt("GET /slow", 500, 0, nil, 30*ms, 90*ms)),
			criteria: []crit{func(c *Criteria) { c.MaxLatencyRatio = 1.5 }},
			want:     Fail,
			failures: []string{"max-latency-ratio latency GET /slow"},
			inMsg:    []string{"route GET /slow: p99 shadow/production 2.00 (100ms / 50ms), threshold 1.5"}},
		{name: "--latency-slack: slower by a ratio but by less than the slack",
			doc:      doc(rt("GET /a", 1000, 0, nil, 200*time.Microsecond, 2*ms), rt("GET /slow", 500, 0, nil, 30*ms, 90*ms)),
			criteria: []crit{func(c *Criteria) { c.MaxLatencyRatio = 1.5; c.LatencySlack = 0.02 }},
			want:     Fail,
			failures: []string{"max-latency-ratio latency GET /slow"},
			inMsg:    []string{"threshold 1.5 and slack 20ms"}},
		{name: "without --latency-slack a sub-millisecond route fails on its ratio",
			doc:      doc(rt("GET /a", 1000, 0, nil, 200*time.Microsecond, 2*ms)),
			criteria: []crit{func(c *Criteria) { c.MaxLatencyRatio = 1.5 }},
			want:     Fail,
			failures: []string{"max-latency-ratio latency GET /a"}},
		{name: "latency is not judged without --max-latency-ratio",
			doc:  doc(rt("GET /a", 1000, 0, nil, 2*ms, 2*ms), rt("GET /slow", 500, 0, nil, 30*ms, 90*ms)),
			want: Pass},
		{name: "latency of a small route is not judged",
			doc:      doc(rt("GET /a", 1000, 0, nil, 2*ms, 2*ms), rt("GET /slow", 99, 0, nil, 30*ms, 900*ms)),
			criteria: []crit{func(c *Criteria) { c.MaxLatencyRatio = 1.5 }},
			want:     Pass},
		{name: "p50 judged with --latency-quantile",
			doc: doc(rt("GET /a", 1000, 0, nil, 2*ms, 2*ms), rt("GET /slow", 500, 0, nil, 30*ms, 90*ms)),
			criteria: []crit{func(c *Criteria) { c.MaxLatencyRatio = 1.5; c.LatencyQuantile = 0.5 },
				func(c *Criteria) { c.MinRouteExchanges = 500 }},
			want:     Fail,
			failures: []string{"max-latency-ratio latency GET /slow"},
			inMsg:    []string{"p50 shadow/production 2.14 (75ms / 35ms)"}},
		{name: "not enough data below --min-exchanges, even when failing",
			doc:  doc(rt("GET /a", 999, 999, map[verdict.Kind]uint64{verdict.KindStatus: 999}, 2*ms, 2*ms)),
			want: NotEnoughData},
		{name: "exactly --min-exchanges is judged",
			doc:  doc(rt("GET /a", 1000, 0, nil, 2*ms, 2*ms)),
			want: Pass},
		{name: "nothing compared is never a pass",
			doc:      doc(),
			criteria: []crit{func(c *Criteria) { c.MinExchanges = 0 }},
			want:     NotEnoughData},
		{name: "--route-filter leaves a failing route out",
			doc:      doc(rt("GET /api/a", 2000, 0, nil, 2*ms, 2*ms), rt("GET /admin", 500, 500, nil, 2*ms, 2*ms)),
			criteria: []crit{func(c *Criteria) { c.RouteFilter = regexp.MustCompile(`^GET /api/`) }},
			want:     Pass},
		{name: "--route-filter can leave too few exchanges",
			doc:      doc(rt("GET /api/a", 500, 0, nil, 2*ms, 2*ms), rt("GET /admin", 5000, 0, nil, 2*ms, 2*ms)),
			criteria: []crit{func(c *Criteria) { c.RouteFilter = regexp.MustCompile(`^GET /api/`) }},
			want:     NotEnoughData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultCriteria()
			for _, f := range tc.criteria {
				f(&c)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			res := Judge(tc.doc, c)
			if res.Verdict != tc.want || res.ExitStatus != tc.want.ExitStatus() {
				t.Errorf("verdict %s (exit %d), want %s; reason %q; failures %+v", res.Verdict, res.ExitStatus, tc.want, res.Reason, res.Failures)
			}
			var got []string
			for _, f := range res.Failures {
				got = append(got, f.Criterion+" "+f.Kind+" "+f.Route)
			}
			if !slices.Equal(got, tc.failures) {
				t.Errorf("failures %q, want %q", got, tc.failures)
			}
			for i, want := range tc.inMsg {
				if i < len(res.Failures) && !strings.Contains(res.Failures[i].Message, want) {
					t.Errorf("failure %d: message %q does not contain %q", i, res.Failures[i].Message, want)
				}
			}
			if _, err := json.Marshal(res); err != nil {
				t.Errorf("result does not marshal: %v", err)
			}
		})
	}
}

// TestNotEnoughDataSaysWhy: a receiver that sees only one direction of
// the traffic compares nothing; the reason must say so, not just "0".
func TestNotEnoughDataSaysWhy(t *testing.T) {
	d := doc(rt("GET /a", 10, 0, nil, ms, ms))
	d.Totals.Uncompared = map[string]uint64{"untracked": 5000, "busy": 3, "gap": 0}
	res := Judge(d, DefaultCriteria())
	if want := "; 5003 could not be compared (untracked 5000, busy 3)"; res.Verdict != NotEnoughData || !strings.HasSuffix(res.Reason, want) {
		t.Errorf("%s: %q, want not enough data ending %q", res.Verdict, res.Reason, want)
	}
}

func TestJudgeRouteOrder(t *testing.T) {
	res := Judge(doc(rt("GET /a", 1000, 0, nil, ms, ms), rt("GET /b", 1000, 50, nil, ms, ms), rt("GET /c", 10, 5, nil, ms, ms)), DefaultCriteria())
	var got []string
	for _, r := range res.Routes {
		got = append(got, r.Route)
	}
	if want := []string{"GET /c", "GET /b", "GET /a"}; !slices.Equal(got, want) {
		t.Errorf("routes in order %q, want by differing share %q", got, want)
	}
	if !res.Routes[1].Failed || res.Routes[0].Judged || res.Routes[0].Failed {
		t.Errorf("judged/failed flags wrong: %+v", res.Routes)
	}
}

func TestTargetNamedWithSeveral(t *testing.T) {
	a := rt("GET /a", 1000, 50, nil, ms, ms)
	b := rt("GET /a", 1000, 0, nil, ms, ms)
	b.Target = "http://other:8080"
	res := Judge(doc(a, b), DefaultCriteria())
	if res.Verdict != Fail || len(res.Failures) != 2 {
		t.Fatalf("%+v", res.Failures)
	}
	if m := res.Failures[1].Message; !strings.Contains(m, "route GET /a on http://shadow:8080") {
		t.Errorf("with two targets the failure does not name the target: %q", m)
	}
}

func TestParseMax(t *testing.T) {
	tests := []struct {
		in   string
		kind verdict.Kind
		pct  float64
		err  string
	}{
		{"cookie=0", verdict.KindCookie, 0, ""},
		{"status=0.5", verdict.KindStatus, 0.5, ""},
		{"shadow_error=2%", verdict.KindShadowError, 2, ""},
		{"cookie", "", 0, "KIND=PCT"},
		{"cookies=1", "", 0, `unknown kind "cookies"`},
		{"latency=1", "", 0, "--max-latency-ratio"},
		{"body=101", "", 0, "between 0 and 100"},
		{"body=-1", "", 0, "between 0 and 100"},
		{"body=x", "", 0, "not a percentage"},
	}
	for _, tc := range tests {
		k, p, err := ParseMax(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMax(%q) error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || k != tc.kind || p != tc.pct {
			t.Errorf("ParseMax(%q) = %q, %g, %v; want %q, %g", tc.in, k, p, err, tc.kind, tc.pct)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Criteria)
		want string
	}{
		{"defaults", func(*Criteria) {}, ""},
		{"rate above 100", func(c *Criteria) { c.MaxDiffRate = 101 }, "--max-diff-rate"},
		{"negative ratio", func(c *Criteria) { c.MaxLatencyRatio = -1 }, "--max-latency-ratio"},
		{"quantile 1", func(c *Criteria) { c.LatencyQuantile = 1 }, "--latency-quantile"},
		{"quantile 99", func(c *Criteria) { c.LatencyQuantile = 99 }, "--latency-quantile"},
		{"negative slack", func(c *Criteria) { c.LatencySlack = -1 }, "--latency-slack"},
	}
	for _, tc := range tests {
		c := DefaultCriteria()
		tc.mod(&c)
		err := c.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{FormatPct(0), "0%"}, {FormatPct(0.25), "0.25%"}, {FormatPct(12.345), "12.3%"}, {FormatPct(100), "100%"},
		{FormatSeconds(0), "-"}, {FormatSeconds(0.00085), "850µs"}, {FormatSeconds(0.0042), "4.2ms"},
		{FormatSeconds(0.125), "125ms"}, {FormatSeconds(1.25), "1.25s"}, {FormatSeconds(12), "12s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
