package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

//go:embed report.html.tmpl
var htmlTemplate string

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":     gate.FormatPct,
	"secs":    gate.FormatSeconds,
	"count":   Count,
	"f":       func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"jsonpth": highlightField,
}).Parse(htmlTemplate))

// HTML limits: the page stays readable and small whatever the fleet.
const (
	htmlShareRoutes   = 15 // routes in the differing-share chart
	htmlLatencyRoutes = 12 // routes in the latency chart
	htmlExampleRoutes = 8  // routes with example differences
	htmlValueRunes    = 400
)

// WriteHTML writes the report as one self-contained page: no request
// leaves it (CSS, script and SVG charts inline; a Content-Security-Policy
// forbids anything else), readable without JavaScript (the script only
// sorts the route table).
func WriteHTML(w io.Writer, doc *verdict.Document, res *gate.Result, ex *Examples, opt Options) error {
	v := buildView(doc, res, ex, opt)
	if err := pageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	return nil
}

type kv struct {
	Key   string
	Value uint64
}

type htmlView struct {
	Generated, Since, Span string
	Receivers              int
	Verdict                string // PASS, FAIL, NOT ENOUGH DATA
	VerdictClass           string // pass, fail, nodata
	ExitStatus             int
	Reason                 string
	Failures               []string
	Criteria               []string
	Exchanges, Differing   uint64
	DifferingPct           float64
	Kinds                  []kv
	Uncompared             []kv
	Noise                  []kv
	Routes                 []htmlRoute
	MultiTarget            bool
	Share                  shareChart
	Latency                latencyChart
	Timeline               timelineChart
	Ignored                verdict.Ignored
	NoiseFields            []htmlNoise
	Examples               []htmlExample
	DiffLogs               bool
	FromPrometheus         bool
	KindNames              []string
}

type htmlRoute struct {
	Name, Target, Route  string
	Exchanges, Differing uint64
	DifferingPct         float64
	Kinds                string
	ProdP50, ProdP99     float64
	ShadP50, ShadP99     float64
	Ratio                float64
	Failed, Judged       bool
}

type htmlNoise struct {
	Route, Kind, Field, Source string
	Count                      uint64
}

type htmlExample struct {
	Route, Method, Path, Time string
	Prod, Shadow              string // status (or error) and latency
	Diffs                     []htmlDiff
}

type htmlDiff struct {
	Kind, Field, Production, Shadow, Explanation string
}

func buildView(doc *verdict.Document, res *gate.Result, ex *Examples, opt Options) *htmlView {
	v := &htmlView{Receivers: doc.Receivers, ExitStatus: res.ExitStatus, Reason: res.Reason,
		Exchanges: res.Exchanges, Differing: res.Differing, DifferingPct: res.DifferingPct, Ignored: doc.Ignored,
		MultiTarget: multiTarget(res), DiffLogs: opt.DiffLogs, FromPrometheus: opt.FromPrometheus}
	if !doc.Generated.IsZero() {
		v.Generated = doc.Generated.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if !doc.Started.IsZero() {
		v.Since = doc.Started.UTC().Format("2006-01-02 15:04 UTC")
		if doc.Generated.After(doc.Started) {
			v.Span = doc.Generated.Sub(doc.Started).Round(time.Second).String()
		}
	}
	switch res.Verdict {
	case gate.Pass:
		v.Verdict, v.VerdictClass = "PASS", "pass"
	case gate.Fail:
		v.Verdict, v.VerdictClass = "FAIL", "fail"
	default:
		v.Verdict, v.VerdictClass = "NOT ENOUGH DATA", "nodata"
	}
	for _, f := range res.Failures {
		v.Failures = append(v.Failures, f.Message)
	}
	v.Criteria = criteriaLines(res.Criteria)
	for _, k := range sortedKinds(res.Kinds) {
		v.Kinds = append(v.Kinds, kv{string(k), res.Kinds[k]})
	}
	for _, k := range sortedKinds(doc.Totals.Noise) {
		v.Noise = append(v.Noise, kv{string(k), doc.Totals.Noise[k]})
	}
	for r, n := range doc.Totals.Uncompared {
		if n > 0 {
			v.Uncompared = append(v.Uncompared, kv{r, n})
		}
	}
	sort.Slice(v.Uncompared, func(i, j int) bool { return v.Uncompared[i].Value > v.Uncompared[j].Value })
	for _, k := range verdict.ExchangeKinds() {
		v.KindNames = append(v.KindNames, string(k))
	}

	for _, r := range res.Routes {
		lat := r.Doc().Latency
		v.Routes = append(v.Routes, htmlRoute{Name: routeName(res, r.Target, r.Route), Target: r.Target, Route: r.Route,
			Exchanges: r.Exchanges, Differing: r.Differing, DifferingPct: r.DifferingPct, Kinds: kindCounts(r.Kinds, ""),
			ProdP50: lat.Production.P50, ProdP99: lat.Production.P99, ShadP50: lat.Shadow.P50, ShadP99: lat.Shadow.P99,
			Ratio: r.Ratio, Failed: r.Failed, Judged: r.Judged})
		for _, f := range r.Doc().NoiseFields {
			v.NoiseFields = append(v.NoiseFields, htmlNoise{Route: routeName(res, r.Target, r.Route), Kind: string(f.Kind),
				Field: f.Field, Count: f.Count, Source: noiseSource(f.Source)})
		}
	}
	sort.SliceStable(v.NoiseFields, func(i, j int) bool { return v.NoiseFields[i].Count > v.NoiseFields[j].Count })

	v.Share = buildShare(res)
	v.Latency = buildLatency(res)
	v.Timeline = buildTimeline(doc.Timeline)

	for _, r := range res.Routes {
		if len(v.Examples) == htmlExampleRoutes {
			break
		}
		if r.Differing == 0 {
			continue
		}
		for i, l := range ex.For(r.Target, r.Route) {
			if i == 2 {
				break
			}
			v.Examples = append(v.Examples, exampleView(routeName(res, r.Target, r.Route), l))
		}
	}
	return v
}

func noiseSource(s string) string {
	switch s {
	case "baseline":
		return "learned on the route: production and the baseline differ there"
	case "baseline-exchange":
		return "the baseline's answer to the same request differed (e.g. replica lag)"
	}
	return s
}

func criteriaLines(c gate.CriteriaJSON) []string {
	out := []string{fmt.Sprintf("--max-diff-rate %s%%", strconv.FormatFloat(c.MaxDiffRate, 'f', -1, 64))}
	var ks []string
	for k := range c.Max {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		out = append(out, fmt.Sprintf("--max %s=%s%%", k, strconv.FormatFloat(c.Max[k], 'f', -1, 64)))
	}
	if c.MaxLatencyRatio > 0 {
		l := fmt.Sprintf("--max-latency-ratio %s at %s", strconv.FormatFloat(c.MaxLatencyRatio, 'f', -1, 64), quantileName(c.LatencyQuantile))
		if c.LatencySlack > 0 {
			l += " with --latency-slack " + gate.FormatSeconds(c.LatencySlack)
		}
		out = append(out, l)
	}
	out = append(out, fmt.Sprintf("--min-exchanges %d", c.MinExchanges), fmt.Sprintf("--min-route-exchanges %d", c.MinRouteExchanges))
	if c.RouteFilter != "" {
		out = append(out, "--route-filter "+strconv.Quote(c.RouteFilter))
	}
	return out
}

func exampleView(route string, l verdict.DiffLogLine) htmlExample {
	side := func(s verdict.Side) string {
		st := strconv.Itoa(s.Status)
		if s.Status == 0 {
			st = "no answer"
			if s.Error != "" {
				st = s.Error
			}
		}
		return st + ", " + gate.FormatSeconds(s.LatencyMS/1000)
	}
	e := htmlExample{Route: route, Method: l.Method, Path: l.Path, Time: l.Time.UTC().Format("2006-01-02 15:04:05 UTC"),
		Prod: side(l.Production), Shadow: side(l.Shadow)}
	for _, d := range l.Differences {
		e.Diffs = append(e.Diffs, htmlDiff{Kind: string(d.Kind), Field: d.Field, Production: cut(d.Production, htmlValueRunes),
			Shadow: cut(d.Shadow, htmlValueRunes), Explanation: d.Explanation})
	}
	return e
}

// highlightField marks up a normalized JSON path ($.items[3]['a b']) token
// by token; other fields are returned escaped as they are.
func highlightField(field string) template.HTML {
	esc := template.HTMLEscapeString
	if !strings.HasPrefix(field, "$") {
		return template.HTML(esc(field))
	}
	var b strings.Builder
	b.WriteString(`<span class="jp-root">$</span>`)
	rest := field[1:]
	for len(rest) > 0 {
		var tok, class string
		switch {
		case rest[0] == '.':
			i := 1
			for i < len(rest) && rest[i] != '.' && rest[i] != '[' {
				i++
			}
			tok, class = rest[:i], "jp-key"
		case rest[0] == '[':
			i := closingBracket(rest)
			tok = rest[:i]
			class = "jp-key"
			if len(tok) > 2 && tok[1] >= '0' && tok[1] <= '9' {
				class = "jp-idx"
			}
		default:
			tok, class = rest, "jp-key"
		}
		fmt.Fprintf(&b, `<span class="%s">%s</span>`, class, esc(tok))
		rest = rest[len(tok):]
	}
	return template.HTML(b.String())
}

// closingBracket returns the length of the bracket selector at the start of
// s, skipping quoted names (with backslash escapes).
func closingBracket(s string) int {
	var quote byte
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == '\\':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '\'' || c == '"'):
			quote = c
		case quote == 0 && c == ']':
			return i + 1
		}
	}
	return len(s)
}

// Chart geometry, in SVG user units.
const (
	chartWidth = 760
	labelWidth = 230
)

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type text struct {
	X, Y   float64
	Anchor string
	Class  string
	Text   string
}

type tick struct {
	X1, Y1, X2, Y2 float64
}

type shareChart struct {
	Height float64
	Bars   []bar
	Texts  []text
	Lines  []tick
	Empty  bool
}

func niceMax(v float64) float64 {
	for _, m := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100} {
		if v <= m {
			return m
		}
	}
	return 100
}

// buildShare: per route (highest differing share first), a bar of the
// differing share and one thin bar per kind.
func buildShare(res *gate.Result) shareChart {
	var c shareChart
	var routes []gate.RouteResult
	maxShare := 0.0
	for _, r := range res.Routes {
		if r.Differing == 0 || len(routes) == htmlShareRoutes {
			continue
		}
		routes = append(routes, r)
		maxShare = math.Max(maxShare, r.DifferingPct)
	}
	if len(routes) == 0 {
		c.Empty = true
		return c
	}
	scale := niceMax(maxShare)
	plot := float64(chartWidth - labelWidth - 60)
	x := func(p float64) float64 { return labelWidth + plot*p/scale }
	y := 24.0
	for _, r := range routes {
		top := y
		name := cut(routeName(res, r.Target, r.Route), 30)
		c.Texts = append(c.Texts, text{X: labelWidth - 8, Y: y + 11, Anchor: "end", Class: "lbl", Text: name})
		c.Bars = append(c.Bars, bar{X: labelWidth, Y: y, W: math.Max(x(r.DifferingPct)-labelWidth, 1), H: 14, Class: "b-diff",
			Title: fmt.Sprintf("%s: %s differing (%d of %d)", r.Route, gate.FormatPct(r.DifferingPct), r.Differing, r.Exchanges)})
		c.Texts = append(c.Texts, text{X: x(r.DifferingPct) + 4, Y: y + 11, Class: "val", Text: gate.FormatPct(r.DifferingPct)})
		y += 16
		for _, k := range sortedKinds(r.Kinds) {
			p := 100 * float64(r.Kinds[k]) / float64(r.Exchanges)
			c.Bars = append(c.Bars, bar{X: labelWidth, Y: y, W: math.Max(x(p)-labelWidth, 1), H: 6, Class: "k-" + string(k),
				Title: fmt.Sprintf("%s: %s differ by %s (%d)", r.Route, gate.FormatPct(p), k, r.Kinds[k])})
			y += 7
		}
		_ = top
		y += 10
	}
	for _, t := range []float64{0, scale / 2, scale} {
		c.Lines = append(c.Lines, tick{X1: x(t), Y1: 18, X2: x(t), Y2: y})
		c.Texts = append(c.Texts, text{X: x(t), Y: 12, Anchor: "middle", Class: "axis", Text: strconv.FormatFloat(t, 'f', -1, 64) + "%"})
	}
	c.Height = y + 4
	return c
}

type latencyChart struct {
	Height float64
	Bars   []bar
	Texts  []text
	Lines  []tick
	Marks  []tick
	Empty  bool
}

// buildLatency: per route (most exchanges first), production's and the
// shadow's p99 as bars on a log scale, with p50 and p90 marked.
func buildLatency(res *gate.Result) latencyChart {
	var c latencyChart
	routes := make([]gate.RouteResult, 0, len(res.Routes))
	for _, r := range res.Routes {
		l := r.Doc().Latency
		if l.Production.Count > 0 || l.Shadow.Count > 0 {
			routes = append(routes, r)
		}
	}
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Exchanges > routes[j].Exchanges })
	if len(routes) > htmlLatencyRoutes {
		routes = routes[:htmlLatencyRoutes]
	}
	if len(routes) == 0 {
		c.Empty = true
		return c
	}
	const lo, hi = -4.0, 1.0 // 100µs .. 10s
	plot := float64(chartWidth - labelWidth - 70)
	x := func(s float64) float64 {
		if s <= 0 {
			return labelWidth
		}
		l := math.Min(math.Max(math.Log10(s), lo), hi)
		return labelWidth + plot*(l-lo)/(hi-lo)
	}
	y := 24.0
	for _, r := range routes {
		l := r.Doc().Latency
		c.Texts = append(c.Texts, text{X: labelWidth - 8, Y: y + 15, Anchor: "end", Class: "lbl", Text: cut(routeName(res, r.Target, r.Route), 30)})
		for _, side := range []struct {
			name string
			h    verdict.Histogram
		}{{"production", l.Production}, {"shadow", l.Shadow}} {
			h := side.h
			c.Bars = append(c.Bars, bar{X: labelWidth, Y: y, W: math.Max(x(h.P99)-labelWidth, 1), H: 10, Class: "s-" + side.name,
				Title: fmt.Sprintf("%s %s: p50 %s, p90 %s, p99 %s (%d answers)", r.Route, side.name,
					gate.FormatSeconds(h.P50), gate.FormatSeconds(h.P90), gate.FormatSeconds(h.P99), h.Count)})
			for _, q := range []float64{h.P50, h.P90} {
				if q > 0 {
					c.Marks = append(c.Marks, tick{X1: x(q), Y1: y, X2: x(q), Y2: y + 10})
				}
			}
			c.Texts = append(c.Texts, text{X: x(h.P99) + 4, Y: y + 9, Class: "val", Text: gate.FormatSeconds(h.P99)})
			y += 12
		}
		y += 10
	}
	for e := lo; e <= hi; e++ {
		c.Lines = append(c.Lines, tick{X1: x(math.Pow(10, e)), Y1: 18, X2: x(math.Pow(10, e)), Y2: y})
		c.Texts = append(c.Texts, text{X: x(math.Pow(10, e)), Y: 12, Anchor: "middle", Class: "axis", Text: gate.FormatSeconds(math.Pow(10, e))})
	}
	c.Height = y + 4
	return c
}

type timelineChart struct {
	Height float64
	Bars   []bar
	Texts  []text
	Empty  bool
}

// buildTimeline: per minute, compared exchanges and the differing ones.
func buildTimeline(tl []verdict.Minute) timelineChart {
	c := timelineChart{Height: 180}
	if len(tl) == 0 {
		c.Empty = true
		return c
	}
	if len(tl) > 240 { // the last four hours
		tl = tl[len(tl)-240:]
	}
	var top uint64 = 1
	for _, m := range tl {
		top = max(top, m.Exchanges)
	}
	const left, bottom, height = 50.0, 150.0, 130.0
	w := (chartWidth - left - 10) / float64(len(tl))
	for i, m := range tl {
		x := left + float64(i)*w
		he := height * float64(m.Exchanges) / float64(top)
		hd := height * float64(m.Differing) / float64(top)
		at := m.Start.UTC().Format("15:04")
		c.Bars = append(c.Bars, bar{X: x, Y: bottom - he, W: math.Max(w-1, 1), H: math.Max(he, 0.5), Class: "t-all",
			Title: fmt.Sprintf("%s: %d compared, %d differing%s", at, m.Exchanges, m.Differing, kindCounts(m.Kinds, ": "))})
		if m.Differing > 0 {
			c.Bars = append(c.Bars, bar{X: x, Y: bottom - hd, W: math.Max(w-1, 1), H: math.Max(hd, 1), Class: "t-diff",
				Title: fmt.Sprintf("%s: %d differing of %d", at, m.Differing, m.Exchanges)})
		}
	}
	c.Texts = append(c.Texts,
		text{X: left - 6, Y: bottom - height + 4, Anchor: "end", Class: "axis", Text: strconv.FormatUint(top, 10)},
		text{X: left - 6, Y: bottom, Anchor: "end", Class: "axis", Text: "0"},
		text{X: left, Y: bottom + 16, Anchor: "start", Class: "axis", Text: tl[0].Start.UTC().Format("15:04 UTC")},
		text{X: chartWidth - 10, Y: bottom + 16, Anchor: "end", Class: "axis", Text: tl[len(tl)-1].Start.UTC().Format("15:04 UTC")})
	return c
}
