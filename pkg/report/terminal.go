package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// Options say what a report shows.
type Options struct {
	Style
	Routes   int  // routes listed in the terminal table; 0 = all
	Worst    int  // worst routes shown with an example difference
	DiffLogs bool // whether --diff-log files were given (to say how to get examples)
	// FromPrometheus: the document was built from Prometheus, which has no
	// noise fields or ignore rules.
	FromPrometheus bool
}

// DefaultOptions are `shadowtap report`'s defaults.
func DefaultOptions() Options { return Options{Routes: 25, Worst: 3} }

// WriteTerminal writes the report for a terminal of Width columns: the
// verdict and why, totals, noise, routes sorted by differing share
// (exchanges, differing %, kinds, production vs shadow p50 and p99), and
// for the worst routes an example difference with both values side by side.
func WriteTerminal(w io.Writer, doc *verdict.Document, res *gate.Result, ex *Examples, opt Options) error {
	ew := &errWriter{w: w}
	st := opt.Style
	ew.printf("%s\n", st.paint(ansiBold, "shadowtap report"))
	for _, l := range wrap(sourceLine(doc, res), Width, "") {
		ew.printf("%s\n", l)
	}
	ew.printf("\n%s %s\n", st.outcome(res.Verdict, "verdict: "+strings.ToUpper(strings.ReplaceAll(string(res.Verdict), "_", " "))),
		fmt.Sprintf("(exit %d)", res.ExitStatus))
	for _, l := range wrap(res.Reason, Width, "  ") {
		ew.printf("%s\n", l)
	}
	for _, f := range res.Failures {
		lines := wrap("FAIL "+f.Message, Width, "    ")
		lines[0] = "  " + st.paint(ansiRed, "FAIL") + strings.TrimPrefix(lines[0], "    FAIL")
		for _, l := range lines {
			ew.printf("%s\n", l)
		}
	}

	ew.printf("\n")
	para := func(text string, style string) {
		for i, l := range wrap(text, Width, "  ") {
			if i == 0 {
				l = strings.TrimPrefix(l, "  ")
			}
			ew.printf("%s\n", st.paint(style, l))
		}
	}
	para(fmt.Sprintf("differing: %s of %s compared (%s)%s", Count(res.Differing), Count(res.Exchanges), gate.FormatPct(res.DifferingPct),
		kindCounts(res.Kinds, ": ")), "")
	if n := sum(doc.Totals.Noise); n > 0 {
		para(fmt.Sprintf("noise discarded (learned from the baseline %s): %s", doc.Ignored.Baseline,
			strings.TrimPrefix(kindCounts(doc.Totals.Noise, ""), " ")), "")
	}
	if n := sum(doc.Totals.Uncompared); n > 0 {
		para("not compared: "+reasonCounts(doc.Totals.Uncompared), "")
	}
	if len(doc.Ignored.Headers) > 0 || len(doc.Ignored.JSONPaths) > 0 {
		ign := "ignored: headers " + strings.Join(doc.Ignored.Headers, ", ")
		if len(doc.Ignored.JSONPaths) > 0 {
			ign += "; JSON paths " + strings.Join(doc.Ignored.JSONPaths, ", ")
		}
		para(ign, ansiDim)
	}

	writeRouteTable(ew, res, opt)
	writeWorst(ew, res, ex, opt)
	return ew.err
}

func sourceLine(doc *verdict.Document, res *gate.Result) string {
	rec := "1 receiver"
	if doc.Receivers != 1 {
		rec = fmt.Sprintf("%d receivers", doc.Receivers)
	}
	s := fmt.Sprintf("%s, %d routes", rec, len(res.Routes))
	if !doc.Started.IsZero() {
		s += ", since " + doc.Started.UTC().Format("2006-01-02 15:04 UTC")
		if !doc.Generated.IsZero() && doc.Generated.After(doc.Started) {
			s += " (" + doc.Generated.Sub(doc.Started).Round(time.Second).String() + ")"
		}
	}
	return s
}

func sum[K comparable](m map[K]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// kindCounts writes "sep cookie 300, body 3" (highest first); "" when none.
func kindCounts(m map[verdict.Kind]uint64, sep string) string {
	ks := sortedKinds(m)
	if len(ks) == 0 {
		return ""
	}
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %s", k, Count(m[k])))
	}
	return sep + strings.Join(parts, ", ")
}

func reasonCounts(m map[string]uint64) string {
	var rs []string
	for r, n := range m {
		if n > 0 {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		if m[rs[i]] != m[rs[j]] {
			return m[rs[i]] > m[rs[j]]
		}
		return rs[i] < rs[j]
	})
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %s", r, Count(m[r])))
	}
	return strings.Join(parts, ", ")
}

// writeRouteTable: mark 2 + ROUTE 22, EXCH 7, DIFF% 6, KINDS 13, p50 12, p99 12 = 79.
func writeRouteTable(w *errWriter, res *gate.Result, opt Options) {
	st := opt.Style
	if len(res.Routes) == 0 {
		w.printf("\nno route compared yet\n")
		return
	}
	w.printf("\n%s%s\n", strings.Repeat(" ", 54), st.paint(ansiBold, "production/shadow latency"))
	w.printf("%s\n", st.paint(ansiBold, fmt.Sprintf("  %s %7s %6s %s %12s %12s", pad("ROUTE", 22), "EXCH", "DIFF%", pad("KINDS", 13), "p50", "p99")))
	failed := false
	for i, r := range res.Routes {
		if opt.Routes > 0 && i == opt.Routes {
			w.printf("%s\n", st.paint(ansiDim, fmt.Sprintf("  … %d more routes (--routes 0 lists all)", len(res.Routes)-opt.Routes)))
			break
		}
		lat := r.Doc().Latency
		mark, diff := "  ", gate.FormatPct(r.DifferingPct)
		// pad by visible width: colour codes take no column
		diffCol := strings.Repeat(" ", 6-len([]rune(diff)))
		switch {
		case r.Failed:
			mark, diff = st.paint(ansiRed, "✗")+" ", st.paint(ansiRed, diff)
			failed = true
		case r.Differing > 0:
			diff = st.paint(ansiYellow, diff)
		}
		w.printf("%s%s %7s %s %s %12s %12s\n", mark, pad(routeName(res, r.Target, r.Route), 22), Count(r.Exchanges), diffCol+diff,
			pad(kindsText(r.Kinds, 13), 13), pair(lat.Production.P50, lat.Shadow.P50), pair(lat.Production.P99, lat.Shadow.P99))
	}
	if failed {
		w.printf("%s\n", st.paint(ansiDim, "✗ the route failed a criterion on its own"))
	}
}

func pair(prod, shadow float64) string {
	return gate.FormatSeconds(prod) + "/" + gate.FormatSeconds(shadow)
}

// Example columns: indent 2, FIELD 20, PRODUCTION 28, SHADOW 28.
const (
	fieldCol = 20
	valueCol = 28
)

func writeWorst(w *errWriter, res *gate.Result, ex *Examples, opt Options) {
	st := opt.Style
	shown := 0
	for _, r := range res.Routes {
		if shown >= opt.Worst {
			break
		}
		if r.Differing == 0 {
			continue
		}
		shown++
		if shown == 1 {
			w.printf("\n%s\n", st.paint(ansiBold, "worst routes"))
		}
		head := fmt.Sprintf("%s: %s of %s differ (%s)%s", routeName(res, r.Target, r.Route), Count(r.Differing), Count(r.Exchanges),
			gate.FormatPct(r.DifferingPct), kindCounts(r.Kinds, ": "))
		w.printf("\n")
		for i, l := range wrap(head, Width, "  ") {
			if i == 0 {
				l = st.paint(ansiBold, strings.TrimPrefix(l, "  "))
			}
			w.printf("%s\n", l)
		}
		examples := ex.For(r.Target, r.Route)
		if len(examples) == 0 {
			if opt.DiffLogs {
				w.printf("  no example of this route in the diff log\n")
			} else {
				w.printf("  no example: give the run's --diff-log file(s) to see one\n")
			}
			continue
		}
		writeExample(w, examples[0], st)
	}
}

func writeExample(w *errWriter, l verdict.DiffLogLine, st Style) {
	status := func(s verdict.Side) string {
		if s.Status == 0 {
			if s.Error != "" {
				return s.Error
			}
			return "no answer"
		}
		return fmt.Sprintf("%d", s.Status)
	}
	lat := func(s verdict.Side) string { return gate.FormatSeconds(s.LatencyMS / 1000) }
	line := fmt.Sprintf("%s %s at %s: status %s / %s, %s / %s", l.Method, l.Path, l.Time.UTC().Format("15:04:05"),
		status(l.Production), status(l.Shadow), lat(l.Production), lat(l.Shadow))
	for _, x := range wrap(line, Width, "  ") {
		w.printf("%s\n", st.paint(ansiDim, x))
	}
	w.printf("  %s %s %s\n", pad("FIELD", fieldCol), pad("PRODUCTION", valueCol), "SHADOW")
	for i, d := range l.Differences {
		if i == 5 {
			w.printf("  … %d more differences\n", len(l.Differences)-5)
			break
		}
		w.printf("  %s %s %s\n", pad(d.Field, fieldCol), pad(value(d.Production), valueCol), cut(value(d.Shadow), valueCol))
		if d.Explanation != "" {
			for _, x := range wrap(d.Explanation, Width, "    ") {
				w.printf("%s\n", x)
			}
		}
	}
}

// value makes a difference's value fit one line: "(absent)" when empty,
// control characters shown as spaces.
func value(s string) string {
	if s == "" {
		return "(absent)"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
