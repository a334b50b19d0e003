package verdict

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// obs is one compared exchange as a test builds documents from them.
type obs struct {
	target, route string
	at            time.Time
	kinds         []Kind
	noise         []NoiseField // Count ignored: each adds 1
	prod, shadow  time.Duration
}

// docOf builds the document one receiver that saw exactly these exchanges
// would serve: the reference Merge must reproduce from parts.
func docOf(started time.Time, xs []obs) *Document {
	d := &Document{Schema: SchemaVersion, Started: started, Generated: started.Add(time.Hour), Receivers: 1,
		Totals: Totals{Kinds: map[Kind]uint64{}, Noise: map[Kind]uint64{}, Uncompared: map[string]uint64{}}}
	idx := map[[2]string]int{}
	minutes := map[time.Time]int{}
	for _, x := range xs {
		k := [2]string{x.target, x.route}
		i, ok := idx[k]
		if !ok {
			i = len(d.Routes)
			idx[k] = i
			d.Routes = append(d.Routes, Route{Target: x.target, Route: x.route, Kinds: map[Kind]uint64{}, Noise: map[Kind]uint64{},
				Latency: RouteLatency{Production: NewHistogram(), Shadow: NewHistogram()}})
		}
		r := &d.Routes[i]
		r.Exchanges++
		d.Totals.Exchanges++
		m := x.at.UTC().Truncate(time.Minute)
		mi, ok := minutes[m]
		if !ok {
			mi = len(d.Timeline)
			minutes[m] = mi
			d.Timeline = append(d.Timeline, Minute{Start: m, Kinds: map[Kind]uint64{}})
		}
		d.Timeline[mi].Exchanges++
		if len(x.kinds) > 0 {
			r.Differing++
			d.Totals.Differing++
			d.Timeline[mi].Differing++
		}
		for _, k := range x.kinds {
			r.Kinds[k]++
			d.Totals.Kinds[k]++
			d.Timeline[mi].Kinds[k]++
		}
		for _, f := range x.noise {
			r.Noise[f.Kind]++
			d.Totals.Noise[f.Kind]++
			found := false
			for j := range r.NoiseFields {
				g := &r.NoiseFields[j]
				if g.Kind == f.Kind && g.Field == f.Field && g.Source == f.Source {
					g.Count++
					found = true
				}
			}
			if !found {
				f.Count = 1
				r.NoiseFields = append(r.NoiseFields, f)
			}
		}
		r.Latency.Production.Observe(x.prod)
		r.Latency.Shadow.Observe(x.shadow)
	}
	for i := range d.Routes {
		d.Routes[i].Latency.Production.Finish()
		d.Routes[i].Latency.Shadow.Finish()
	}
	return d
}

func randomObs(rng *rand.Rand, n int, t0 time.Time) []obs {
	routes := []string{"GET /", "GET /users/{id}", "GET /login", "HEAD /static/{file}", "other"}
	targets := []string{"http://shadow-a:8080", "http://shadow-b:8080"}
	kinds := ExchangeKinds()
	fields := []NoiseField{{Kind: KindHeader, Field: "X-Build", Source: "baseline"}, {Kind: KindBody, Field: "$.now", Source: "baseline-exchange"}}
	xs := make([]obs, n)
	for i := range xs {
		x := obs{target: targets[rng.IntN(len(targets))], route: routes[rng.IntN(len(routes))],
			at:   t0.Add(time.Duration(rng.IntN(5*60)) * time.Second),
			prod: time.Duration(rng.ExpFloat64() * float64(5*time.Millisecond)), shadow: time.Duration(rng.ExpFloat64() * float64(8*time.Millisecond))}
		if rng.IntN(4) == 0 {
			for _, k := range kinds {
				if rng.IntN(3) == 0 {
					x.kinds = append(x.kinds, k)
				}
			}
		}
		if rng.IntN(5) == 0 {
			x.noise = append(x.noise, fields[rng.IntN(len(fields))])
		}
		xs[i] = x
	}
	return xs
}

// canonical makes two documents comparable: JSON round trip, then routes'
// noise fields and timeline order already sorted by Merge; Generated and
// Receivers are compared by the caller.
func canonical(t *testing.T, d *Document) string {
	t.Helper()
	c := *d
	c.Generated, c.Receivers = time.Time{}, 0
	// Sums of float seconds depend on the order of addition: compared to
	// the microsecond; counts and buckets are compared exactly.
	c.Routes = append([]Route(nil), d.Routes...)
	for i := range c.Routes {
		l := &c.Routes[i].Latency
		l.Production.Sum = math.Round(l.Production.Sum * 1e6)
		l.Shadow.Sum = math.Round(l.Shadow.Sum * 1e6)
	}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMergeEqualsOneReceiver checks what the fleet view relies on: the
// traffic split across receivers in any way, their documents merged, gives
// exactly the document of one receiver that saw all of it — counts,
// histograms, quantiles, timeline and noise fields.
func TestMergeEqualsOneReceiver(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	for _, parts := range []int{1, 2, 3, 7} {
		t.Run(fmt.Sprintf("%d receivers", parts), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(parts), 42))
			all := randomObs(rng, 3000, t0)
			split := make([][]obs, parts)
			for _, x := range all {
				i := rng.IntN(parts)
				split[i] = append(split[i], x)
			}
			docs := make([]*Document, parts)
			for i := range split {
				docs[i] = docOf(t0.Add(time.Duration(i)*time.Second), split[i])
			}
			want, err := Merge(docOf(t0, all)) // Merge of one: the same sorting
			if err != nil {
				t.Fatal(err)
			}
			got, err := Merge(docs...)
			if err != nil {
				t.Fatal(err)
			}
			if got.Receivers != parts {
				t.Errorf("Receivers = %d, want %d", got.Receivers, parts)
			}
			if !got.Started.Equal(t0) {
				t.Errorf("Started = %v, want the earliest %v", got.Started, t0)
			}
			if g, w := canonical(t, got), canonical(t, want); g != w {
				t.Errorf("merged document differs from one receiver's:\n got %s\nwant %s", g, w)
			}
			for _, r := range got.Routes {
				if r.Latency.Production.P99 == 0 || r.Latency.Shadow.P50 == 0 {
					t.Errorf("%s %s: quantiles not filled: %+v", r.Target, r.Route, r.Latency)
				}
			}
		})
	}
}

func TestMergeFields(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	a := docOf(t0.Add(time.Minute), []obs{{target: "s", route: "GET /a", at: t0.Add(30 * time.Second), kinds: []Kind{KindCookie}}})
	a.Totals.Uncompared = map[string]uint64{"busy": 2, "gap": 1}
	a.Ignored = Ignored{Headers: []string{"Date", "X-Build"}, JSONPaths: []string{"$.now"}, Baseline: "http://old:80"}
	b := docOf(t0, []obs{{target: "s", route: "GET /a", at: t0.Add(90 * time.Second)}, {target: "s", route: "GET /b", at: t0.Add(20 * time.Second), kinds: []Kind{KindStatus, KindBody}}})
	b.Receivers = 2
	b.Generated = t0.Add(2 * time.Hour)
	b.Totals.Uncompared = map[string]uint64{"busy": 3}
	b.Ignored = Ignored{Headers: []string{"Date", "Server"}, JSONPaths: []string{"GET /b=$.x"}, Baseline: "http://old:80"}
	zero := &Document{Schema: SchemaVersion} // Receivers 0, no Started: counts as one receiver

	got, err := Merge(a, b, zero)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"receivers", got.Receivers, 4},
		{"started", got.Started, t0},
		{"generated", got.Generated, t0.Add(2 * time.Hour)},
		{"exchanges", got.Totals.Exchanges, uint64(3)},
		{"differing", got.Totals.Differing, uint64(2)},
		{"kinds", got.Totals.Kinds, map[Kind]uint64{KindCookie: 1, KindStatus: 1, KindBody: 1}},
		{"uncompared", got.Totals.Uncompared, map[string]uint64{"busy": 5, "gap": 1}},
		{"routes", len(got.Routes), 2},
		{"route a exchanges", got.Routes[0].Exchanges, uint64(2)},
		{"route order", got.Routes[0].Route + "," + got.Routes[1].Route, "GET /a,GET /b"},
		{"timeline minutes", len(got.Timeline), 2},
		{"first minute", got.Timeline[0].Start, t0},
		{"first minute exchanges", got.Timeline[0].Exchanges, uint64(2)},
		{"ignored headers", got.Ignored.Headers, []string{"Date", "X-Build", "Server"}},
		{"ignored paths", got.Ignored.JSONPaths, []string{"$.now", "GET /b=$.x"}},
		{"baseline", got.Ignored.Baseline, "http://old:80"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestMergeDoesNotModify checks that merging leaves the inputs as they were
// and that the result shares no histogram memory with them.
func TestMergeDoesNotModify(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	xs := randomObs(rand.New(rand.NewPCG(1, 2)), 200, t0)
	a, b := docOf(t0, xs[:100]), docOf(t0, xs[100:])
	before := canonical(t, a) + canonical(t, b)
	got, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if after := canonical(t, a) + canonical(t, b); after != before {
		t.Fatal("Merge modified its inputs")
	}
	got.Routes[0].Latency.Production.Counts[0] += 1000
	got, err = Merge(a)
	if err != nil {
		t.Fatal(err)
	}
	if canonical(t, a)+canonical(t, b) != before {
		t.Fatal("the merged document shares histogram memory with an input")
	}
}

func TestMergeNoiseFieldsBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var docs []*Document
	for i := 0; i < 30; i++ {
		var xs []obs
		for j := 0; j <= i; j++ { // field i is discarded i+1 times
			xs = append(xs, obs{target: "s", route: "GET /", at: t0, noise: []NoiseField{{Kind: KindHeader, Field: fmt.Sprintf("X-F%02d", i), Source: "baseline"}}})
		}
		docs = append(docs, docOf(t0, xs))
	}
	got, err := Merge(docs...)
	if err != nil {
		t.Fatal(err)
	}
	f := got.Routes[0].NoiseFields
	if len(f) != maxNoiseFields {
		t.Fatalf("%d noise fields, want %d", len(f), maxNoiseFields)
	}
	if f[0].Field != "X-F29" || f[0].Count != 30 || f[19].Field != "X-F10" {
		t.Errorf("noise fields not the most frequent first: %+v", f)
	}
	if got.Routes[0].Noise[KindHeader] != 30*31/2 {
		t.Errorf("route noise = %d, want every discarded difference counted", got.Routes[0].Noise[KindHeader])
	}
}

func TestMergeErrors(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	good := func() *Document {
		return docOf(t0, []obs{{target: "s", route: "GET /", at: t0, prod: time.Millisecond}})
	}
	otherBounds := good()
	otherBounds.Routes[0].Latency.Production.Bounds = append([]float64(nil), otherBounds.Routes[0].Latency.Production.Bounds...)
	otherBounds.Routes[0].Latency.Production.Bounds[3] = 0.004
	fewerBuckets := good()
	fewerBuckets.Routes[0].Latency.Shadow.Bounds = []float64{0.1, 1}
	fewerBuckets.Routes[0].Latency.Shadow.Counts = []uint64{1, 0, 0}
	newer := good()
	newer.Schema = SchemaVersion + 1
	tests := []struct {
		name string
		docs []*Document
		want string
	}{
		{"none", nil, "none given"},
		{"nil document", []*Document{good(), nil}, "document 2 is missing"},
		{"other schema", []*Document{good(), newer}, fmt.Sprintf("schema %d", SchemaVersion+1)},
		{"other bounds", []*Document{good(), otherBounds}, "production latency"},
		{"other bucket count", []*Document{good(), fewerBuckets}, "shadow latency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Merge(tc.docs...)
			if err == nil {
				t.Fatalf("Merge succeeded (%d routes), want an error naming %q", len(got.Routes), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}
