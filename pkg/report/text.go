// Package report renders the verdict stage's figures for people and
// pipelines. It is the last step of the data path:
//
//	/verdict documents (pkg/fleet) --> pkg/gate (decision) --> report
//	    --> `shadowtap verdict` lines and table, `shadowtap report` in a
//	        terminal (80 columns) or as one self-contained HTML page
//
// It reads a judged document (gate.Result, which keeps the document's
// routes) and, for examples, the diff log's JSONL lines. It computes nothing
// the gate has not decided: the verdict shown is the gate's.
package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// Width is the terminal width the text output fits.
const Width = 80

// Style says how text is written.
type Style struct {
	Color bool // ANSI colours (only on a terminal)
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
)

func (s Style) paint(code, text string) string {
	if !s.Color || text == "" {
		return text
	}
	return code + text + ansiReset
}

func (s Style) outcome(o gate.Outcome, text string) string {
	switch o {
	case gate.Pass:
		return s.paint(ansiGreen+ansiBold, text)
	case gate.Fail:
		return s.paint(ansiRed+ansiBold, text)
	}
	return s.paint(ansiYellow+ansiBold, text)
}

// VerdictTableRows is how many routes `shadowtap verdict` lists.
const VerdictTableRows = 10

// WriteVerdict writes `shadowtap verdict`'s output: one line per failed
// criterion, a short table of the routes with the most differing share, and
// a last line with the decision.
func WriteVerdict(w io.Writer, res *gate.Result, st Style) error {
	ew := &errWriter{w: w}
	for _, f := range res.Failures {
		ew.printf("%s %s\n", st.paint(ansiRed+ansiBold, "FAIL"), f.Message)
	}
	if len(res.Routes) > 0 {
		if len(res.Failures) > 0 {
			ew.printf("\n")
		}
		writeVerdictTable(ew, res, st, VerdictTableRows)
	}
	ew.printf("\n%s %s\n", st.outcome(res.Verdict, "verdict: "+strings.ToUpper(strings.ReplaceAll(string(res.Verdict), "_", " "))),
		decisionLine(res))
	return ew.err
}

func decisionLine(res *gate.Result) string {
	rec := ""
	if res.Receivers > 1 {
		rec = fmt.Sprintf(", %d receivers", res.Receivers)
	} else if res.Receivers == 1 {
		rec = ", 1 receiver"
	}
	return fmt.Sprintf("(exit %d%s): %s", res.ExitStatus, rec, res.Reason)
}

// quantileName writes 0.99 as "p99".
func quantileName(q float64) string {
	return "p" + strconv.FormatFloat(q*100, 'f', -1, 64)
}

// writeVerdictTable: ROUTE 26, EXCH 7, DIFF% 6, KINDS 13, PROD 8, SHADOW 10, mark 4.
func writeVerdictTable(w *errWriter, res *gate.Result, st Style, rows int) {
	q := quantileName(res.Criteria.LatencyQuantile)
	head := fmt.Sprintf("%s %7s %6s %s %8s %10s", pad("ROUTE", 26), "EXCH", "DIFF%", pad("KINDS", 13), "PROD "+q, "SHADOW "+q)
	w.printf("%s\n", st.paint(ansiBold, strings.TrimRight(head, " ")))
	for i, r := range res.Routes {
		if i == rows {
			w.printf("%s\n", st.paint(ansiDim, fmt.Sprintf("… %d more routes (shadowtap report lists them all)", len(res.Routes)-rows)))
			break
		}
		mark := ""
		switch {
		case r.Failed:
			mark = st.paint(ansiRed, "FAIL")
		case !r.Judged:
			mark = st.paint(ansiDim, "few")
		}
		name := routeName(res, r.Target, r.Route)
		line := fmt.Sprintf("%s %7s %6s %s %8s %10s %s", pad(name, 26), Count(r.Exchanges), gate.FormatPct(r.DifferingPct),
			pad(kindsText(r.Kinds, 13), 13), gate.FormatSeconds(r.Production), gate.FormatSeconds(r.Shadow), mark)
		w.printf("%s\n", strings.TrimRight(line, " "))
	}
}

// routeName is the route, prefixed with its target when there are several.
func routeName(res *gate.Result, target, route string) string {
	if multiTarget(res) {
		return hostOf(target) + " " + route
	}
	return route
}

func multiTarget(res *gate.Result) bool {
	for _, r := range res.Routes {
		if r.Target != res.Routes[0].Target {
			return true
		}
	}
	return false
}

func hostOf(target string) string {
	t := strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://")
	return strings.TrimSuffix(t, "/")
}

// kindsText lists kinds by count, highest first, cut to width.
func kindsText(kinds map[verdict.Kind]uint64, width int) string {
	ks := sortedKinds(kinds)
	if len(ks) == 0 {
		return "-"
	}
	var names []string
	for _, k := range ks {
		names = append(names, string(k))
	}
	return cut(strings.Join(names, ","), width)
}

// sortedKinds returns the kinds with a count, highest count first (then
// report order).
func sortedKinds(kinds map[verdict.Kind]uint64) []verdict.Kind {
	order := map[verdict.Kind]int{}
	for i, k := range verdict.ExchangeKinds() {
		order[k] = i
	}
	var ks []verdict.Kind
	for k, n := range kinds {
		if n > 0 {
			ks = append(ks, k)
		}
	}
	sort.Slice(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if kinds[a] != kinds[b] {
			return kinds[a] > kinds[b]
		}
		oa, oka := order[a]
		ob, okb := order[b]
		if oka != okb {
			return oka
		}
		if oa != ob {
			return oa < ob
		}
		return a < b
	})
	return ks
}

// Count writes a count in at most 7 characters ("1234567", "12.3M").
func Count(n uint64) string {
	switch {
	case n < 10_000_000:
		return strconv.FormatUint(n, 10)
	case n < 10_000_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	}
	return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + "G"
}

// cut shortens s to width runes, ending in "…" when cut.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// pad cuts or pads s with spaces to exactly width runes.
func pad(s string, width int) string {
	s = cut(s, width)
	if n := utf8.RuneCountInString(s); n < width {
		s += strings.Repeat(" ", width-n)
	}
	return s
}

// wrap breaks text into lines of at most width runes, at spaces where it
// can, each prefixed with indent.
func wrap(text string, width int, indent string) []string {
	avail := width - utf8.RuneCountInString(indent)
	var lines []string
	var cur []rune
	for _, word := range strings.Fields(text) {
		wr := []rune(word)
		for len(wr) > avail { // a word longer than a line
			if len(cur) > 0 {
				lines = append(lines, indent+string(cur))
				cur = nil
			}
			lines = append(lines, indent+string(wr[:avail]))
			wr = wr[avail:]
		}
		switch {
		case len(cur) == 0:
			cur = wr
		case len(cur)+1+len(wr) <= avail:
			cur = append(append(cur, ' '), wr...)
		default:
			lines = append(lines, indent+string(cur))
			cur = wr
		}
	}
	if len(cur) > 0 {
		lines = append(lines, indent+string(cur))
	}
	return lines
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}
