package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

const testTarget = "http://10.83.0.2:8080"

// fakeRoute is a route of a /verdict document: n exchanges of which the
// kinds' counts differ (differing = the largest count), every production
// answer taking prod and every shadow answer shadow.
func fakeRoute(route string, n uint64, kinds map[verdict.Kind]uint64, prod, shadow time.Duration) verdict.Route {
	r := verdict.Route{Target: testTarget, Route: route, Exchanges: n, Kinds: map[verdict.Kind]uint64{}, Noise: map[verdict.Kind]uint64{},
		Latency: verdict.RouteLatency{Production: verdict.NewHistogram(), Shadow: verdict.NewHistogram()}}
	for k, c := range kinds {
		r.Kinds[k] = c
		r.Differing = max(r.Differing, c)
	}
	for i := uint64(0); i < n; i++ {
		r.Latency.Production.Observe(prod)
		r.Latency.Shadow.Observe(shadow)
	}
	r.Latency.Production.Finish()
	r.Latency.Shadow.Finish()
	return r
}

func fakeDoc(routes ...verdict.Route) *verdict.Document {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	d := &verdict.Document{Schema: verdict.SchemaVersion, Generated: t0.Add(10 * time.Minute), Started: t0, Receivers: 1, Routes: routes,
		Totals: verdict.Totals{Kinds: map[verdict.Kind]uint64{}, Noise: map[verdict.Kind]uint64{}, Uncompared: map[string]uint64{}}}
	for _, r := range routes {
		d.Totals.Exchanges += r.Exchanges
		d.Totals.Differing += r.Differing
		for k, n := range r.Kinds {
			d.Totals.Kinds[k] += n
		}
	}
	return d
}

func writeDoc(t *testing.T, d *verdict.Document) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "verdict.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveDoc is a receiver's metrics address serving d at /verdict.
func serveDoc(t *testing.T, d *verdict.Document) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /verdict", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

const ms = time.Millisecond

// TestVerdictExitStatus runs `shadowtap verdict` as a pipeline would and
// checks its exit status and the lines it prints for every criterion, for
// not enough data, and for sources that cannot be read.
func TestVerdictExitStatus(t *testing.T) {
	ok := fakeRoute("GET /products/{id}", 1800, map[verdict.Kind]uint64{verdict.KindBody: 3}, 4*ms, 5*ms)
	healthy := writeDoc(t, fakeDoc(ok, fakeRoute("GET /", 400, nil, 2*ms, 2*ms)))
	cookie := writeDoc(t, fakeDoc(ok, fakeRoute("GET /login", 300, map[verdict.Kind]uint64{verdict.KindCookie: 300}, 3*ms, 3*ms)))
	status := writeDoc(t, fakeDoc(ok, fakeRoute("GET /cart", 300, map[verdict.Kind]uint64{verdict.KindStatus: 9}, 3*ms, 3*ms)))
	slow := writeDoc(t, fakeDoc(ok, fakeRoute("GET /search", 300, nil, 30*ms, 300*ms)))
	few := writeDoc(t, fakeDoc(fakeRoute("GET /", 999, nil, 2*ms, 2*ms)))
	otherSchema := fakeDoc(ok)
	otherSchema.Schema = 99
	otherSchemaFile := writeDoc(t, otherSchema)
	notJSON := filepath.Join(t.TempDir(), "x.json")
	os.WriteFile(notJSON, []byte("<html>"), 0o644)
	noVerdict := httptest.NewServer(http.NotFoundHandler())
	defer noVerdict.Close()
	down := closedAddr(t)

	tests := []struct {
		name   string
		args   []string
		status int
		stdout []string // each in stdout
		stderr []string // each in stderr
	}{
		{"pass", []string{"--from", healthy}, 0,
			[]string{"verdict: PASS (exit 0, 1 receiver): every criterion passed on 2200 compared exchanges", "GET /products/{id}"}, nil},
		{"differing share over all routes and on the route", []string{"--from", cookie}, 1,
			[]string{"FAIL max-diff-rate: all routes: differing 14.4% (303 of 2100 exchanges), threshold 1%; most on GET /login 300, GET /products/{id} 3",
				"FAIL max-diff-rate: route GET /login: differing 100% (300 of 300 exchanges), threshold 1%", "verdict: FAIL (exit 1"}, nil},
		{"--max cookie=0", []string{"--from", cookie, "--max-diff-rate", "100", "--max", "cookie=0"}, 1,
			[]string{"FAIL max cookie: all routes: differing by cookie 14.3% (300 of 2100 exchanges), threshold 0%",
				"FAIL max cookie: route GET /login: differing by cookie 100%"}, nil},
		{"--max status=0.5", []string{"--from", status, "--max", "status=0.5"}, 1,
			[]string{"FAIL max status: route GET /cart: differing by status 3.00% (9 of 300 exchanges), threshold 0.5%"}, nil},
		{"--max status=5 passes", []string{"--from", status, "--max", "status=5", "--max-diff-rate", "5"}, 0, []string{"verdict: PASS"}, nil},
		{"--max-latency-ratio", []string{"--from", slow, "--max-latency-ratio", "2"}, 1,
			[]string{"FAIL max-latency-ratio: route GET /search: p99 shadow/production 10.00 (497ms / 50ms), threshold 2"}, nil},
		{"--latency-quantile", []string{"--from", slow, "--max-latency-ratio", "2", "--latency-quantile", "0.5"}, 1,
			[]string{"p50 shadow/production 10.00 (350ms / 35ms)"}, nil},
		{"--latency-slack", []string{"--from", slow, "--max-latency-ratio", "2", "--latency-slack", "500ms"}, 0, []string{"verdict: PASS"}, nil},
		{"latency within the ratio", []string{"--from", slow, "--max-latency-ratio", "20"}, 0, []string{"verdict: PASS"}, nil},
		{"--route-filter leaves the failing route out", []string{"--from", cookie, "--route-filter", "^GET /products/"}, 0,
			[]string{"verdict: PASS", `on routes matching "^GET /products/"`}, nil},
		{"not enough data", []string{"--from", few}, 3,
			[]string{"verdict: NOT ENOUGH DATA (exit 3, 1 receiver): not enough data: 999 exchanges compared, --min-exchanges is 1000"}, nil},
		{"--min-exchanges lowered", []string{"--from", few, "--min-exchanges", "500"}, 0, []string{"verdict: PASS"}, nil},
		{"two receivers merged reach --min-exchanges", []string{"--from", few, "--from", serveDoc(t, fakeDoc(fakeRoute("GET /", 1, nil, 2*ms, 2*ms)))}, 0,
			[]string{"verdict: PASS (exit 0, 2 receivers): every criterion passed on 1000 compared exchanges"}, nil},
		{"unreachable receiver", []string{"--from", down}, 2, nil,
			[]string{"shadowtap verdict: --from " + down + ": fetching " + down + "/verdict:", "connection refused"}},
		{"one of two receivers unreachable", []string{"--from", healthy, "--from", down}, 2, nil, []string{"connection refused"}},
		{"receiver without /verdict", []string{"--from", noVerdict.URL}, 2, nil, []string{"answered 404 Not Found"}},
		{"missing file", []string{"--from", "/nonexistent/verdict.json"}, 2, nil, []string{"/nonexistent/verdict.json", "no such file"}},
		{"not a document", []string{"--from", notJSON}, 2, nil, []string{"not a verdict document"}},
		{"other schema", []string{"--from", otherSchemaFile}, 2, nil, []string{"schema 99, this shadowtap reads schema 1"}},
		{"unreachable Prometheus", []string{"--prometheus", down}, 2, nil, []string{"--prometheus " + down, "connection refused"}},
		{"no source", nil, 2, nil, []string{"no source"}},
		{"both sources", []string{"--from", healthy, "--prometheus", "http://127.0.0.1:9090"}, 2, nil, []string{"either --from or --prometheus"}},
		{"bad --max", []string{"--from", healthy, "--max", "cookies=0"}, 2, nil, []string{`unknown kind "cookies"`}},
		{"bad --route-filter", []string{"--from", healthy, "--route-filter", "("}, 2, nil, []string{"--route-filter"}},
		{"bad --latency-quantile", []string{"--from", healthy, "--latency-quantile", "99"}, 2, nil, []string{"--latency-quantile"}},
		{"negative --latency-slack", []string{"--from", healthy, "--latency-slack", "-1s"}, 2, nil, []string{"--latency-slack"}},
		{"bad --color", []string{"--from", healthy, "--color", "rainbow"}, 2, nil, []string{"rainbow"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"verdict"}, tc.args...), &stdout, &stderr)
			if code != tc.status {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.status, stdout.String(), stderr.String())
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout does not contain %q:\n%s", want, stdout.String())
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
				}
			}
			if tc.status == 2 {
				if strings.Contains(stdout.String(), "PASS") {
					t.Errorf("a source or usage error printed a pass:\n%s", stdout.String())
				}
				if n := strings.Count(stderr.String(), "\n"); n != 1 {
					t.Errorf("stderr has %d lines, want one clear line:\n%s", n, stderr.String())
				}
			}
			if tc.status != 2 && stderr.Len() > 0 {
				t.Errorf("stderr not empty: %s", stderr.String())
			}
			if strings.Contains(stdout.String(), "\x1b[") {
				t.Errorf("colour written to a buffer, not a terminal")
			}
			for _, line := range strings.Split(stdout.String(), "\n") {
				if !strings.HasPrefix(line, "FAIL ") && !strings.HasPrefix(line, "verdict: ") && len([]rune(line)) > 80 {
					t.Errorf("table line wider than 80 columns: %q", line)
				}
			}
		})
	}
}

// TestVerdictJSON checks the machine form: the documented fields, the
// same decision and exit status as the text form, and a JSON answer with
// verdict "error" when the source cannot be read.
func TestVerdictJSON(t *testing.T) {
	cookie := writeDoc(t, fakeDoc(fakeRoute("GET /a", 1800, nil, ms, ms), fakeRoute("GET /login", 300, map[verdict.Kind]uint64{verdict.KindCookie: 300}, 3*ms, 3*ms)))
	tests := []struct {
		name     string
		args     []string
		status   int
		verdict  gate.Outcome
		failures int
	}{
		{"fail", []string{"--from", cookie, "--max", "cookie=0", "--max-diff-rate", "100"}, 1, gate.Fail, 2},
		{"pass", []string{"--from", cookie, "--route-filter", "^GET /a$", "--min-exchanges", "1000"}, 0, gate.Pass, 0},
		{"not enough data", []string{"--from", cookie, "--min-exchanges", "5000"}, 3, gate.NotEnoughData, 0},
		{"error", []string{"--from", closedAddr(t)}, 2, gate.Error, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"verdict", "--json"}, tc.args...), &stdout, &stderr)
			if code != tc.status {
				t.Errorf("exit status %d, want %d; stderr %s", code, tc.status, stderr.String())
			}
			var res map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout.String())
			}
			for _, field := range []string{"schema", "verdict", "exit_status", "reason", "exchanges", "differing", "differing_pct", "kinds", "criteria", "failures", "routes"} {
				if _, ok := res[field]; !ok {
					t.Errorf("field %q missing", field)
				}
			}
			if res["verdict"] != string(tc.verdict) || res["exit_status"] != float64(tc.status) {
				t.Errorf("verdict %v exit_status %v, want %s %d", res["verdict"], res["exit_status"], tc.verdict, tc.status)
			}
			if f, _ := res["failures"].([]any); len(f) != tc.failures {
				t.Errorf("%d failures, want %d: %v", len(f), tc.failures, res["failures"])
			}
		})
	}
}
