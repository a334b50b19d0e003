package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/verdict"
	"github.com/shadowtap/shadowtap/testenv"
)

// perRoute is how many requests the client makes on each lab app route.
const perRoute = 6

// startApp starts a lab app in ns on port, stopped at cleanup.
func startApp(t *testing.T, lab *testenv.Lab, ns string, port int, k testenv.AppKind) *testenv.App {
	t.Helper()
	a, err := testenv.StartApp(context.Background(), lab, ns, fmt.Sprintf(":%d", port), k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return a
}

// appTraffic makes perRoute requests on each of routes, one keep-alive
// connection per route, and returns the conversations.
func appTraffic(t *testing.T, lab *testenv.Lab, routes []testenv.AppRoute) []*testenv.Conversation {
	t.Helper()
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)
	var convs []*testenv.Conversation
	for _, rt := range routes {
		reqs := make([]testenv.Request, perRoute)
		for i := range reqs {
			reqs[i] = rt.Request(i)
		}
		convs = append(convs, converse(t, lab, prod4, reqs...))
	}
	return convs
}

// verdictDoc fetches GET /verdict.
func (p *proc) verdictDoc() *verdict.Document {
	p.t.Helper()
	resp, err := p.scrape.Get("http://" + metricsAddr + "/verdict")
	if err != nil {
		p.t.Fatalf("GET /verdict: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		p.t.Fatalf("GET /verdict: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var d verdict.Document
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		p.t.Fatalf("GET /verdict: %v", err)
	}
	return &d
}

func routeOf(d *verdict.Document, target, route string) *verdict.Route {
	for i := range d.Routes {
		if d.Routes[i].Target == target && d.Routes[i].Route == route {
			return &d.Routes[i]
		}
	}
	return nil
}

// readDiffLog parses every line of a --diff-log file.
func readDiffLog(t *testing.T, file string) (lines []verdict.DiffLogLine, raw string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the diff log: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l verdict.DiffLogLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("diff log line %q: %v (fields not in the documented schema?)", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines, string(b)
}

// TestCompareLabApps (issue 8): production runs the lab's production app,
// the shadow namespace the shadow app that differs on purpose; shadowtap
// replays the mirrored traffic and compares. Every route must show exactly
// the difference it was built with — a 500, a cookie scope, a dropped header,
// a changed JSON field, a slower route — and the key-order-only and
// compression-only changes must not count, in the Prometheus series, the
// JSONL diff log and the /verdict document (served and written at exit).
func TestCompareLabApps(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startApp(t, lab, lab.ProdNS, prodPort, testenv.AppProduction)
	startApp(t, lab, lab.ShadowNS, shadowPort, testenv.AppShadow)
	dir := t.TempDir()
	diffLog, out := filepath.Join(dir, "diff.jsonl"), filepath.Join(dir, "verdict.json")
	target := shadowTarget(lab, shadowPort)
	const examples = 3
	p := startRun(t, lab, newPinRoot(t), "--target", target, "--diff-log", diffLog, "--verdict-out", out,
		"--diff-log-examples", fmt.Sprint(examples))

	routes := testenv.AppRoutes()
	convs := appTraffic(t, lab, routes)
	total := float64(len(routes) * perRoute)
	m := p.waitMetrics(fmt.Sprintf("%v exchanges compared", total), func(m testenv.Metrics) bool {
		return m.Sum(verdict.MetricCompared) >= total && settled(t, m)
	})

	// Prometheus.
	for _, rt := range routes {
		lbl := []string{"target", target, "route", rt.Route}
		if got := m.Get(t, verdict.MetricCompared, lbl...); got != perRoute {
			t.Errorf("%s: compared %v, want %d", rt.Route, got, perRoute)
		}
		wantDiffering := float64(perRoute)
		if rt.Kind == "" {
			wantDiffering = 0
		}
		if got := m.Get(t, verdict.MetricDiffering, lbl...); got != wantDiffering {
			t.Errorf("%s: differing %v, want %v (%s)", rt.Route, got, wantDiffering, rt.Why)
		}
		for _, k := range verdict.ExchangeKinds() {
			got := m.Sum(verdict.MetricDifferences, append(lbl, "kind", string(k))...)
			switch {
			case string(k) == rt.Kind && got != perRoute:
				t.Errorf("%s: %s differences %v, want %d (%s)", rt.Route, k, got, perRoute, rt.Why)
			case rt.Kind == "" && got != 0:
				t.Errorf("%s: %s differences %v, want none (%s)", rt.Route, k, got, rt.Why)
			case k == verdict.KindShadowError && got != 0:
				t.Errorf("%s: shadow_error %v: the shadow answered every request", rt.Route, got)
			}
		}
	}
	if got := m.Sum(verdict.MetricUncompared); got != 0 {
		t.Errorf("uncompared %v, want 0:\n%s", got, m.String())
	}
	// Accounting: every answered or failed request of the target is
	// compared or counted uncompared.
	answered := m.Get(t, "shadowtap_replay_replayed_total", "target", target) + m.Get(t, "shadowtap_replay_failed_total", "target", target)
	if got := m.Get(t, verdict.MetricCompared, "target", target) + m.Sum(verdict.MetricUncompared, "target", target); got != answered {
		t.Errorf("compared + uncompared = %v, replayed + failed = %v", got, answered)
	}
	if !m.Has(verdict.MetricLatency+"_count", "target", target, "route", "GET /search", "side", "shadow") {
		t.Errorf("no shadow latency histogram for GET /search")
	}

	// /verdict.
	d := p.verdictDoc()
	if d.Schema != verdict.SchemaVersion || d.Totals.Exchanges != uint64(total) {
		t.Errorf("/verdict schema %d, %d exchanges; want %d, %v", d.Schema, d.Totals.Exchanges, verdict.SchemaVersion, total)
	}
	for _, rt := range routes {
		r := routeOf(d, target, rt.Route)
		if r == nil {
			t.Errorf("/verdict has no route %q for %s", rt.Route, target)
			continue
		}
		if r.Exchanges != perRoute {
			t.Errorf("/verdict %s: %d exchanges, want %d", rt.Route, r.Exchanges, perRoute)
		}
		if rt.Kind != "" && (r.Differing != perRoute || r.Kinds[verdict.Kind(rt.Kind)] != perRoute) {
			t.Errorf("/verdict %s: differing %d, kinds %v; want %d %s", rt.Route, r.Differing, r.Kinds, perRoute, rt.Kind)
		}
		if rt.Kind == "" && r.Differing != 0 {
			t.Errorf("/verdict %s: differing %d, kinds %v; want none (%s)", rt.Route, r.Differing, r.Kinds, rt.Why)
		}
		if r.Latency.Production.Count != perRoute || r.Latency.Shadow.Count != perRoute {
			t.Errorf("/verdict %s: latency counts %d, %d; want %d", rt.Route, r.Latency.Production.Count, r.Latency.Shadow.Count, perRoute)
		}
		if rt.Latency {
			if pr, sh := r.Latency.Production.P50, r.Latency.Shadow.P50; sh <= pr || sh < testenv.SearchDelay.Seconds()/2 {
				t.Errorf("/verdict %s: p50 production %gs, shadow %gs: want the shadow slower by about %v", rt.Route, pr, sh, testenv.SearchDelay)
			}
		}
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}

	// --verdict-out, written at exit.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("--verdict-out: %v", err)
	}
	var fd verdict.Document
	if err := json.Unmarshal(b, &fd); err != nil {
		t.Fatalf("--verdict-out: %v", err)
	}
	if fd.Schema != verdict.SchemaVersion || fd.Totals.Exchanges != uint64(total) || len(fd.Routes) != len(routes) {
		t.Errorf("--verdict-out: schema %d, %d exchanges, %d routes; want %d, %v, %d", fd.Schema, fd.Totals.Exchanges, len(fd.Routes), verdict.SchemaVersion, total, len(routes))
	}

	// The diff log: schema 1, the kinds of the differing routes only, at
	// most --diff-log-examples per route and kind per minute, no secrets.
	lines, raw := readDiffLog(t, diffLog)
	kindOf := map[string]string{}
	for _, rt := range routes {
		kindOf[rt.Route] = rt.Kind
	}
	perKind := map[string]int{}
	for _, l := range lines {
		if l.Schema != verdict.SchemaVersion || l.Target != target || l.Method != "GET" || l.Time.IsZero() {
			t.Errorf("diff log line %+v", l)
		}
		want := kindOf[l.Route]
		if want == "" {
			t.Errorf("diff log line for %s, a route without differences: %+v", l.Route, l)
			continue
		}
		if !slices.Contains(l.Kinds, verdict.Kind(want)) || len(l.Differences) == 0 {
			t.Errorf("diff log line for %s: kinds %v, want %s", l.Route, l.Kinds, want)
		}
		for _, k := range l.Kinds {
			perKind[l.Route+" "+string(k)]++
		}
		if l.Production.Status != 200 {
			t.Errorf("diff log %s: production status %d", l.Route, l.Production.Status)
		}
		if l.Route == "GET /report/{id}" {
			if l.Shadow.Status != 500 || strings.Contains(l.Path, "alice") || !strings.Contains(l.Path, "user=") {
				t.Errorf("diff log %s: shadow status %d, path %q: want 500 and the query's values redacted", l.Route, l.Shadow.Status, l.Path)
			}
		}
		for _, df := range l.Differences {
			if df.Kind == verdict.KindCookie && df.Explanation == "" {
				t.Errorf("cookie difference without an explanation: %+v", df)
			}
		}
	}
	for _, rt := range routes {
		if rt.Kind == "" {
			continue
		}
		// Each route's requests fall within a minute or two.
		if n := perKind[rt.Route+" "+rt.Kind]; n < examples || n > 2*examples {
			t.Errorf("diff log: %d lines for %s %s, want %d (--diff-log-examples, per minute)", n, rt.Route, rt.Kind, examples)
		}
	}
	secrets := []string{"client-s3cret", "auth-s3cret", "alice"}
	for _, c := range convs {
		for _, ex := range c.Exchanges {
			for _, sc := range ex.ResponseHeader.Values("Set-Cookie") {
				name, rest, _ := strings.Cut(sc, "=")
				value, _, _ := strings.Cut(rest, ";")
				if name == "sid" {
					secrets = append(secrets, value)
				}
			}
		}
	}
	if len(secrets) < 3+perRoute {
		t.Errorf("production set %d session cookies, want %d", len(secrets)-3, perRoute)
	}
	for _, s := range secrets {
		if strings.Contains(raw, s) {
			t.Errorf("the diff log contains the secret %q", s)
		}
	}
}

// TestCompareBaselineNoise (issue 8): with --baseline, a field that differs
// between production and the baseline (the old code) on every request —
// generated_at, a time stamp each deployment makes — is noise, not a
// difference of the new code; the shadow's changed email still is.
func TestCompareBaselineNoise(t *testing.T) {
	const baselinePort = 8081
	lab := testenv.NewLab(t, testenv.Options{})
	startApp(t, lab, lab.ProdNS, prodPort, testenv.AppProduction)
	startApp(t, lab, lab.ShadowNS, shadowPort, testenv.AppShadow)
	startApp(t, lab, lab.ShadowNS, baselinePort, testenv.AppBaseline)
	target, baseline := shadowTarget(lab, shadowPort), shadowTarget(lab, baselinePort)
	diffLog := filepath.Join(t.TempDir(), "diff.jsonl")
	p := startRun(t, lab, newPinRoot(t), "--target", target, "--baseline", baseline, "--diff-log", diffLog,
		"--diff-log-examples", "100", "--replay-delay", "20ms")

	var users []testenv.AppRoute
	for _, rt := range testenv.AppRoutes() {
		if rt.Route == "GET /api/users/{id}" || rt.Route == "GET /api/items" {
			users = append(users, rt)
		}
	}
	appTraffic(t, lab, users)
	total := float64(len(users) * perRoute)
	m := p.waitMetrics(fmt.Sprintf("%v exchanges compared", total), func(m testenv.Metrics) bool {
		return m.Sum(verdict.MetricCompared, "target", target) >= total && settled(t, m)
	})
	// The baseline is a replay target of its own.
	if got := m.Get(t, "shadowtap_replay_replayed_total", "target", baseline); got != total {
		t.Errorf("baseline answered %v requests, want %v", got, total)
	}
	usersRoute := []string{"target", target, "route", "GET /api/users/{id}"}
	if got := m.Get(t, verdict.MetricDifferences, append(usersRoute, "kind", "body")...); got != perRoute {
		t.Errorf("body differences on GET /api/users/{id}: %v, want %d (email)", got, perRoute)
	}
	if got := m.Get(t, verdict.MetricDiffering, "target", target, "route", "GET /api/items"); got != 0 {
		t.Errorf("differing on GET /api/items: %v, want 0", got)
	}
	if got := m.Get(t, verdict.MetricNoise, "target", target, "kind", "body"); got < perRoute {
		t.Errorf("body noise %v, want at least %d (generated_at on every users request)", got, perRoute)
	}
	d := p.verdictDoc()
	if d.Ignored.Baseline != baseline {
		t.Errorf("/verdict ignored.baseline %q, want %q", d.Ignored.Baseline, baseline)
	}
	r := routeOf(d, target, "GET /api/users/{id}")
	if r == nil {
		t.Fatalf("/verdict has no users route for %s: %+v", target, d.Routes)
	}
	learnt := false
	for _, nf := range r.NoiseFields {
		if nf.Kind == verdict.KindBody && strings.Contains(nf.Field, "generated_at") {
			learnt = true
		}
	}
	if !learnt {
		t.Errorf("/verdict noise fields %+v: want generated_at learnt from the baseline", r.NoiseFields)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	lines, _ := readDiffLog(t, diffLog)
	n := 0
	for _, l := range lines {
		if l.Target == baseline {
			t.Errorf("diff log line for the baseline: %+v", l)
		}
		if l.Route != "GET /api/users/{id}" {
			t.Errorf("diff log line for %s: %+v", l.Route, l)
			continue
		}
		n++
		email := false
		for _, df := range l.Differences {
			if strings.Contains(df.Field, "generated_at") {
				t.Errorf("diff log reports generated_at, which the baseline showed is noise: %+v", df)
			}
			email = email || strings.Contains(df.Field, "email")
		}
		if !email {
			t.Errorf("diff log line without the email difference: %+v", l.Differences)
		}
	}
	if n != perRoute {
		t.Errorf("%d diff log lines for GET /api/users/{id}, want %d", n, perRoute)
	}
}
