package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

const diffLogLine = `{"schema":1,"time":"2026-11-30T08:02:11Z","target":"http://10.83.0.2:8080","route":"GET /login","method":"GET","path":"/login","kinds":["cookie"],"production":{"status":200,"latency_ms":3.1},"shadow":{"status":200,"latency_ms":3.4},"differences":[{"kind":"cookie","field":"sid; Domain","production":".shop.example","shadow":"","explanation":"production sets sid with Domain=.shop.example, the shadow without Domain"}]}` + "\n"

// TestReportCommand runs `shadowtap report` as a person would: a terminal
// report that fits 80 columns whatever the verdict (exit 0), an HTML file
// that loads nothing from elsewhere, and exit 2 on a source it cannot read.
func TestReportCommand(t *testing.T) {
	d := fakeDoc(
		fakeRoute("GET /products/{id}", 1800, map[verdict.Kind]uint64{verdict.KindBody: 3}, 4*ms, 5*ms),
		fakeRoute("GET /login", 300, map[verdict.Kind]uint64{verdict.KindCookie: 300}, 3*ms, 3*ms))
	d.Timeline = []verdict.Minute{{Start: d.Started, Exchanges: 1000, Differing: 100}, {Start: d.Started.Add(time.Minute), Exchanges: 1100, Differing: 203}}
	doc := writeDoc(t, d)
	diffLog := filepath.Join(t.TempDir(), "diff.jsonl")
	os.WriteFile(diffLog, []byte(diffLogLine), 0o644)
	html := filepath.Join(t.TempDir(), "report.html")

	tests := []struct {
		name   string
		args   []string
		status int
		stdout []string
		stderr string
	}{
		{"terminal", []string{"--from", doc, "--diff-log", diffLog, "--max", "cookie=0"}, 0,
			[]string{"verdict: FAIL (exit 1)", "GET /login", "sid; Domain", ".shop.example", "(absent)"}, ""},
		{"terminal without diff log", []string{"--from", doc}, 0, []string{"no example: give the run's --diff-log"}, ""},
		{"html", []string{"--from", doc, "--diff-log", diffLog, "--html", html}, 0, []string{"wrote " + html, "verdict fail"}, ""},
		{"unreachable source", []string{"--from", closedAddr(t)}, 2, nil, "connection refused"},
		{"missing diff log", []string{"--from", doc, "--diff-log", "/nonexistent.jsonl"}, 2, nil, "/nonexistent.jsonl"},
		{"html in a missing directory", []string{"--from", doc, "--html", "/nonexistent/r.html"}, 2, nil, "/nonexistent/r.html"},
		{"negative --routes", []string{"--from", doc, "--routes", "-1"}, 2, nil, "--routes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"report"}, tc.args...), &stdout, &stderr)
			if code != tc.status {
				t.Errorf("exit status %d, want %d; stderr %s", code, tc.status, stderr.String())
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			for _, l := range strings.Split(stdout.String(), "\n") {
				if n := utf8.RuneCountInString(l); n > 80 && !strings.HasPrefix(l, "wrote ") {
					t.Errorf("line of %d columns: %q", n, l)
				}
			}
		})
	}

	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="verdict"`, `id="routes"`, `id="chart-share"`, `id="chart-latency"`, `id="chart-timeline"`, "sid; Domain"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the HTML report lacks %s", want)
		}
	}
	// Nothing loaded from elsewhere: every src or href is a data: URL.
	for _, m := range regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`).FindAllSubmatch(page, -1) {
		if !bytes.HasPrefix(m[1], []byte("data:")) {
			t.Errorf("the HTML report refers to %s", m[1])
		}
	}
}
