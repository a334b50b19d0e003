package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// maxPromResponse bounds one Prometheus API answer.
const maxPromResponse = 64 << 20

// timelineMinutes is how far back the Prometheus source reads the timeline.
const timelineMinutes = 60

// Queries returns the PromQL that FromPrometheus runs, by what it fills in
// the document; match is a label matcher list (`job="shadowtap"`) or "".
// Every query sums over all receivers, so the figures are the fleet's.
func Queries(match string) map[string]string {
	sel := func(name string) string {
		if match == "" {
			return name
		}
		return name + "{" + match + "}"
	}
	anySel := `{__name__=~"shadowtap_verdict_.+"`
	if match != "" {
		anySel += "," + match
	}
	anySel += "}"
	return map[string]string{
		"compared":      "sum by (target, route) (" + sel(verdict.MetricCompared) + ")",
		"differing":     "sum by (target, route) (" + sel(verdict.MetricDiffering) + ")",
		"differences":   "sum by (target, route, kind) (" + sel(verdict.MetricDifferences) + ")",
		"noise":         "sum by (target, kind) (" + sel(verdict.MetricNoise) + ")",
		"uncompared":    "sum by (target, reason) (" + sel(verdict.MetricUncompared) + ")",
		"buckets":       "sum by (target, route, side, le) (" + sel(verdict.MetricLatency+"_bucket") + ")",
		"sum":           "sum by (target, route, side) (" + sel(verdict.MetricLatency+"_sum") + ")",
		"receivers":     "count(count by (job, instance) (" + anySel + "))",
		"timeline":      "sum(" + sel(verdict.MetricCompared) + ")",
		"timeline_diff": "sum(" + sel(verdict.MetricDiffering) + ")",
		"timeline_kind": "sum by (kind) (" + sel(verdict.MetricDifferences) + ")",
	}
}

// promSample is one series of an instant vector or a range matrix.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  []json.RawMessage `json:"value"`  // [time, "value"]
	Values [][]any           `json:"values"` // [[time, "value"], ...]
}

type promResponse struct {
	Status    string   `json:"status"`
	ErrorType string   `json:"errorType"`
	Error     string   `json:"error"`
	Warnings  []string `json:"warnings"`
	Data      struct {
		ResultType string       `json:"resultType"`
		Result     []promSample `json:"result"`
	} `json:"data"`
}

// promClient runs queries against one server.
type promClient struct {
	client *http.Client
	base   string
}

func (p promClient) get(ctx context.Context, path string, params url.Values) (*promResponse, error) {
	u := strings.TrimRight(p.base, "/") + path + "?" + params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r, err := parsePromResponse(io.LimitReader(resp.Body, maxPromResponse))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", resp.Status, err)
	}
	return r, nil
}

// parsePromResponse decodes one answer of the Prometheus HTTP API and turns
// an error answer into an error.
func parsePromResponse(r io.Reader) (*promResponse, error) {
	var pr promResponse
	if err := json.NewDecoder(r).Decode(&pr); err != nil {
		return nil, fmt.Errorf("not a Prometheus API answer: %w", err)
	}
	if pr.Status != "success" {
		if pr.Error == "" {
			pr.Error = "status " + strconv.Quote(pr.Status)
		}
		return nil, fmt.Errorf("Prometheus error %s: %s", pr.ErrorType, pr.Error)
	}
	return &pr, nil
}

func (p promClient) query(ctx context.Context, q string, at time.Time) ([]promSample, error) {
	r, err := p.get(ctx, "/api/v1/query", url.Values{"query": {q}, "time": {formatPromTime(at)}})
	if err != nil {
		return nil, fmt.Errorf("--prometheus %s: query %s: %w", p.base, q, err)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("--prometheus %s: query %s: result type %q, want vector", p.base, q, r.Data.ResultType)
	}
	return r.Data.Result, nil
}

func (p promClient) queryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]promSample, error) {
	r, err := p.get(ctx, "/api/v1/query_range", url.Values{"query": {q}, "start": {formatPromTime(start)},
		"end": {formatPromTime(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}})
	if err != nil {
		return nil, fmt.Errorf("--prometheus %s: query %s: %w", p.base, q, err)
	}
	if r.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("--prometheus %s: query %s: result type %q, want matrix", p.base, q, r.Data.ResultType)
	}
	return r.Data.Result, nil
}

func formatPromTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// sampleValue reads an instant sample's value.
func sampleValue(s promSample) (float64, error) {
	if len(s.Value) != 2 {
		return 0, fmt.Errorf("sample %v: want [time, value]", s.Metric)
	}
	var v string
	if err := json.Unmarshal(s.Value[1], &v); err != nil {
		return 0, fmt.Errorf("sample %v: value: %w", s.Metric, err)
	}
	return parsePromFloat(v)
}

func parsePromFloat(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", v, err)
	}
	return f, nil
}

// count turns a summed counter into an exact count; counters are integers
// and sums of integers stay exact in a float64 below 2^53.
func count(f float64) (uint64, error) {
	if math.IsNaN(f) || f < 0 || f > 1<<53 {
		return 0, fmt.Errorf("counter value %g is not a count", f)
	}
	return uint64(math.Round(f)), nil
}

// FromPrometheus builds the fleet's /verdict document from a Prometheus
// server that scrapes every receiver, with the PromQL of Queries evaluated
// at one instant: compared, differing and differences by route, noise and
// uncompared, latency buckets summed by route, side and le. Noise fields and
// ignore rules are not in the metrics and stay empty. A server that has no
// shadowtap_verdict_* series at all is an error (it scrapes no receiver, or
// the match is wrong), not a document with nothing compared.
func FromPrometheus(ctx context.Context, client *http.Client, base, match string, now time.Time) (*verdict.Document, error) {
	p := promClient{client: client, base: base}
	q := Queries(match)
	d := &verdict.Document{Schema: verdict.SchemaVersion, Generated: now.UTC(), Routes: []verdict.Route{},
		Totals: verdict.Totals{Kinds: map[verdict.Kind]uint64{}, Noise: map[verdict.Kind]uint64{}, Uncompared: map[string]uint64{}}}

	rec, err := p.query(ctx, q["receivers"], now)
	if err != nil {
		return nil, err
	}
	if len(rec) == 0 {
		where := ""
		if match != "" {
			where = " matching {" + match + "}"
		}
		return nil, fmt.Errorf("--prometheus %s: no shadowtap_verdict_* series%s: is it scraping the receivers' --metrics-addr?", base, where)
	}
	n, err := sampleValue(rec[0])
	if err != nil {
		return nil, fmt.Errorf("--prometheus %s: %w", base, err)
	}
	d.Receivers = int(n)

	type key struct{ target, route string }
	routes := map[key]*verdict.Route{}
	route := func(m map[string]string) *verdict.Route {
		k := key{m["target"], m["route"]}
		r := routes[k]
		if r == nil {
			r = &verdict.Route{Target: k.target, Route: k.route, Kinds: map[verdict.Kind]uint64{}, Noise: map[verdict.Kind]uint64{},
				NoiseFields: []verdict.NoiseField{}}
			routes[k] = r
		}
		return r
	}
	each := func(name string, f func(promSample, uint64) error) error {
		res, err := p.query(ctx, q[name], now)
		if err != nil {
			return err
		}
		for _, s := range res {
			v, err := sampleValue(s)
			if err == nil {
				var c uint64
				if c, err = count(v); err == nil {
					err = f(s, c)
				}
			}
			if err != nil {
				return fmt.Errorf("--prometheus %s: query %s: %w", base, q[name], err)
			}
		}
		return nil
	}
	steps := []struct {
		name string
		f    func(promSample, uint64) error
	}{
		{"compared", func(s promSample, c uint64) error { route(s.Metric).Exchanges = c; d.Totals.Exchanges += c; return nil }},
		{"differing", func(s promSample, c uint64) error { route(s.Metric).Differing = c; d.Totals.Differing += c; return nil }},
		{"differences", func(s promSample, c uint64) error {
			k := verdict.Kind(s.Metric["kind"])
			route(s.Metric).Kinds[k] = c
			d.Totals.Kinds[k] += c
			return nil
		}},
		{"noise", func(s promSample, c uint64) error { d.Totals.Noise[verdict.Kind(s.Metric["kind"])] += c; return nil }},
		{"uncompared", func(s promSample, c uint64) error { d.Totals.Uncompared[s.Metric["reason"]] += c; return nil }},
	}
	for _, st := range steps {
		if err := each(st.name, st.f); err != nil {
			return nil, err
		}
	}

	// Latency: cumulative buckets by le, per route and side.
	type hkey struct{ target, route, side string }
	buckets := map[hkey]map[float64]uint64{}
	if err := each("buckets", func(s promSample, c uint64) error {
		le, err := strconv.ParseFloat(s.Metric["le"], 64)
		if err != nil {
			return fmt.Errorf("bucket le %q: %w", s.Metric["le"], err)
		}
		k := hkey{s.Metric["target"], s.Metric["route"], s.Metric["side"]}
		if buckets[k] == nil {
			buckets[k] = map[float64]uint64{}
		}
		buckets[k][le] = c
		return nil
	}); err != nil {
		return nil, err
	}
	sums := map[hkey]float64{}
	sumRes, err := p.query(ctx, q["sum"], now)
	if err != nil {
		return nil, err
	}
	for _, s := range sumRes {
		v, err := sampleValue(s)
		if err != nil {
			return nil, fmt.Errorf("--prometheus %s: query %s: %w", base, q["sum"], err)
		}
		sums[hkey{s.Metric["target"], s.Metric["route"], s.Metric["side"]}] = v
	}
	for k, cum := range buckets {
		h, err := histogramFromBuckets(cum, sums[k])
		if err != nil {
			return nil, fmt.Errorf("--prometheus %s: %s latency of %s %s: %w", base, k.side, k.target, k.route, err)
		}
		r := route(map[string]string{"target": k.target, "route": k.route})
		switch k.side {
		case "production":
			r.Latency.Production = h
		case "shadow":
			r.Latency.Shadow = h
		default:
			return nil, fmt.Errorf("--prometheus %s: %s: side %q, want production or shadow", base, verdict.MetricLatency, k.side)
		}
	}

	for _, r := range routes {
		d.Routes = append(d.Routes, *r)
	}
	tl, err := timeline(ctx, p, q, now)
	if err != nil {
		return nil, err
	}
	d.Timeline = tl
	for _, m := range tl {
		if m.Exchanges > 0 {
			d.Started = m.Start
			break
		}
	}
	// Merge sorts, fills missing histograms and the quantiles.
	out, err := verdict.Merge(d)
	if err != nil {
		return nil, fmt.Errorf("--prometheus %s: %w", base, err)
	}
	out.Receivers = d.Receivers
	return out, nil
}

// histogramFromBuckets turns Prometheus's cumulative buckets (le -> count)
// into a Histogram; the finite bounds must be LatencyBounds.
func histogramFromBuckets(cum map[float64]uint64, sum float64) (verdict.Histogram, error) {
	h := verdict.NewHistogram()
	les := make([]float64, 0, len(cum))
	for le := range cum {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) != len(h.Bounds)+1 || !math.IsInf(les[len(les)-1], 1) {
		return h, fmt.Errorf("%d buckets, want shadowtap's %d bounds and +Inf", len(les), len(h.Bounds))
	}
	var prev uint64
	for i, le := range les {
		if i < len(h.Bounds) && le != h.Bounds[i] {
			return h, fmt.Errorf("bucket bound %g where shadowtap has %g", le, h.Bounds[i])
		}
		c := cum[le]
		if c < prev {
			return h, fmt.Errorf("cumulative bucket le=%g has %d, below the previous %d", le, c, prev)
		}
		h.Counts[i] = c - prev
		prev = c
	}
	h.Count = prev
	h.Sum = sum
	return h, nil
}

// timeline reads the last hour of compared and differing exchanges per
// minute (increase of the summed counters between steps; a reset counts
// what the counter holds after it).
func timeline(ctx context.Context, p promClient, q map[string]string, now time.Time) ([]verdict.Minute, error) {
	end := now.Truncate(time.Minute)
	start := end.Add(-timelineMinutes * time.Minute)
	series := func(name string) (map[string]map[int64]float64, error) {
		res, err := p.queryRange(ctx, q[name], start, end, time.Minute)
		if err != nil {
			return nil, err
		}
		out := map[string]map[int64]float64{}
		for _, s := range res {
			pts := map[int64]float64{}
			for _, v := range s.Values {
				if len(v) != 2 {
					return nil, errors.New("range sample: want [time, value]")
				}
				ts, ok1 := v[0].(float64)
				str, ok2 := v[1].(string)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("range sample %v: want [time, \"value\"]", v)
				}
				f, err := parsePromFloat(str)
				if err != nil {
					return nil, err
				}
				pts[int64(math.Round(ts))] = f
			}
			out[s.Metric["kind"]] = pts
		}
		return out, nil
	}
	compared, err := series("timeline")
	if err != nil {
		return nil, err
	}
	differing, err := series("timeline_diff")
	if err != nil {
		return nil, err
	}
	kinds, err := series("timeline_kind")
	if err != nil {
		return nil, err
	}
	inc := func(pts map[int64]float64, t int64) uint64 {
		cur, ok := pts[t]
		if !ok {
			return 0
		}
		prev, ok := pts[t-60]
		if !ok {
			return 0 // the first point: no earlier sample to count from
		}
		if cur < prev {
			prev = 0
		}
		c, _ := count(cur - prev)
		return c
	}
	var out []verdict.Minute
	for t := start.Add(time.Minute); !t.After(end); t = t.Add(time.Minute) {
		ts := t.Unix()
		m := verdict.Minute{Start: t.Add(-time.Minute).UTC(), Kinds: map[verdict.Kind]uint64{}}
		m.Exchanges = inc(compared[""], ts)
		m.Differing = inc(differing[""], ts)
		for k, pts := range kinds {
			if c := inc(pts, ts); c > 0 {
				m.Kinds[verdict.Kind(k)] = c
			}
		}
		if m.Exchanges > 0 || len(out) > 0 {
			out = append(out, m)
		}
	}
	// Trailing empty minutes stay: they say the traffic stopped.
	return out, nil
}
