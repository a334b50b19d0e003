package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// fakeProm answers the Prometheus HTTP API from canned results keyed by
// query: vectors for instant queries, matrices for range queries.
type fakeProm struct {
	vectors  map[string][]promSample
	matrices map[string][]promSample
	queries  []string
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("query")
	f.queries = append(f.queries, q)
	out := map[string]any{"status": "success"}
	switch r.URL.Path {
	case "/api/v1/query":
		out["data"] = map[string]any{"resultType": "vector", "result": orEmpty(f.vectors[q])}
	case "/api/v1/query_range":
		out["data"] = map[string]any{"resultType": "matrix", "result": orEmpty(f.matrices[q])}
	default:
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(out)
}

func orEmpty(s []promSample) []promSample {
	if s == nil {
		return []promSample{}
	}
	return s
}

func vec(value string, labels ...string) promSample {
	m := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	return promSample{Metric: m, Value: []json.RawMessage{json.RawMessage("1700000000"), json.RawMessage(strconv.Quote(value))}}
}

// TestFromPrometheus checks the document built from PromQL answers:
// counts, kinds, noise, uncompared, histograms from cumulative buckets,
// the receivers' count, and the timeline from range queries, a counter
// reset included.
func TestFromPrometheus(t *testing.T) {
	q := Queries(`job="st"`)
	now := time.Date(2026, 11, 30, 9, 0, 30, 0, time.UTC)
	end := now.Truncate(time.Minute)
	const tgt = "http://shadow:8080"
	var buckets []promSample
	cum := 0
	for i, b := range verdict.LatencyBounds() {
		if i == 3 {
			cum = 10 // ten answers in (0.002, 0.005]
		}
		buckets = append(buckets, vec(strconv.Itoa(cum), "target", tgt, "route", "GET /a", "side", "production", "le", strconv.FormatFloat(b, 'g', -1, 64)))
	}
	buckets = append(buckets, vec("10", "target", tgt, "route", "GET /a", "side", "production", "le", "+Inf"))
	series := func(vals ...float64) []promSample {
		var pts [][]any
		for i, v := range vals {
			ts := float64(end.Add(time.Duration(i-len(vals)+1) * time.Minute).Unix())
			pts = append(pts, []any{ts, strconv.FormatFloat(v, 'f', -1, 64)})
		}
		return []promSample{{Metric: map[string]string{}, Values: pts}}
	}
	f := &fakeProm{
		vectors: map[string][]promSample{
			q["receivers"]:   {vec("3")},
			q["compared"]:    {vec("1000", "target", tgt, "route", "GET /a"), vec("10", "target", tgt, "route", "GET /b")},
			q["differing"]:   {vec("40", "target", tgt, "route", "GET /a")},
			q["differences"]: {vec("40", "target", tgt, "route", "GET /a", "kind", "cookie"), vec("2", "target", tgt, "route", "GET /a", "kind", "body")},
			q["noise"]:       {vec("7", "target", tgt, "kind", "header")},
			q["uncompared"]:  {vec("4", "target", tgt, "reason", "gap"), vec("1", "target", "other", "reason", "gap")},
			q["buckets"]:     buckets,
			q["sum"]:         {vec("0.035", "target", tgt, "route", "GET /a", "side", "production")},
		},
		matrices: map[string][]promSample{
			q["timeline"]:      series(100, 160, 30, 90), // a receiver restarted between the 2nd and 3rd minute
			q["timeline_diff"]: series(0, 6, 1, 4),
		},
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	d, err := FromPrometheus(context.Background(), srv.Client(), srv.URL, `job="st"`, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, qq := range f.queries {
		if strings.Contains(qq, "shadowtap_verdict_") && !strings.Contains(qq, `job="st"`) {
			t.Errorf("query without the match: %s", qq)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"receivers", d.Receivers, 3},
		{"exchanges", d.Totals.Exchanges, uint64(1010)},
		{"differing", d.Totals.Differing, uint64(40)},
		{"kinds", fmt.Sprint(d.Totals.Kinds), fmt.Sprint(map[verdict.Kind]uint64{"cookie": 40, "body": 2})},
		{"noise", d.Totals.Noise[verdict.KindHeader], uint64(7)},
		{"uncompared", d.Totals.Uncompared["gap"], uint64(5)},
		{"routes", len(d.Routes), 2},
		{"route a", d.Routes[0].Route + " " + strconv.FormatUint(d.Routes[0].Exchanges, 10), "GET /a 1000"},
		{"histogram count", d.Routes[0].Latency.Production.Count, uint64(10)},
		{"histogram bucket", d.Routes[0].Latency.Production.Counts[3], uint64(10)},
		{"histogram sum", d.Routes[0].Latency.Production.Sum, 0.035},
		{"p50 in the bucket", d.Routes[0].Latency.Production.P50 > 0.002 && d.Routes[0].Latency.Production.P50 <= 0.005, true},
		{"empty shadow histogram", d.Routes[0].Latency.Shadow.Count, uint64(0)},
		{"timeline minutes", len(d.Timeline), 3},
		{"timeline increase", d.Timeline[0].Exchanges, uint64(60)},
		{"timeline after a reset", d.Timeline[1].Exchanges, uint64(30)},
		{"timeline differing", d.Timeline[2].Differing, uint64(3)},
		{"timeline start", d.Timeline[2].Start, end.Add(-time.Minute)},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestFromPrometheusErrors(t *testing.T) {
	q := Queries("")
	tests := []struct {
		name string
		f    http.Handler
		want string
	}{
		{"no series", &fakeProm{}, "no shadowtap_verdict_* series"},
		{"other buckets", &fakeProm{vectors: map[string][]promSample{
			q["receivers"]: {vec("1")},
			q["buckets"]:   {vec("1", "route", "GET /", "side", "shadow", "le", "0.1"), vec("1", "route", "GET /", "side", "shadow", "le", "+Inf")},
		}}, "shadow latency of  GET /"},
		{"not a count", &fakeProm{vectors: map[string][]promSample{q["receivers"]: {vec("1")}, q["compared"]: {vec("NaN", "route", "GET /")}}}, "not a count"},
		{"API error", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"1:10: parse error"}`))
		}), "bad_data: 1:10: parse error"},
		{"not Prometheus", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }), "not a Prometheus API answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.f)
			defer srv.Close()
			_, err := FromPrometheus(context.Background(), srv.Client(), srv.URL, "", time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
