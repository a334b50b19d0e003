package report

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// TestTerminalGolden renders the reports a person reads at 80 columns and
// compares them with testdata/*.golden; every line must fit 80 columns.
func TestTerminalGolden(t *testing.T) {
	doc := fixtureDoc()
	tests := []struct {
		name string
		fn   func(*bytes.Buffer) error
	}{
		{"report.golden", func(b *bytes.Buffer) error {
			return WriteTerminal(b, doc, gate.Judge(doc, fixtureCriteria()), fixtureExamples(t), Options{Routes: 25, Worst: 3, DiffLogs: true})
		}},
		{"report-no-difflog.golden", func(b *bytes.Buffer) error {
			return WriteTerminal(b, doc, gate.Judge(doc, gate.DefaultCriteria()), nil, Options{Routes: 4, Worst: 2})
		}},
		{"report-not-enough.golden", func(b *bytes.Buffer) error {
			c := gate.DefaultCriteria()
			c.MinExchanges = 100000
			return WriteTerminal(b, doc, gate.Judge(doc, c), fixtureExamples(t), Options{Routes: 25, Worst: 1, DiffLogs: true})
		}},
		{"verdict.golden", func(b *bytes.Buffer) error {
			return WriteVerdict(b, gate.Judge(doc, fixtureCriteria()), Style{})
		}},
		{"verdict-pass.golden", func(b *bytes.Buffer) error {
			c := gate.DefaultCriteria()
			c.RouteFilter = mustRE(`^GET /(static|products)/`)
			return WriteVerdict(b, gate.Judge(doc, c), Style{})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.fn(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.Bytes())
			if strings.Contains(b.String(), "\x1b[") {
				t.Error("colour without Style.Color")
			}
			for i, line := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(tc.name, "verdict") && (strings.HasPrefix(line, "FAIL ") || strings.HasPrefix(line, "verdict: ")) {
					continue // a pipeline's log line: one per criterion, whole
				}
				if n := utf8.RuneCountInString(line); n > Width {
					t.Errorf("line %d is %d columns wide: %q", i+1, n, line)
				}
			}
		})
	}
}

// TestTerminalContent checks what a person looks for, independently of the
// golden files: the worst route first, the cookie explanation, both values
// of an example side by side, the slower route flagged.
func TestTerminalContent(t *testing.T) {
	doc := fixtureDoc()
	var b bytes.Buffer
	if err := WriteTerminal(&b, doc, gate.Judge(doc, fixtureCriteria()), fixtureExamples(t), Options{Routes: 25, Worst: 4, DiffLogs: true}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"verdict: FAIL (exit 1)",
		"FAIL max cookie: all routes",
		"FAIL max-latency-ratio: route GET /search",
		"keeps two cookies named sid",
		"sid; Domain",
		"$.items[3].price",
		"not compared: gap 12, busy 3",
		"noise discarded (learned from the baseline http://10.83.0.3:8080)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Side by side: the field, production's and the shadow's value on one line.
	if !regexpLine(out, `^\s+\$\.items\[3\]\.price\s+19\.99\s+21\.99$`) {
		t.Errorf("the example's values are not side by side:\n%s", out)
	}
	if !regexpLine(out, `^\s+sid; Domain\s+\.shop\.example\s+\(absent\)$`) {
		t.Errorf("the cookie example's values are not side by side:\n%s", out)
	}
	// Routes sorted by differing share: /login and /api/cart (100%) before /api/items.
	li, ci, ii := strings.Index(out, "✗ GET /login "), strings.Index(out, "✗ GET /api/cart "), strings.Index(out, "✗ GET /api/items/{id} ")
	if li < 0 || ci < 0 || ii < 0 || li > ii || ci > ii {
		t.Errorf("route table not sorted by differing share:\n%s", out)
	}
}

func TestTerminalColour(t *testing.T) {
	doc := fixtureDoc()
	var plain, col bytes.Buffer
	res := gate.Judge(doc, fixtureCriteria())
	WriteTerminal(&plain, doc, res, nil, DefaultOptions())
	o := DefaultOptions()
	o.Color = true
	WriteTerminal(&col, doc, res, nil, o)
	if !strings.Contains(col.String(), ansiRed) {
		t.Error("no colour with Style.Color")
	}
	if got := ansi.ReplaceAllString(col.String(), ""); got != plain.String() {
		t.Errorf("colour changes the layout:\n%s\n---\n%s", got, plain.String())
	}
}

func TestExamplesRead(t *testing.T) {
	ex := fixtureExamples(t)
	if ex.Lines != 6 || ex.Skipped["not JSON"] != 1 || ex.Skipped["schema"] != 1 {
		t.Errorf("lines %d, skipped %v; want 6 lines, 1 not JSON, 1 other schema", ex.Lines, ex.Skipped)
	}
	login := ex.For(shadowTarget, "GET /login")
	if len(login) != 1 || len(login[0].Differences) != 2 {
		t.Errorf("GET /login: want the latest line of the cookie kind set, got %+v", login)
	}
	// A line longer than the bound is skipped, the next one still read.
	long := `{"schema":1,"route":"GET /x","differences":[{"kind":"body","field":"` + strings.Repeat("a", maxDiffLogLine) + `"}]}` + "\n"
	ok := `{"schema":1,"route":"GET /y","differences":[{"kind":"body","field":"$"}]}`
	ex = NewExamples()
	if err := ex.Read(strings.NewReader(long + ok)); err != nil {
		t.Fatal(err)
	}
	if ex.Skipped["too long"] != 1 || len(ex.For("", "GET /y")) != 1 || len(ex.For("", "GET /x")) != 0 {
		t.Errorf("long line: skipped %v, /y %d", ex.Skipped, len(ex.For("", "GET /y")))
	}
}

// FuzzDiffLog: any bytes in a diff log are read without panic, and the
// examples kept stay within the bounds.
func FuzzDiffLog(f *testing.F) {
	f.Add([]byte(`{"schema":1,"route":"GET /","differences":[{"kind":"body","field":"$.a"}]}` + "\n"))
	f.Add([]byte("{\n}\n\n{\"schema\":1}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ex := NewExamples()
		if err := ex.Read(bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		for _, list := range ex.routes {
			if len(list) > examplesPerRoute {
				t.Fatalf("%d examples for a route", len(list))
			}
			for _, l := range list {
				var b bytes.Buffer
				writeExample(&errWriter{w: &b}, l, Style{})
				_ = verdict.DiffLogLine(l)
			}
		}
	})
}
