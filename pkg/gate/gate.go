// Package gate judges a /verdict document against a canary pipeline's
// criteria. It sits at the very end of the data path:
//
//	verdict engine --> /verdict, --verdict-out, Prometheus --> pkg/fleet (one Document)
//	    --> gate (pass, fail, not enough data) --> `shadowtap verdict` exit status, report
//
// The same Judge decides for one receiver, several merged, or a whole fleet
// read through Prometheus, so a pipeline's answer never depends on where the
// figures came from.
package gate

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// SchemaVersion is the version of Result's JSON form (`shadowtap verdict
// --json`). A change that removes or renames a field bumps it.
const SchemaVersion = 1

// Outcome is the decision.
type Outcome string

// The outcomes and their exit statuses.
const (
	Pass          Outcome = "pass"            // exit 0
	Fail          Outcome = "fail"            // exit 1
	NotEnoughData Outcome = "not_enough_data" // exit 3
	Error         Outcome = "error"           // exit 2: usage or source error, never judged
)

// ExitStatus is the exit status of `shadowtap verdict` for the outcome.
func (o Outcome) ExitStatus() int {
	switch o {
	case Pass:
		return 0
	case Fail:
		return 1
	case NotEnoughData:
		return 3
	}
	return 2
}

// Criterion names, as in Failure.Criterion (they are the flags' names).
const (
	CritDiffRate     = "max-diff-rate"
	CritKind         = "max"
	CritLatencyRatio = "max-latency-ratio"
)

// Criteria are the thresholds of a gate. Rates are percentages of compared
// exchanges; a rate equal to its threshold passes.
type Criteria struct {
	MaxDiffRate     float64                  // --max-diff-rate: differing / compared, percent
	MaxKind         map[verdict.Kind]float64 // --max KIND=PCT: differing by that kind / compared, percent
	MaxLatencyRatio float64                  // --max-latency-ratio: shadow / production quantile per route; 0 = not judged
	LatencyQuantile float64                  // --latency-quantile, 0 < Q < 1
	// LatencySlack (--latency-slack, seconds): a route's latency fails only
	// when the shadow is also this much slower than production, so that
	// ratios of sub-millisecond latencies do not fail a gate.
	LatencySlack      float64
	MinExchanges      uint64         // --min-exchanges: fewer compared (after the route filter) = not enough data
	MinRouteExchanges uint64         // --min-route-exchanges: routes judged on their own from this many
	RouteFilter       *regexp.Regexp // --route-filter: only matching routes count; nil = all
}

// DefaultCriteria returns the defaults of `shadowtap verdict`.
func DefaultCriteria() Criteria {
	return Criteria{MaxDiffRate: 1, MaxKind: map[verdict.Kind]float64{}, LatencyQuantile: 0.99,
		MinExchanges: 1000, MinRouteExchanges: 100}
}

// ParseMax parses a --max value, "KIND=PCT" (e.g. "cookie=0").
func ParseMax(s string) (verdict.Kind, float64, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", 0, fmt.Errorf("--max %q: want KIND=PCT, e.g. cookie=0", s)
	}
	kind := verdict.Kind(strings.TrimSpace(k))
	known := false
	var names []string
	for _, x := range verdict.ExchangeKinds() {
		names = append(names, string(x))
		known = known || x == kind
	}
	if kind == verdict.KindLatency {
		return "", 0, fmt.Errorf("--max %q: latency is judged with --max-latency-ratio", s)
	}
	if !known {
		return "", 0, fmt.Errorf("--max %q: unknown kind %q (kinds: %s)", s, kind, strings.Join(names, ", "))
	}
	pct, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil || pct < 0 || pct > 100 || math.IsNaN(pct) {
		return "", 0, fmt.Errorf("--max %q: %q is not a percentage between 0 and 100", s, v)
	}
	return kind, pct, nil
}

// Validate checks the criteria's ranges.
func (c Criteria) Validate() error {
	switch {
	case c.MaxDiffRate < 0 || c.MaxDiffRate > 100 || math.IsNaN(c.MaxDiffRate):
		return fmt.Errorf("--max-diff-rate %g: want a percentage between 0 and 100", c.MaxDiffRate)
	case c.MaxLatencyRatio < 0 || math.IsNaN(c.MaxLatencyRatio) || math.IsInf(c.MaxLatencyRatio, 0):
		return fmt.Errorf("--max-latency-ratio %g: want a ratio above 0 (or 0 to not judge latency)", c.MaxLatencyRatio)
	case !(c.LatencyQuantile > 0 && c.LatencyQuantile < 1):
		return fmt.Errorf("--latency-quantile %g: want a quantile between 0 and 1, e.g. 0.99", c.LatencyQuantile)
	case c.LatencySlack < 0 || math.IsNaN(c.LatencySlack):
		return fmt.Errorf("--latency-slack %gs: cannot be negative", c.LatencySlack)
	}
	for k, v := range c.MaxKind {
		if v < 0 || v > 100 || math.IsNaN(v) {
			return fmt.Errorf("--max %s=%g: want a percentage between 0 and 100", k, v)
		}
	}
	return nil
}

// Failure is one failed criterion.
type Failure struct {
	Criterion string `json:"criterion"` // CritDiffRate, CritKind or CritLatencyRatio
	Target    string `json:"target"`    // "" when judged over every target
	Route     string `json:"route"`     // "" when judged over all routes
	Kind      string `json:"kind"`      // a difference kind, "latency", or "" for the differing share
	// Figure is what was measured: a percentage for rates, a ratio for latency.
	Figure    float64 `json:"figure"`
	Threshold float64 `json:"threshold"`
	// Count and Exchanges are the rate's numerator and denominator (for
	// latency: 0 and the smaller of the two histograms' counts).
	Count     uint64 `json:"count"`
	Exchanges uint64 `json:"exchanges"`
	// Production and Shadow are the quantiles in seconds (latency only).
	Production float64 `json:"production_seconds,omitempty"`
	Shadow     float64 `json:"shadow_seconds,omitempty"`
	// Top names the routes contributing most to a failure over all routes.
	Top     []RouteCount `json:"top,omitempty"`
	Message string       `json:"message"` // the line `shadowtap verdict` prints
}

// RouteCount is a route's share of an all-routes failure.
type RouteCount struct {
	Target string `json:"target"`
	Route  string `json:"route"`
	Count  uint64 `json:"count"`
}

// RouteResult is one route's figures as judged.
type RouteResult struct {
	Target       string                  `json:"target"`
	Route        string                  `json:"route"`
	Exchanges    uint64                  `json:"exchanges"`
	Differing    uint64                  `json:"differing"`
	DifferingPct float64                 `json:"differing_pct"`
	Kinds        map[verdict.Kind]uint64 `json:"kinds"`
	// Latency at the criteria's quantile, seconds (0 without observations);
	// Ratio is shadow / production (0 when either is missing).
	Production float64 `json:"production_seconds"`
	Shadow     float64 `json:"shadow_seconds"`
	Ratio      float64 `json:"latency_ratio"`
	// Judged: the route had --min-route-exchanges and was judged on its own
	// (rates and latency); Failed: one of its criteria failed.
	Judged bool `json:"judged"`
	Failed bool `json:"failed"`

	route *verdict.Route
}

// Doc is the route's entry in the judged document.
func (r *RouteResult) Doc() *verdict.Route { return r.route }

// Result is a decision with its reasons: `shadowtap verdict --json` prints
// it, and the reports show it.
type Result struct {
	Schema       int                     `json:"schema"` // SchemaVersion
	Verdict      Outcome                 `json:"verdict"`
	ExitStatus   int                     `json:"exit_status"`
	Reason       string                  `json:"reason"` // one line
	Receivers    int                     `json:"receivers"`
	Exchanges    uint64                  `json:"exchanges"` // compared, after the route filter
	Differing    uint64                  `json:"differing"`
	DifferingPct float64                 `json:"differing_pct"`
	Kinds        map[verdict.Kind]uint64 `json:"kinds"`
	Criteria     CriteriaJSON            `json:"criteria"`
	Failures     []Failure               `json:"failures"`
	Routes       []RouteResult           `json:"routes"` // by differing share, highest first
	Error        string                  `json:"error,omitempty"`
}

// CriteriaJSON is Criteria as written in a Result.
type CriteriaJSON struct {
	MaxDiffRate       float64            `json:"max_diff_rate"`
	Max               map[string]float64 `json:"max"`
	MaxLatencyRatio   float64            `json:"max_latency_ratio"`
	LatencyQuantile   float64            `json:"latency_quantile"`
	LatencySlack      float64            `json:"latency_slack_seconds"`
	MinExchanges      uint64             `json:"min_exchanges"`
	MinRouteExchanges uint64             `json:"min_route_exchanges"`
	RouteFilter       string             `json:"route_filter"`
}

// JSON returns the criteria as written in a Result.
func (c Criteria) JSON() CriteriaJSON {
	j := CriteriaJSON{MaxDiffRate: c.MaxDiffRate, Max: map[string]float64{}, MaxLatencyRatio: c.MaxLatencyRatio,
		LatencyQuantile: c.LatencyQuantile, LatencySlack: c.LatencySlack, MinExchanges: c.MinExchanges, MinRouteExchanges: c.MinRouteExchanges}
	for k, v := range c.MaxKind {
		j.Max[string(k)] = v
	}
	if c.RouteFilter != nil {
		j.RouteFilter = c.RouteFilter.String()
	}
	return j
}

// ErrorResult is the Result of a run that could not judge (exit 2).
func ErrorResult(c Criteria, err error) *Result {
	return &Result{Schema: SchemaVersion, Verdict: Error, ExitStatus: Error.ExitStatus(), Reason: err.Error(),
		Error: err.Error(), Kinds: map[verdict.Kind]uint64{}, Criteria: c.JSON(), Failures: []Failure{}, Routes: []RouteResult{}}
}

// Judge decides: not enough data when fewer than MinExchanges were compared
// (on the routes the filter keeps); otherwise fail when any criterion fails,
// over all routes or on a route with at least MinRouteExchanges; else pass.
func Judge(doc *verdict.Document, c Criteria) *Result {
	res := &Result{Schema: SchemaVersion, Receivers: doc.Receivers, Kinds: map[verdict.Kind]uint64{},
		Criteria: c.JSON(), Failures: []Failure{}, Routes: []RouteResult{}}
	targets := map[string]bool{}
	for i := range doc.Routes {
		r := &doc.Routes[i]
		if c.RouteFilter != nil && !c.RouteFilter.MatchString(r.Route) {
			continue
		}
		targets[r.Target] = true
		rr := RouteResult{Target: r.Target, Route: r.Route, Exchanges: r.Exchanges, Differing: r.Differing,
			DifferingPct: pct(r.Differing, r.Exchanges), Kinds: map[verdict.Kind]uint64{}, route: r}
		for k, n := range r.Kinds {
			rr.Kinds[k] = n
			res.Kinds[k] += n
		}
		rr.Production = quantile(&r.Latency.Production, c.LatencyQuantile)
		rr.Shadow = quantile(&r.Latency.Shadow, c.LatencyQuantile)
		if rr.Production > 0 && rr.Shadow > 0 {
			rr.Ratio = rr.Shadow / rr.Production
		}
		rr.Judged = r.Exchanges >= c.MinRouteExchanges && r.Exchanges > 0
		res.Exchanges += r.Exchanges
		res.Differing += r.Differing
		res.Routes = append(res.Routes, rr)
	}
	res.DifferingPct = pct(res.Differing, res.Exchanges)
	sort.SliceStable(res.Routes, func(i, j int) bool {
		a, b := res.Routes[i], res.Routes[j]
		switch {
		case a.DifferingPct != b.DifferingPct:
			return a.DifferingPct > b.DifferingPct
		case a.Exchanges != b.Exchanges:
			return a.Exchanges > b.Exchanges
		case a.Route != b.Route:
			return a.Route < b.Route
		}
		return a.Target < b.Target
	})

	if res.Exchanges < c.MinExchanges || res.Exchanges == 0 {
		res.Verdict = NotEnoughData
		res.ExitStatus = NotEnoughData.ExitStatus()
		res.Reason = fmt.Sprintf("not enough data: %d exchanges compared%s, --min-exchanges is %d",
			res.Exchanges, filterNote(c), c.MinExchanges)
		if n, why := uncompared(doc.Totals.Uncompared); n > 0 {
			res.Reason += fmt.Sprintf("; %d could not be compared (%s)", n, why)
		}
		return res
	}

	where := func(target, route string) string {
		if route == "" {
			return "all routes"
		}
		if len(targets) > 1 {
			return fmt.Sprintf("route %s on %s", route, target)
		}
		return "route " + route
	}
	kinds := sortedKinds(c.MaxKind)
	rate := func(crit string, kind verdict.Kind, threshold float64, count, exchanges uint64, target, route string, top func() []RouteCount) bool {
		// count/exchanges > threshold%, in integers where it matters: a
		// rate equal to the threshold passes.
		if float64(count)*100 <= threshold*float64(exchanges) {
			return false
		}
		f := Failure{Criterion: crit, Target: target, Route: route, Kind: string(kind), Figure: pct(count, exchanges),
			Threshold: threshold, Count: count, Exchanges: exchanges}
		what := "differing"
		if kind != "" {
			what = "differing by " + string(kind)
		}
		name := crit
		if kind != "" {
			name = crit + " " + string(kind)
		}
		f.Message = fmt.Sprintf("%s: %s: %s %s (%d of %d exchanges), threshold %s%%", name, where(target, route), what,
			FormatPct(f.Figure), count, exchanges, strconv.FormatFloat(threshold, 'f', -1, 64))
		if top != nil {
			f.Top = top()
			if len(f.Top) > 0 {
				var parts []string
				for _, t := range f.Top {
					parts = append(parts, fmt.Sprintf("%s %d", t.Route, t.Count))
				}
				f.Message += "; most on " + strings.Join(parts, ", ")
			}
		}
		res.Failures = append(res.Failures, f)
		return true
	}
	topBy := func(count func(*RouteResult) uint64) func() []RouteCount {
		return func() []RouteCount {
			var out []RouteCount
			for i := range res.Routes {
				if n := count(&res.Routes[i]); n > 0 {
					out = append(out, RouteCount{Target: res.Routes[i].Target, Route: res.Routes[i].Route, Count: n})
				}
			}
			sort.SliceStable(out, func(i, j int) bool { return out[i].Count > out[j].Count })
			if len(out) > 3 {
				out = out[:3]
			}
			return out
		}
	}

	// Over all routes.
	rate(CritDiffRate, "", c.MaxDiffRate, res.Differing, res.Exchanges, "", "", topBy(func(r *RouteResult) uint64 { return r.Differing }))
	for _, k := range kinds {
		rate(CritKind, k, c.MaxKind[k], res.Kinds[k], res.Exchanges, "", "", topBy(func(r *RouteResult) uint64 { return r.Kinds[k] }))
	}
	// Route by route, in the table's order.
	for i := range res.Routes {
		r := &res.Routes[i]
		if !r.Judged {
			continue
		}
		failed := rate(CritDiffRate, "", c.MaxDiffRate, r.Differing, r.Exchanges, r.Target, r.Route, nil)
		for _, k := range kinds {
			failed = rate(CritKind, k, c.MaxKind[k], r.Kinds[k], r.Exchanges, r.Target, r.Route, nil) || failed
		}
		r.Failed = failed
	}
	if c.MaxLatencyRatio > 0 {
		for i := range res.Routes {
			r := &res.Routes[i]
			n := min(r.route.Latency.Production.Count, r.route.Latency.Shadow.Count)
			if n < c.MinRouteExchanges || n == 0 || r.Ratio <= c.MaxLatencyRatio || r.Shadow-r.Production <= c.LatencySlack {
				continue
			}
			q := "p" + strconv.FormatFloat(c.LatencyQuantile*100, 'f', -1, 64)
			f := Failure{Criterion: CritLatencyRatio, Target: r.Target, Route: r.Route, Kind: string(verdict.KindLatency),
				Figure: r.Ratio, Threshold: c.MaxLatencyRatio, Exchanges: n, Production: r.Production, Shadow: r.Shadow}
			f.Message = fmt.Sprintf("%s: %s: %s shadow/production %.2f (%s / %s), threshold %s", CritLatencyRatio,
				where(r.Target, r.Route), q, r.Ratio, FormatSeconds(r.Shadow), FormatSeconds(r.Production),
				strconv.FormatFloat(c.MaxLatencyRatio, 'f', -1, 64))
			if c.LatencySlack > 0 {
				f.Message += " and slack " + FormatSeconds(c.LatencySlack)
			}
			res.Failures = append(res.Failures, f)
			r.Failed = true
		}
	}

	if len(res.Failures) > 0 {
		res.Verdict = Fail
		word := "criteria"
		if len(res.Failures) == 1 {
			word = "criterion"
		}
		res.Reason = fmt.Sprintf("%d %s failed on %d compared exchanges%s", len(res.Failures), word, res.Exchanges, filterNote(c))
	} else {
		res.Verdict = Pass
		res.Reason = fmt.Sprintf("every criterion passed on %d compared exchanges%s (%s differing)", res.Exchanges, filterNote(c), FormatPct(res.DifferingPct))
	}
	res.ExitStatus = res.Verdict.ExitStatus()
	return res
}

// uncompared sums the exchanges that could not be compared and names the
// reasons, most frequent first.
func uncompared(m map[string]uint64) (uint64, string) {
	var n uint64
	var reasons []string
	for r, c := range m {
		if c > 0 {
			n += c
			reasons = append(reasons, r)
		}
	}
	sort.Slice(reasons, func(i, j int) bool {
		if m[reasons[i]] != m[reasons[j]] {
			return m[reasons[i]] > m[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	var parts []string
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s %d", r, m[r]))
	}
	return n, strings.Join(parts, ", ")
}

func filterNote(c Criteria) string {
	if c.RouteFilter == nil {
		return ""
	}
	return fmt.Sprintf(" on routes matching %q", c.RouteFilter.String())
}

func sortedKinds(m map[verdict.Kind]float64) []verdict.Kind {
	var out []verdict.Kind
	for _, k := range verdict.ExchangeKinds() {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

func pct(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

func quantile(h *verdict.Histogram, q float64) float64 {
	if h.Count == 0 || len(h.Counts) == 0 {
		return 0
	}
	v := h.Quantile(q)
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// FormatPct writes a percentage for people: two decimals below 10 %, one
// above ("0.25%", "12.5%", "100%").
func FormatPct(p float64) string {
	switch {
	case p == 0:
		return "0%"
	case p >= 99.95:
		return strconv.FormatFloat(p, 'f', 0, 64) + "%"
	case p < 10:
		return strconv.FormatFloat(p, 'f', 2, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// FormatSeconds writes a latency for people in at most 6 characters
// ("850µs", "12ms", "1.25s"); "-" when zero.
func FormatSeconds(s float64) string {
	switch {
	case s <= 0 || math.IsNaN(s):
		return "-"
	case s < 0.001:
		return strconv.FormatFloat(s*1e6, 'f', 0, 64) + "µs"
	case s < 0.01:
		return strconv.FormatFloat(s*1e3, 'f', 1, 64) + "ms"
	case s < 1:
		return strconv.FormatFloat(s*1e3, 'f', 0, 64) + "ms"
	case s < 10:
		return strconv.FormatFloat(s, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(s, 'f', 0, 64) + "s"
}
