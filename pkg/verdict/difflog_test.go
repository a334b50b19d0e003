package verdict

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRedactQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a=1", "a=REDACTED"},
		{"a=1&b=secret", "a=REDACTED&b=REDACTED"},
		{"flag&a=", "flag&a=REDACTED"},
		{"token=a=b=c", "token=REDACTED"},
		{"a=1&&b=2", "a=REDACTED&&b=REDACTED"},
	}
	for _, tc := range tests {
		if got := redactQuery(tc.in); got != tc.want {
			t.Errorf("redactQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactDifferences(t *testing.T) {
	redact := map[string]bool{"Authorization": true, "Cookie": true, "Set-Cookie": true, "X-Api-Key": true}
	in := []Difference{
		{Kind: KindHeader, Field: "Authorization", Production: "Bearer abc", Shadow: "Bearer def"},
		{Kind: KindHeader, Field: "x-api-key", Production: "k1", Shadow: ""}, // absent on one side: stays ""
		{Kind: KindHeader, Field: "Set-Cookie", Production: "sid=1", Shadow: "sid=2"},
		{Kind: KindHeader, Field: "Cache-Control", Production: "no-store", Shadow: "public"},
		{Kind: KindBody, Field: "$.authorization", Production: `"x"`, Shadow: `"y"`}, // a body field, not a header
	}
	got := redactDifferences(in, redact)
	want := []Difference{
		{Kind: KindHeader, Field: "Authorization", Production: Redacted, Shadow: Redacted},
		{Kind: KindHeader, Field: "x-api-key", Production: Redacted, Shadow: ""},
		{Kind: KindHeader, Field: "Set-Cookie", Production: Redacted, Shadow: Redacted},
		{Kind: KindHeader, Field: "Cache-Control", Production: "no-store", Shadow: "public"},
		{Kind: KindBody, Field: "$.authorization", Production: `"x"`, Shadow: `"y"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("redactDifferences:\n got %+v\nwant %+v", got, want)
	}
	if in[0].Production != "Bearer abc" {
		t.Error("redactDifferences changed its input (the engine's own copy is still counted)")
	}
}

func readLines(t *testing.T, path string) []DiffLogLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []DiffLogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l DiffLogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestDiffLogLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diff.jsonl")
	e := newTestEngine(t, func(c *Config) { c.DiffLog = path; c.RedactHeaders = []string{"x-api-key"} })
	x := ex("GET", "/users/42", mkResp(200, 3*time.Millisecond), shadow(mkResp(500, 25*time.Millisecond)),
		Answer{Target: "shadow-b", Error: "timeout"}, Answer{Target: "shadow-c", Response: mkResp(200, time.Millisecond)})
	x.Query = "token=s3cret&page=2"
	run(t, e, x)
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (shadow and shadow-b differ, shadow-c does not)", len(lines))
	}
	want := DiffLogLine{
		Schema: 1, Time: testNow, Target: "shadow", Route: "GET /users/{id}", Method: "GET",
		Path: "/users/42?token=REDACTED&page=REDACTED", Kinds: []Kind{KindStatus},
		Production:  Side{Status: 200, LatencyMS: 3},
		Shadow:      Side{Status: 500, LatencyMS: 25},
		Differences: []Difference{{Kind: KindStatus, Field: "status", Production: "200", Shadow: "500"}},
	}
	if !reflect.DeepEqual(lines[0], want) {
		t.Errorf("line:\n got %+v\nwant %+v", lines[0], want)
	}
	b := lines[1]
	if b.Target != "shadow-b" || b.Shadow.Error != "timeout" || b.Shadow.Status != 0 || !reflect.DeepEqual(b.Kinds, []Kind{KindShadowError}) {
		t.Errorf("shadow_error line: %+v", b)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("s3cret")) {
		t.Error("a query value reached the diff log")
	}
	var fields map[string]any
	json.Unmarshal(raw[:bytes.IndexByte(raw, '\n')], &fields)
	for _, k := range []string{"schema", "time", "target", "route", "method", "path", "kinds", "production", "shadow", "differences"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("line has no %q field: %s", k, raw)
		}
	}
	mfs := gather(t, e)
	if v, _ := value(mfs, MetricDiffLogLines, map[string]string{}); v != 2 {
		t.Errorf("%s = %g, want 2", MetricDiffLogLines, v)
	}
}

// At most DiffLogExamples lines per target, route and kind per minute.
func TestDiffLogRate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diff.jsonl")
	e := newTestEngine(t, func(c *Config) { c.DiffLog = path; c.DiffLogExamples = 2 })
	var mu sync.Mutex
	now := testNow
	e.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	status := func(p string) *Exchange { return ex("GET", p, mkResp(200, 0), shadow(mkResp(500, 0))) }
	failed := func(p string) *Exchange {
		return ex("GET", p, mkResp(200, 0), Answer{Target: "shadow", Error: "reset"})
	}
	for i := 0; i < 5; i++ {
		e.process(status("/a")) // 2 written, 3 skipped
		e.process(failed("/a")) // another kind: its own 2
		e.process(status("/b")) // another route: its own 2
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	for i := 0; i < 3; i++ {
		e.process(status("/a")) // a new minute: 2 more
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, l := range readLines(t, path) {
		count[l.Route+" "+string(l.Kinds[0])]++
	}
	want := map[string]int{"GET /a status": 4, "GET /a shadow_error": 2, "GET /b status": 2}
	if !reflect.DeepEqual(count, want) {
		t.Errorf("lines %v, want %v", count, want)
	}
	mfs := gather(t, e)
	if v, _ := value(mfs, MetricDiffLogSkipped, map[string]string{"reason": "rate"}); v != 3+3+3+1 {
		t.Errorf("skipped{rate} = %g, want 10", v)
	}
	// Every differing exchange is either written or skipped.
	written, _ := value(mfs, MetricDiffLogLines, map[string]string{})
	var skipped float64
	for _, r := range []string{"rate", "error", "closed"} {
		v, _ := value(mfs, MetricDiffLogSkipped, map[string]string{"reason": r})
		skipped += v
	}
	if _, differing := e.Totals(); written+skipped != float64(differing) {
		t.Errorf("written %g + skipped %g != %d differing", written, skipped, differing)
	}
}

func TestDiffLogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "diff.jsonl")
	const max = 2000
	e := newTestEngine(t, func(c *Config) { c.DiffLog = path; c.DiffLogMaxBytes = max; c.DiffLogExamples = 1000 })
	var xs []*Exchange
	for i := 0; i < 60; i++ {
		xs = append(xs, ex("GET", "/r", mkResp(200, 0), shadow(mkResp(500, 0))))
	}
	run(t, e, xs...)
	for _, p := range []string{path, path + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("after rotation: %v", err)
		}
		if st.Size() > max || st.Size() == 0 {
			t.Errorf("%s: %d bytes, want 1..%d", p, st.Size(), max)
		}
		readLines(t, p) // every line whole JSON
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files %v, want FILE and FILE.1 only", entries)
	}
	mfs := gather(t, e)
	if v, _ := value(mfs, MetricDiffLogLines, map[string]string{}); v != 60 {
		t.Errorf("lines written %g, want 60", v)
	}
}

// A diff log that cannot be written loses lines, counted, with one log
// record; the engine goes on.
func TestDiffLogWriteErrors(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l, err := openDiffLog(filepath.Join(t.TempDir(), "d.jsonl"), 1<<20, 100, log)
	if err != nil {
		t.Fatal(err)
	}
	l.f.Close() // every write now fails
	line := &DiffLogLine{Schema: 1, Target: "s", Route: "GET /", Kinds: []Kind{KindStatus}}
	for i := 0; i < 5; i++ {
		l.Write(testNow, line)
	}
	l.Flush()
	for i := 0; i < 3; i++ {
		l.Write(testNow, line)
		l.Flush()
	}
	written, skipped := l.counts()
	if written != 0 || skipped[SkipError] != 8 {
		t.Errorf("written %d, skipped %v; want 0 and error 8", written, skipped)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("%d log records, want 1:\n%s", n, buf.String())
	}
	l.Close()
	l.Write(testNow, line)
	if _, skipped := l.counts(); skipped[SkipClosed] != 1 {
		t.Errorf("after Close: skipped %v, want closed 1", skipped)
	}
}

// Run flushes the diff log at least every second, without Close.
func TestDiffLogFlushedByRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diff.jsonl")
	e := newTestEngine(t, func(c *Config) { c.DiffLog = path })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	e.Submit(ex("GET", "/a", mkResp(200, 0), shadow(mkResp(500, 0))))
	start := time.Now()
	waitFor(t, func() bool { st, err := os.Stat(path); return err == nil && st.Size() > 0 })
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the line reached the file after %v", d)
	}
}

// Secret header values never reach the diff log, through the whole engine.
func TestDiffLogNoSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diff.jsonl")
	e := newTestEngine(t, func(c *Config) { c.DiffLog = path; c.RedactHeaders = []string{"x-api-key"} })
	p := full(200, `{}`, "X-Api-Key: prod-key-1", "Authorization: Bearer prod-token", "Set-Cookie: sid=prodsession; Path=/", "Cache-Control: no-store")
	s := full(200, `{}`, "X-Api-Key: shadow-key-2", "Www-Authenticate: Basic", "Set-Cookie: sid=shadowsession; Path=/; Secure")
	run(t, e, ex("GET", "/k", p, shadow(s)))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"prod-key-1", "shadow-key-2", "prod-token", "prodsession", "shadowsession"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%q reached the diff log: %s", secret, raw)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	got := map[string]Difference{}
	for _, d := range lines[0].Differences {
		got[d.Field] = d
	}
	if d := got["X-Api-Key"]; d.Production != Redacted || d.Shadow != Redacted {
		t.Errorf("X-Api-Key: %+v, want both REDACTED", d)
	}
	if d := got["Authorization"]; d.Production != Redacted || d.Shadow != "" {
		t.Errorf("Authorization: %+v, want REDACTED and absent", d)
	}
	if d := got["Cache-Control"]; d.Production != "no-store" {
		t.Errorf("Cache-Control: %+v, the value of an ordinary header is kept", d)
	}
	if !reflect.DeepEqual(lines[0].Kinds, []Kind{KindHeader, KindCookie}) {
		t.Errorf("kinds %v, want header and cookie", lines[0].Kinds)
	}
}
