package fleet

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

func sampleDoc(exchanges uint64, started time.Time) *verdict.Document {
	h := verdict.NewHistogram()
	for i := uint64(0); i < exchanges; i++ {
		h.Observe(time.Duration(i%50) * time.Millisecond)
	}
	return &verdict.Document{Schema: verdict.SchemaVersion, Started: started, Generated: started.Add(time.Minute), Receivers: 1,
		Totals: verdict.Totals{Exchanges: exchanges, Differing: 1, Kinds: map[verdict.Kind]uint64{verdict.KindStatus: 1}},
		Routes: []verdict.Route{{Target: "t", Route: "GET /", Exchanges: exchanges, Differing: 1, Kinds: map[verdict.Kind]uint64{verdict.KindStatus: 1},
			Latency: verdict.RouteLatency{Production: h, Shadow: h}}}}
}

// TestLoadMergesEverySource checks that files, receivers and stdin are all
// read and summed.
func TestLoadMergesEverySource(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	b, _ := json.Marshal(sampleDoc(10, t0))
	file := filepath.Join(t.TempDir(), "v.json")
	os.WriteFile(file, b, 0o644)
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		json.NewEncoder(w).Encode(sampleDoc(20, t0.Add(-time.Hour)))
	}))
	defer srv.Close()
	d, err := Load(context.Background(), Sources{From: []string{file, srv.URL, srv.URL + "/custom/verdict", "-"},
		Stdin: strings.NewReader(string(b))})
	if err != nil {
		t.Fatal(err)
	}
	if d.Totals.Exchanges != 60 || d.Routes[0].Exchanges != 60 || d.Routes[0].Latency.Production.Count != 60 || d.Receivers != 4 {
		t.Errorf("merged: %d exchanges, route %d, histogram %d, %d receivers; want 60, 60, 60, 4",
			d.Totals.Exchanges, d.Routes[0].Exchanges, d.Routes[0].Latency.Production.Count, d.Receivers)
	}
	if !d.Started.Equal(t0.Add(-time.Hour)) {
		t.Errorf("Started %v", d.Started)
	}
	sort.Strings(paths)
	if strings.Join(paths, " ") != "/custom/verdict /verdict" {
		t.Errorf("requested paths %q, want /verdict appended to a bare address only", paths)
	}
}

func TestDecodeRefuses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "not a verdict document"},
		{"html", "<html>", "not a verdict document"},
		{"no schema", `{"totals":{}}`, "schema 0"},
		{"newer schema", `{"schema":2}`, "schema 2"},
		{"more differing than compared", `{"schema":1,"totals":{"exchanges":1,"differing":2}}`, "2 differing of 1"},
		{"route more differing", `{"schema":1,"routes":[{"route":"GET /","exchanges":1,"differing":3}]}`, "route"},
	}
	for _, tc := range tests {
		_, err := Decode(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestHistogramFromBuckets(t *testing.T) {
	bounds := verdict.LatencyBounds()
	cum := map[float64]uint64{math.Inf(1): 10}
	for i, b := range bounds {
		cum[b] = uint64(min(i, 10))
	}
	h, err := histogramFromBuckets(cum, 1.5)
	if err != nil {
		t.Fatal(err)
	}
	if h.Count != 10 || h.Sum != 1.5 || h.Counts[0] != 0 || h.Counts[1] != 1 || h.Counts[len(bounds)] != 0 {
		t.Errorf("histogram %+v", h)
	}
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total != h.Count {
		t.Errorf("buckets sum to %d, count %d", total, h.Count)
	}
	bad := map[string]map[float64]uint64{
		"missing +Inf":   {0.1: 1, 1: 2},
		"other bounds":   func() map[float64]uint64 { m := map[float64]uint64{math.Inf(1): 1}; m[0.0005] = 0; return m }(),
		"not cumulative": func() map[float64]uint64 { m := copyMap(cum); m[bounds[5]] = 9; return m }(),
	}
	for name, m := range bad {
		if _, err := histogramFromBuckets(m, 0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func copyMap(m map[float64]uint64) map[float64]uint64 {
	out := map[float64]uint64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestParsePromResponse(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"error answer", `{"status":"error","errorType":"bad_data","error":"parse error at char 5"}`, "bad_data: parse error at char 5"},
		{"not json", `502 Bad Gateway`, "not a Prometheus API answer"},
	}
	for _, tc := range tests {
		_, err := parsePromResponse(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	r, err := parsePromResponse(strings.NewReader(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"route":"GET /"},"value":[1700000000.5,"42"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := sampleValue(r.Data.Result[0])
	if err != nil || v != 42 {
		t.Errorf("value %g, %v", v, err)
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		s    Sources
		want string
	}{
		{Sources{}, "no source"},
		{Sources{From: []string{"a"}, Prometheus: "http://p:9090"}, "either"},
		{Sources{Prometheus: "prometheus:9090"}, "http(s) URL"},
		{Sources{From: []string{"f"}, Match: `job="x"`}, "needs --prometheus"},
		{Sources{From: []string{"http://"}}, "metrics address"},
	}
	for _, tc := range tests {
		err := tc.s.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
}

// FuzzDecode: a document from the network never panics the reader, and
// what it accepts merges.
func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(sampleDoc(5, time.Unix(0, 0)))
	f.Add(b)
	f.Add([]byte(`{"schema":1,"routes":[{"latency":{"production":{"bounds":[1],"counts":[1,2]}}}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := Decode(strings.NewReader(string(in)))
		if err != nil {
			return
		}
		_, _ = verdict.Merge(d, d)
	})
}

// FuzzPromResponse: a Prometheus answer never panics the parser.
func FuzzPromResponse(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"le":"+Inf"},"value":[1,"3"]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"3"],[61,"x"]]}]}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := parsePromResponse(strings.NewReader(string(in)))
		if err != nil {
			return
		}
		for _, s := range r.Data.Result {
			if v, err := sampleValue(s); err == nil {
				_, _ = count(v)
			}
		}
	})
}
