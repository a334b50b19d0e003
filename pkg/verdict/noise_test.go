package verdict

import (
	"fmt"
	"reflect"
	"testing"
)

func TestGeneralizeKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"body $.items[3].price", "body $.items[*].price"},
		{"body $[12][3]", "body $[*][*]"},
		{"body $['items'][3]['price']", "body $['items'][*]['price']"}, // Compare's normalized form
		{"body $['a[1]'][2]", "body $['a[1]'][*]"},
		{`body $['it\'s[3]'][4]`, `body $['it\'s[3]'][*]`},
		{"body $[]", "body $[]"},
		{"body $[1a]", "body $[1a]"},
		{"body $.a[", "body $.a["},
		{"body $.a[7", "body $.a[7"},
		{"body body", "body body"},
		{"header X-Thing[1]", "header X-Thing[1]"}, // only JSON paths
		{"status status", "status status"},
		{"cookie sid; Domain", "cookie sid; Domain"},
	}
	for _, tc := range tests {
		if got := generalizeKey(tc.in); got != tc.want {
			t.Errorf("generalizeKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// learnN has the baseline differ in diffs on n exchanges of a route.
func learnN(nb *noiseBook, n int, route string, diffs []Difference) (dropped int) {
	for range n {
		dropped = nb.learn(route, diffs)
	}
	return dropped
}

func TestNoiseBookLearn(t *testing.T) {
	n := newNoiseBook(2)
	learnN(n, minNoiseHits, "GET /a", []Difference{
		{Kind: KindBody, Field: "$.items[0].stock"},
		{Kind: KindHeader, Field: "Cache-Control"},
	})
	tests := []struct {
		route, key string
		want       bool
	}{
		{"GET /a", "body $.items[*].stock", true},
		{"GET /a", "header Cache-Control", true},
		{"GET /a", "header Vary", false},
		{"GET /b", "header Cache-Control", false}, // per route
	}
	for _, tc := range tests {
		if got := n.has(tc.route, tc.key); got != tc.want {
			t.Errorf("has(%q, %q) = %v, want %v", tc.route, tc.key, got, tc.want)
		}
	}
	// The shadow's difference at another index is the same learned field.
	kept, noise := filterNoise([]Difference{{Kind: KindBody, Field: "$.items[9].stock"}}, nil, n, "GET /a")
	if len(kept) != 0 || len(noise) != 1 || noise[0].source != NoiseBaseline || noise[0].gkey != "body $.items[*].stock" {
		t.Errorf("filterNoise: kept %v, noise %+v", kept, noise)
	}

	// Beyond MaxRoutes, the noise book shares one "other" set.
	learnN(n, minNoiseHits, "GET /b", []Difference{{Kind: KindStatus, Field: "status"}})
	learnN(n, minNoiseHits, "GET /c", []Difference{{Kind: KindHeader, Field: "Vary"}})
	if !n.has("GET /d", "header Vary") || n.has("GET /b", "header Vary") || !n.has("GET /b", "status status") {
		t.Error("routes beyond the cap should share the other set, and routes within keep their own")
	}

	// At most maxNoisePerRoute fields per route.
	var many []Difference
	for i := 0; i < maxNoisePerRoute+10; i++ {
		many = append(many, Difference{Kind: KindBody, Field: fmt.Sprintf("$.f%d", i)})
	}
	if dropped := learnN(n, minNoiseHits, "GET /a", many); dropped != 12 { // 2 already learned
		t.Errorf("dropped %d, want 12", dropped)
	}
	if len(n.fields("GET /a")) != maxNoisePerRoute {
		t.Errorf("%d fields on the route, want %d", len(n.fields("GET /a")), maxNoisePerRoute)
	}
}

func TestFilterNoise(t *testing.T) {
	n := newNoiseBook(10)
	learnN(n, minNoiseHits, "GET /a", []Difference{{Kind: KindHeader, Field: "Vary"}})
	diffs := []Difference{
		{Kind: KindHeader, Field: "Vary"},          // learned on the route
		{Kind: KindBody, Field: "$.n"},             // differs on the baseline too, this exchange
		{Kind: KindHeader, Field: "Vary"},          // twice: counted twice
		{Kind: KindStatus, Field: "status"},        // the shadow alone
		{Kind: KindBody, Field: "$.items[2].id"},   // exchange noise is exact: not $.items[1].id
		{Kind: KindCookie, Field: "sid; Domain"},   // the shadow alone
		{Kind: KindBody, Field: "$.items[1].id"},   // exact exchange noise
		{Kind: KindHeader, Field: "Cache-Control"}, // another route's noise does not count
	}
	exchange := map[string]bool{"body $.n": true, "body $.items[1].id": true, "header Vary": true}
	kept, noise := filterNoise(diffs, exchange, n, "GET /a")
	var keptKeys []string
	for _, d := range kept {
		keptKeys = append(keptKeys, d.Key())
	}
	wantKept := []string{"status status", "body $.items[2].id", "cookie sid; Domain", "header Cache-Control"}
	if !reflect.DeepEqual(keptKeys, wantKept) {
		t.Errorf("kept %v, want %v", keptKeys, wantKept)
	}
	var got []string
	for _, h := range noise {
		got = append(got, h.source+": "+h.gkey)
	}
	// The exchange's own noise is named first: it is the more precise reason.
	want := []string{"baseline-exchange: header Vary", "baseline-exchange: body $.n", "baseline-exchange: header Vary", "baseline-exchange: body $.items[*].id"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("noise %v, want %v", got, want)
	}
	_, noise = filterNoise(diffs[:1], nil, n, "GET /a")
	if len(noise) != 1 || noise[0].source != NoiseBaseline {
		t.Errorf("without exchange noise: %+v, want the route's", noise)
	}
}

func TestDocNoiseFields(t *testing.T) {
	counted := map[string]*NoiseField{
		"baseline header Vary":          {Kind: KindHeader, Field: "Vary", Count: 3, Source: NoiseBaseline},
		"baseline-exchange body $.n":    {Kind: KindBody, Field: "$.n", Count: 5, Source: NoiseBaselineExchange},
		"baseline-exchange header Vary": {Kind: KindHeader, Field: "Vary", Count: 1, Source: NoiseBaselineExchange},
	}
	learned := map[string]learnedField{
		"header Vary":     {kind: KindHeader, field: "Vary"},
		"header X-Served": {kind: KindHeader, field: "X-Served"},
	}
	got := docNoiseFields(counted, learned)
	want := []NoiseField{
		{Kind: KindBody, Field: "$.n", Count: 5, Source: NoiseBaselineExchange},
		{Kind: KindHeader, Field: "Vary", Count: 3, Source: NoiseBaseline},
		{Kind: KindHeader, Field: "Vary", Count: 1, Source: NoiseBaselineExchange},
		{Kind: KindHeader, Field: "X-Served", Count: 0, Source: NoiseBaseline}, // learned, nothing discarded yet
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("docNoiseFields:\n got %+v\nwant %+v", got, want)
	}
	for i := 0; i < 50; i++ {
		learned[fmt.Sprintf("header X-%d", i)] = learnedField{kind: KindHeader, field: fmt.Sprintf("X-%d", i)}
	}
	if got := docNoiseFields(counted, learned); len(got) != maxDocNoiseFields || got[0].Count != 5 {
		t.Errorf("%d fields (first %+v), want %d, most counted first", len(got), got[0], maxDocNoiseFields)
	}
}

// TestNoiseThreshold: a field becomes route noise only when the baseline
// differs in it on at least minNoiseHits exchanges and minNoisePercent of
// the route's, and stops being noise when that no longer holds.
func TestNoiseThreshold(t *testing.T) {
	status := []Difference{{Kind: KindStatus, Field: "status"}}
	n := newNoiseBook(10)
	n.learn("GET /a", status) // the baseline failed once
	if n.has("GET /a", "status status") {
		t.Fatal("one baseline failure made status noise for the route")
	}
	learnN(n, minNoiseHits-1, "GET /a", status)
	if !n.has("GET /a", "status status") {
		t.Fatalf("%d differing exchanges of %d: want noise", minNoiseHits, minNoiseHits)
	}
	// The baseline agrees from now on: once the differences fall below
	// minNoisePercent of the route's exchanges, they are no longer noise.
	need := minNoiseHits*100/minNoisePercent - minNoiseHits
	learnN(n, need, "GET /a", nil)
	if !n.has("GET /a", "status status") {
		t.Errorf("at exactly %d%%: want still noise", minNoisePercent)
	}
	n.learn("GET /a", nil)
	if n.has("GET /a", "status status") || len(n.fields("GET /a")) != 0 {
		t.Errorf("below %d%%: still noise", minNoisePercent)
	}
}
