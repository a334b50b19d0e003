package verdict

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// resp builds a complete response; hdr is "Name: value" lines.
func resp(status int, body string, hdr ...string) *Response {
	h := http.Header{}
	for _, l := range hdr {
		k, v, _ := strings.Cut(l, ":")
		h.Add(k, strings.TrimSpace(v))
	}
	return &Response{Status: status, Header: h, Body: []byte(body), BodyLen: int64(len(body)), BodyComplete: true}
}

// encoded builds a complete response whose body is body with the content
// codings applied in order (as a server applies them).
func encoded(t testing.TB, status int, body string, codings []string, hdr ...string) *Response {
	t.Helper()
	b := []byte(body)
	for _, c := range codings {
		b = encode(t, b, c)
	}
	r := resp(status, "", hdr...)
	r.Body, r.BodyLen = b, int64(len(b))
	if len(codings) > 0 {
		var names []string
		for _, c := range codings {
			names = append(names, strings.SplitN(c, "-", 2)[0])
		}
		r.Header.Set("Content-Encoding", strings.Join(names, ", "))
	}
	return r
}

// encode applies one coding; "gzip-1" and "gzip-9" pick gzip levels,
// "deflate" is zlib, "deflate-raw" raw deflate.
func encode(t testing.TB, b []byte, coding string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch coding {
	case "gzip", "gzip-1", "gzip-9":
		level := gzip.DefaultCompression
		if coding == "gzip-1" {
			level = gzip.BestSpeed
		} else if coding == "gzip-9" {
			level = gzip.BestCompression
		}
		w, _ := gzip.NewWriterLevel(&buf, level)
		_, err = w.Write(b)
		if err == nil {
			err = w.Close()
		}
	case "deflate":
		w := zlib.NewWriter(&buf)
		_, err = w.Write(b)
		if err == nil {
			err = w.Close()
		}
	case "deflate-raw":
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		_, err = w.Write(b)
		if err == nil {
			err = w.Close()
		}
	case "br":
		w := brotli.NewWriterLevel(&buf, 5)
		_, err = w.Write(b)
		if err == nil {
			err = w.Close()
		}
	case "zstd":
		w, _ := zstd.NewWriter(&buf)
		_, err = w.Write(b)
		if err == nil {
			err = w.Close()
		}
	default:
		t.Fatalf("no encoder for %q", coding)
	}
	if err != nil {
		t.Fatalf("encode %s: %v", coding, err)
	}
	return buf.Bytes()
}

func xgzip(r *Response) *Response {
	r.Header.Set("Content-Encoding", "x-gzip")
	return r
}

func defaultOptions() *CompareOptions {
	ig := map[string]bool{}
	for _, h := range DefaultIgnoredHeaders() {
		ig[h] = true
	}
	return &CompareOptions{IgnoreHeaders: ig, Host: "example.com", Method: "GET"}
}

// fields lists "kind field" of each difference.
func fields(ds []Difference) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Key())
	}
	return out
}

func TestCompareStatus(t *testing.T) {
	for _, tc := range []struct {
		prod, shadow int
		want         []Difference
	}{
		{200, 200, nil},
		{200, 500, []Difference{{Kind: KindStatus, Field: "status", Production: "200", Shadow: "500"}}},
		{404, 200, []Difference{{Kind: KindStatus, Field: "status", Production: "404", Shadow: "200"}}},
	} {
		got := Compare(resp(tc.prod, ""), resp(tc.shadow, ""), defaultOptions())
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%d vs %d: got %+v, want %+v", tc.prod, tc.shadow, got, tc.want)
		}
	}
}

func TestCompareHeaders(t *testing.T) {
	for _, tc := range []struct {
		name         string
		prod, shadow []string
		opt          func(*CompareOptions)
		want         []Difference // Explanation checked only when set
	}{
		{name: "noise list", prod: []string{"Date: Mon, 30 Nov 2026 08:00:00 GMT", "Server: nginx", "ETag: \"a\"", "X-Request-Id: 1", "Content-Length: 10", "Age: 3"},
			shadow: []string{"Date: Mon, 30 Nov 2026 08:00:05 GMT", "Server: caddy", "ETag: \"b\"", "X-Request-Id: 2", "Transfer-Encoding: chunked", "Via: 1.1 x"}},
		{name: "equal", prod: []string{"Cache-Control: no-store", "X-A: 1"}, shadow: []string{"Cache-Control: no-store", "X-A: 1"}},
		{name: "dropped Cache-Control", prod: []string{"Cache-Control: max-age=60"}, shadow: nil,
			want: []Difference{{Kind: KindHeader, Field: "Cache-Control", Production: "max-age=60", Shadow: "",
				Explanation: "caching differs: browsers and CDNs keep the answer for another time, or not at all"}}},
		{name: "added on the shadow", prod: nil, shadow: []string{"X-Debug: on"},
			want: []Difference{{Kind: KindHeader, Field: "X-Debug", Production: "", Shadow: "on"}}},
		{name: "other value", prod: []string{"Content-Type: text/html"}, shadow: []string{"Content-Type: application/json"},
			want: []Difference{{Kind: KindHeader, Field: "Content-Type", Production: "text/html", Shadow: "application/json"}}},
		{name: "Content-Type charset case", prod: []string{"Content-Type: text/html; charset=UTF-8"}, shadow: []string{"Content-Type: text/html;charset=utf-8"}},
		{name: "CORS dropped", prod: []string{"Access-Control-Allow-Origin: *"},
			want: []Difference{{Kind: KindHeader, Field: "Access-Control-Allow-Origin", Production: "*",
				Explanation: "CORS differs: browsers may block cross-origin calls that work against production, or allow others"}}},
		{name: "multi-valued joined", prod: []string{"Vary: Accept", "Vary: Origin"}, shadow: []string{"Vary: Accept, Origin"}},
		{name: "multi-valued order", prod: []string{"Vary: Accept", "Vary: Origin"}, shadow: []string{"Vary: Origin", "Vary: Accept"},
			want: []Difference{{Kind: KindHeader, Field: "Vary", Production: "Accept, Origin", Shadow: "Origin, Accept"}}},
		{name: "user ignore", prod: []string{"X-Version: 1"}, shadow: []string{"X-Version: 2"},
			opt: func(o *CompareOptions) { o.IgnoreHeaders["X-Version"] = true }},
		{name: "Location absolute vs relative", prod: []string{"Location: https://example.com/a?b=1"}, shadow: []string{"Location: /a?b=1"}},
		{name: "Location host case and default port", prod: []string{"Location: HTTPS://Example.COM:443/a"}, shadow: []string{"Location: http://example.com/a"}},
		{name: "Location bare host", prod: []string{"Location: https://example.com"}, shadow: []string{"Location: /"}},
		{name: "Location scheme-relative", prod: []string{"Location: //example.com/a"}, shadow: []string{"Location: /a"}},
		{name: "Location with the Host's port", prod: []string{"Location: http://example.com:8080/a"}, shadow: []string{"Location: /a"},
			opt: func(o *CompareOptions) { o.Host = "example.com:8080" }},
		{name: "Location other port", prod: []string{"Location: http://example.com:8080/a"}, shadow: []string{"Location: /a"},
			want: []Difference{{Kind: KindHeader, Field: "Location", Production: "http://example.com:8080/a", Shadow: "/a", Explanation: "the redirect leads elsewhere"}}},
		{name: "Location other host", prod: []string{"Location: https://login.example.com/a"}, shadow: []string{"Location: /a"},
			want: []Difference{{Kind: KindHeader, Field: "Location", Production: "https://login.example.com/a", Shadow: "/a"}}},
		{name: "Location other path", prod: []string{"Location: https://example.com/a"}, shadow: []string{"Location: /b"},
			want: []Difference{{Kind: KindHeader, Field: "Location", Production: "https://example.com/a", Shadow: "/b"}}},
		{name: "Authorization redacted", prod: []string{"Authorization: Bearer prod-secret"}, shadow: []string{"Authorization: Bearer shadow-secret"},
			want: []Difference{{Kind: KindHeader, Field: "Authorization", Production: Redacted, Shadow: Redacted}}},
		{name: "Cookie redacted, one side", prod: []string{"Cookie: a=prod-secret"},
			want: []Difference{{Kind: KindHeader, Field: "Cookie", Production: Redacted, Shadow: ""}}},
		{name: "RedactHeaders", prod: []string{"X-Token: prod-secret"}, shadow: []string{"X-Token: shadow-secret"},
			opt:  func(o *CompareOptions) { o.RedactHeaders = map[string]bool{"X-Token": true} },
			want: []Difference{{Kind: KindHeader, Field: "X-Token", Production: Redacted, Shadow: Redacted}}},
		{name: "Set-Cookie never a header", prod: []string{"Set-Cookie: sid=prod-secret"}, shadow: []string{"Set-Cookie: sid=shadow-secret"},
			opt: func(o *CompareOptions) { o.IgnoreHeaders = nil }},
		{name: "sorted by name", prod: []string{"X-B: 1", "X-A: 1"}, shadow: []string{"X-B: 2", "X-A: 2"},
			want: []Difference{{Kind: KindHeader, Field: "X-A", Production: "1", Shadow: "2"}, {Kind: KindHeader, Field: "X-B", Production: "1", Shadow: "2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := defaultOptions()
			if tc.opt != nil {
				tc.opt(opt)
			}
			got := Compare(resp(200, "", tc.prod...), resp(200, "", tc.shadow...), opt)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d differences %+v, want %+v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Kind != w.Kind || g.Field != w.Field || g.Production != w.Production || g.Shadow != w.Shadow {
					t.Errorf("difference %d: got %+v, want %+v", i, g, w)
				}
				if w.Explanation != "" && g.Explanation != w.Explanation {
					t.Errorf("difference %d: explanation %q, want %q", i, g.Explanation, w.Explanation)
				}
			}
			for _, g := range got {
				if strings.Contains(g.Production+g.Shadow+g.Explanation, "secret") {
					t.Errorf("a secret value leaked: %+v", g)
				}
			}
		})
	}
}

const itemsJSON = `{"items":[{"id":1,"price":10.0,"name":"a"},{"id":2,"price":20,"name":"b"}],"total":30,"meta":{"page":1,"next":null}}`

func TestCompareBodies(t *testing.T) {
	jsonCT := "Content-Type: application/json"
	type tc struct {
		name             string
		prod, shadow     *Response
		opt              func(*CompareOptions)
		want             []Difference // Explanation checked only when set
		unverified       string
		omitted          int
		explanationMatch string // substring of the last difference's explanation
	}
	cases := []tc{
		// Not differences.
		{name: "JSON key order", prod: resp(200, itemsJSON, jsonCT),
			shadow: resp(200, `{"meta":{"next":null,"page":1},"total":30,"items":[{"name":"a","price":10,"id":1},{"price":20.00,"id":2,"name":"b"}]}`, jsonCT)},
		{name: "JSON numbers by value", prod: resp(200, `{"a":1.0,"b":1e2,"c":-0,"d":0.5,"e":123456789012345678901234567890}`, jsonCT),
			shadow: resp(200, `{"a":1,"b":100,"c":0,"d":5E-1,"e":1.23456789012345678901234567890e29}`, jsonCT)},
		{name: "JSON string escapes", prod: resp(200, `{"s":"\u00e9\/"}`, jsonCT), shadow: resp(200, `{"s":"é/"}`, jsonCT)},
		{name: "JSON whitespace", prod: resp(200, "[1, 2,\n 3]"), shadow: resp(200, "[1,2,3]")},
		{name: "gzip vs identity", prod: encoded(t, 200, itemsJSON, []string{"gzip"}, jsonCT), shadow: resp(200, itemsJSON, jsonCT)},
		{name: "gzip levels", prod: encoded(t, 200, strings.Repeat(itemsJSON, 20), []string{"gzip-1"}), shadow: encoded(t, 200, strings.Repeat(itemsJSON, 20), []string{"gzip-9"})},
		{name: "br vs zstd", prod: encoded(t, 200, itemsJSON, []string{"br"}, jsonCT), shadow: encoded(t, 200, itemsJSON, []string{"zstd"}, jsonCT)},
		{name: "deflate zlib vs raw", prod: encoded(t, 200, "plain text body", []string{"deflate"}), shadow: encoded(t, 200, "plain text body", []string{"deflate-raw"})},
		{name: "two codings vs identity", prod: encoded(t, 200, itemsJSON, []string{"gzip", "br"}, jsonCT), shadow: resp(200, itemsJSON, jsonCT)},
		{name: "HEAD", prod: resp(200, "a"), shadow: resp(200, ""), opt: func(o *CompareOptions) { o.Method = "HEAD" }},
		{name: "304", prod: resp(304, ""), shadow: resp(304, "x")},
		{name: "204 vs 200", prod: resp(204, ""), shadow: resp(200, "x"),
			want: []Difference{{Kind: KindStatus, Field: "status", Production: "204", Shadow: "200"}}},
		{name: "same bytes", prod: resp(200, "<html>hi</html>"), shadow: resp(200, "<html>hi</html>")},
		{name: "chunked vs Content-Length", prod: resp(200, "<html>hi</html>", "Transfer-Encoding: chunked"), shadow: resp(200, "<html>hi</html>", "Content-Length: 15")},
		{name: "x-gzip and identity named", prod: xgzip(encoded(t, 200, "abc", []string{"gzip"})), shadow: resp(200, "abc", "Content-Encoding: identity")},

		// Differences.
		{name: "JSON field changed", prod: resp(200, itemsJSON, jsonCT), shadow: resp(200, strings.Replace(itemsJSON, `"price":20`, `"price":21`, 1), jsonCT),
			want: []Difference{{Kind: KindBody, Field: "$['items'][1]['price']", Production: "20", Shadow: "21"}}},
		{name: "JSON field missing", prod: resp(200, itemsJSON, jsonCT), shadow: resp(200, strings.Replace(itemsJSON, `"total":30,`, ``, 1), jsonCT),
			want: []Difference{{Kind: KindBody, Field: "$['total']", Production: "30", Shadow: "", Explanation: "missing in the shadow's answer"}}},
		{name: "JSON object missing, compact value", prod: resp(200, `{"a":{"b": [1, 2]}}`), shadow: resp(200, `{}`),
			want: []Difference{{Kind: KindBody, Field: "$['a']", Production: `{"b":[1,2]}`, Shadow: ""}}},
		{name: "JSON array longer", prod: resp(200, `{"a":[1]}`), shadow: resp(200, `{"a":[1,{"x":2},3]}`),
			want: []Difference{{Kind: KindBody, Field: "$['a'][1]", Shadow: `{"x":2}`}, {Kind: KindBody, Field: "$['a'][2]", Shadow: "3"}}},
		{name: "JSON type differs", prod: resp(200, `{"id":1}`), shadow: resp(200, `{"id":"1"}`),
			want: []Difference{{Kind: KindBody, Field: "$['id']", Production: "1", Shadow: `"1"`, Explanation: "production has a number, the shadow a string"}}},
		{name: "JSON booleans", prod: resp(200, `[true]`), shadow: resp(200, `[false]`),
			want: []Difference{{Kind: KindBody, Field: "$[0]", Production: "true", Shadow: "false"}}},
		{name: "JSON after gzip", prod: encoded(t, 200, `{"a":1}`, []string{"gzip"}), shadow: encoded(t, 200, `{"a":2}`, []string{"zstd"}),
			want: []Difference{{Kind: KindBody, Field: "$['a']", Production: "1", Shadow: "2"}}},
		{name: "JSON by Content-Type, scalar", prod: resp(200, `1.0`, jsonCT), shadow: resp(200, `2`, "Content-Type: application/problem+json"),
			want: []Difference{{Kind: KindHeader, Field: "Content-Type"}, {Kind: KindBody, Field: "$", Production: "1.0", Shadow: "2"}}},
		{name: "duplicate member: the last counts", prod: resp(200, `{"a":1,"a":2}`), shadow: resp(200, `{"a":2}`)},
		{name: "ignore path, bracket form", prod: resp(200, itemsJSON), shadow: resp(200, strings.Replace(itemsJSON, `"page":1`, `"page":2`, 1)),
			opt: func(o *CompareOptions) { o.IgnoreJSONPaths = []string{"$['meta']['page']"} }},
		{name: "ignore path, dotted form and subtree", prod: resp(200, itemsJSON), shadow: resp(200, strings.Replace(itemsJSON, `"page":1`, `"page":2,"x":1`, 1)),
			opt: func(o *CompareOptions) { o.IgnoreJSONPaths = []string{"$.meta"} }},
		{name: "ignore path, wildcard", prod: resp(200, itemsJSON), shadow: resp(200, strings.Replace(strings.Replace(itemsJSON, `"name":"a"`, `"name":"A"`, 1), `"name":"b"`, `"name":"B"`, 1)),
			opt: func(o *CompareOptions) { o.IgnoreJSONPaths = []string{"$.items[*].name", "not a path"} }},
		{name: "ignore path, others still count", prod: resp(200, itemsJSON), shadow: resp(200, strings.Replace(strings.Replace(itemsJSON, `"name":"a"`, `"name":"A"`, 1), `"total":30`, `"total":31`, 1)),
			opt:  func(o *CompareOptions) { o.IgnoreJSONPaths = []string{"$.items[0].name"} },
			want: []Difference{{Kind: KindBody, Field: "$['total']", Production: "30", Shadow: "31"}}},
		{name: "text differs", prod: resp(200, "hello world"), shadow: resp(200, "hello there!"),
			want: []Difference{{Kind: KindBody, Field: "body", Production: "11 bytes", Shadow: "12 bytes", Explanation: "first difference at byte offset 6"}}},
		{name: "text prefix", prod: resp(200, "abc"), shadow: resp(200, "abcd"),
			want: []Difference{{Kind: KindBody, Field: "body", Production: "3 bytes", Shadow: "4 bytes", Explanation: "first difference at byte offset 3"}}},
		{name: "JSON vs not JSON", prod: resp(200, `{"a":1}`), shadow: resp(200, `{"a":1`),
			want: []Difference{{Kind: KindBody, Field: "body", Production: "7 bytes", Shadow: "6 bytes"}}},
		{name: "text after codings", prod: encoded(t, 200, "hello world", []string{"br"}), shadow: encoded(t, 200, "hello World", []string{"deflate"}),
			want: []Difference{{Kind: KindBody, Field: "body", Production: "11 bytes", Shadow: "11 bytes", Explanation: "first difference at byte offset 6"}}},
	}

	// More differing paths than MaxPaths.
	var a, b strings.Builder
	a.WriteString("{")
	b.WriteString("{")
	for i := range 30 {
		if i > 0 {
			a.WriteString(",")
			b.WriteString(",")
		}
		fmt.Fprintf(&a, `"k%02d":%d`, i, i)
		fmt.Fprintf(&b, `"k%02d":%d`, i, i+1)
	}
	a.WriteString("}")
	b.WriteString("}")
	var want20 []Difference
	for i := range 20 {
		want20 = append(want20, Difference{Kind: KindBody, Field: fmt.Sprintf("$['k%02d']", i), Production: fmt.Sprint(i), Shadow: fmt.Sprint(i + 1)})
	}
	cases = append(cases, tc{name: "MaxPaths default", prod: resp(200, a.String()), shadow: resp(200, b.String()),
		want: want20, omitted: 10, explanationMatch: "and 10 more differing JSON paths not listed"})
	cases = append(cases, tc{name: "MaxPaths 2", prod: resp(200, a.String()), shadow: resp(200, b.String()),
		opt: func(o *CompareOptions) { o.MaxPaths = 2 }, want: want20[:2], omitted: 28})

	// Bodies beyond the compare limit: only the hash and length are known.
	partial := func(r *Response, whole string) *Response {
		h := fnv.New64a()
		h.Write([]byte(whole))
		r.BodyComplete, r.BodyHash, r.BodyLen = false, h.Sum64(), int64(len(whole))
		r.Body = r.Body[:min(len(r.Body), 4)]
		return r
	}
	big1, big2 := strings.Repeat("x", 100), strings.Repeat("x", 99)+"y"
	cases = append(cases,
		tc{name: "incomplete, same hash", prod: partial(resp(200, big1), big1), shadow: partial(resp(200, big1), big1)},
		tc{name: "incomplete vs complete, same bytes", prod: partial(resp(200, big1), big1), shadow: resp(200, big1)},
		tc{name: "incomplete identity, other hash", prod: partial(resp(200, big1), big1), shadow: partial(resp(200, big2), big2),
			want: []Difference{{Kind: KindBody, Field: "body", Production: "100 bytes", Shadow: "100 bytes"}}},
		tc{name: "incomplete gzip, other hash", prod: partial(resp(200, big1, "Content-Encoding: gzip"), big1),
			shadow: partial(resp(200, big2, "Content-Encoding: gzip"), big2), unverified: UnverifiedIncomplete},
		tc{name: "incomplete, other codings", prod: partial(resp(200, big1, "Content-Encoding: gzip"), big1),
			shadow: partial(resp(200, big1), big1), unverified: UnverifiedIncomplete},
		tc{name: "unknown coding", prod: resp(200, "abc", "Content-Encoding: compress"), shadow: resp(200, "abd"), unverified: UnverifiedEncoding},
		tc{name: "corrupt gzip", prod: resp(200, "not gzip", "Content-Encoding: gzip"), shadow: resp(200, "not gzip!", "Content-Encoding: gzip"), unverified: UnverifiedEncoding},
		tc{name: "same undecodable bytes", prod: resp(200, "not gzip", "Content-Encoding: gzip"), shadow: resp(200, "not gzip", "Content-Encoding: gzip")},
		tc{name: "JSON with too many values", prod: resp(200, "["+strings.Repeat("0,", maxJSONValues)+"0]"), shadow: resp(200, "["+strings.Repeat("0,", maxJSONValues)+"1]"),
			unverified: UnverifiedTooLarge},
		tc{name: "zip bomb", prod: encoded(t, 200, strings.Repeat("\x00", 2<<20), []string{"gzip"}), shadow: encoded(t, 200, "small", []string{"gzip"}),
			opt: func(o *CompareOptions) { o.MaxDecodedBytes = 1 << 20 }, unverified: UnverifiedTooLarge},
		tc{name: "zstd bomb", prod: encoded(t, 200, strings.Repeat("\x00", 2<<20), []string{"zstd"}), shadow: encoded(t, 200, "small", []string{"zstd"}),
			opt: func(o *CompareOptions) { o.MaxDecodedBytes = 1 << 20 }, unverified: UnverifiedTooLarge},
		tc{name: "brotli bomb", prod: encoded(t, 200, strings.Repeat("\x00", 2<<20), []string{"br"}), shadow: resp(200, "small"),
			opt: func(o *CompareOptions) { o.MaxDecodedBytes = 1 << 20 }, unverified: UnverifiedTooLarge},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opt := defaultOptions()
			if tc.opt != nil {
				tc.opt(opt)
			}
			res := CompareDetailed(tc.prod, tc.shadow, opt)
			got := res.Diffs
			if len(got) != len(tc.want) {
				t.Fatalf("got %d differences %+v, want %d %+v", len(got), got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Kind != w.Kind || g.Field != w.Field || (w.Kind != KindHeader && (g.Production != w.Production || g.Shadow != w.Shadow)) {
					t.Errorf("difference %d: got %+v, want %+v", i, g, w)
				}
				if w.Explanation != "" && g.Explanation != w.Explanation {
					t.Errorf("difference %d: explanation %q, want %q", i, g.Explanation, w.Explanation)
				}
			}
			if tc.explanationMatch != "" && !strings.Contains(got[len(got)-1].Explanation, tc.explanationMatch) {
				t.Errorf("last explanation %q lacks %q", got[len(got)-1].Explanation, tc.explanationMatch)
			}
			if res.BodyUnverified != (tc.unverified != "") || res.UnverifiedReason != tc.unverified {
				t.Errorf("unverified = %v %q, want %q", res.BodyUnverified, res.UnverifiedReason, tc.unverified)
			}
			if res.BodyPathsOmitted != tc.omitted {
				t.Errorf("paths omitted = %d, want %d", res.BodyPathsOmitted, tc.omitted)
			}
			// Compare is CompareDetailed's differences.
			if again := Compare(tc.prod, tc.shadow, opt); fmt.Sprint(again) != fmt.Sprint(got) {
				t.Errorf("Compare = %+v, CompareDetailed = %+v", again, got)
			}
		})
	}
}

// TestCompareConcurrent runs comparisons that share the pooled decoders and
// scratch space from several goroutines (run it with -race).
func TestCompareConcurrent(t *testing.T) {
	body := strings.Repeat(itemsJSON, 1)
	changed := strings.Replace(body, `"total":30`, `"total":31`, 1)
	pairs := []struct {
		prod, shadow *Response
		want         string
	}{
		{encoded(t, 200, body, []string{"gzip"}), encoded(t, 200, changed, []string{"br"}), "[body $['total']]"},
		{encoded(t, 200, body, []string{"zstd"}), encoded(t, 200, body, []string{"deflate"}), "[]"},
		{encoded(t, 200, changed, []string{"deflate-raw"}), encoded(t, 200, body, []string{"zstd"}), "[body $['total']]"},
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				p := pairs[(g+i)%len(pairs)]
				if got := fmt.Sprint(fields(Compare(p.prod, p.shadow, defaultOptions()))); got != p.want {
					errs <- fmt.Sprintf("goroutine %d: got %s, want %s", g, got, p.want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestCompareNilOptions(t *testing.T) {
	got := Compare(resp(200, `{"a":1}`, "X-A: 1"), resp(200, `{"a":2}`, "X-A: 2"), nil)
	if want := []string{"header X-A", "body $['a']"}; fmt.Sprint(fields(got)) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", fields(got), want)
	}
}

func TestDeepJSON(t *testing.T) {
	nest := func(depth int, leaf string) string {
		return strings.Repeat(`{"a":`, depth) + leaf + strings.Repeat("}", depth)
	}
	for _, tc := range []struct {
		name  string
		a, b  string
		field string // "" = no difference
	}{
		{name: "numbers beyond the bound compare as bytes", a: nest(100, "1"), b: nest(100, "1.0"), field: "$" + strings.Repeat("['a']", maxJSONDepth)},
		{name: "equal, deep, same bytes modulo spaces", a: nest(100, "1"), b: strings.ReplaceAll(nest(100, "1"), ":", ": ")},
		{name: "differs deep", a: nest(100, "1"), b: nest(100, "2"), field: "$" + strings.Repeat("['a']", maxJSONDepth)},
		{name: "differs above the bound", a: nest(10, "1"), b: nest(10, "2"), field: "$" + strings.Repeat("['a']", 10)},
		{name: "very deep arrays", a: strings.Repeat("[", 9000) + strings.Repeat("]", 9000), b: strings.Repeat("[", 9000) + "1" + strings.Repeat("]", 9000),
			field: "$" + strings.Repeat("[0]", maxJSONDepth)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compare(resp(200, tc.a), resp(200, tc.b), nil)
			if tc.field == "" {
				if len(got) != 0 {
					t.Fatalf("got %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Field != tc.field {
				t.Fatalf("got %+v, want one difference at %s", got, tc.field)
			}
		})
	}
}

// BenchmarkCompareJSON compares a ~4 KB JSON body pair differing in one field.
func BenchmarkCompareJSON(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"page":1,"items":[`)
	for i := range 48 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"id":%d,"name":"item %d","price":%d.99,"tags":["a","b"],"stock":{"n":%d,"ok":true}}`, i, i, i, i*3)
	}
	sb.WriteString(`],"total":48}`)
	a := sb.String()
	bb := strings.Replace(a, `"price":17.99`, `"price":18.99`, 1)
	prod := resp(200, a, "Content-Type: application/json", "Cache-Control: no-store")
	shadow := resp(200, bb, "Content-Type: application/json", "Cache-Control: no-store")
	opt := defaultOptions()
	if d := Compare(prod, shadow, opt); len(d) != 1 || d[0].Field != "$['items'][17]['price']" {
		b.Fatalf("unexpected differences %+v", d)
	}
	b.SetBytes(int64(len(a)))
	b.ReportAllocs()
	for b.Loop() {
		Compare(prod, shadow, opt)
	}
}

// The incident issue 8 describes: the new stack sets the session cookie
// without Domain and with another lifetime, drops Cache-Control and changes
// one JSON field; key order, compression, Date and the cookie's value do
// not count.
func ExampleCompare() {
	prod := &Response{Status: 200, BodyComplete: true, Header: http.Header{
		"Date":          {"Mon, 30 Nov 2026 08:00:00 GMT"},
		"Cache-Control": {"private, max-age=0"},
		"Content-Type":  {"application/json"},
		"Set-Cookie":    {"sid=s3cr3t; Path=/; Domain=.example.com; Expires=Mon, 30 Nov 2026 10:00:00 GMT; HttpOnly"},
	}, Body: []byte(`{"user":{"id":7,"name":"ann"},"roles":["admin"]}`)}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(`{"roles":["admin","beta"],"user":{"name":"ann","id":7.0}}`))
	w.Close()
	shadow := &Response{Status: 200, BodyComplete: true, Header: http.Header{
		"Date":             {"Mon, 30 Nov 2026 08:00:01 GMT"},
		"Content-Type":     {"application/json"},
		"Content-Encoding": {"gzip"},
		"Set-Cookie":       {"sid=0th3r; Path=/; Max-Age=86400; HttpOnly"},
	}, Body: gz.Bytes()}
	opt := &CompareOptions{IgnoreHeaders: map[string]bool{}, Host: "example.com", Method: "GET", Path: "/account"}
	for _, h := range DefaultIgnoredHeaders() {
		opt.IgnoreHeaders[h] = true
	}
	for _, d := range Compare(prod, shadow, opt) {
		fmt.Printf("%s %s: %q vs %q\n  %s\n", d.Kind, d.Field, d.Production, d.Shadow, d.Explanation)
	}
	// Output:
	// header Cache-Control: "private, max-age=0" vs ""
	//   caching differs: browsers and CDNs keep the answer for another time, or not at all
	// cookie sid; Domain: "Domain=.example.com" vs ""
	//   production sets sid with Domain=.example.com, the shadow without Domain: a browser that holds both keeps two cookies named sid
	// cookie sid; Max-Age: "Expires=Mon, 30 Nov 2026 10:00:00 GMT (7200 s after Date)" vs "Max-Age=86400"
	//   production keeps sid for 2h0m0s, the shadow for 24h0m0s: it expires at another time
	// body $['roles'][1]: "" vs "\"beta\""
	//   only in the shadow's array (longer: 2 vs 1 elements)
}

// A complete body is hashed here as pkg/httpx hashes one beyond its keep
// limit (FNV-1a 64, the published vectors, also checked there), so that
// the two sides' hashes are comparable.
func TestBodyHashFNV1a64(t *testing.T) {
	for in, want := range map[string]uint64{"": 0xcbf29ce484222325, "a": 0xaf63dc4c8601ec8c, "foobar": 0x85944171f73967e8} {
		if got, n := bodyHash(&Response{Body: []byte(in), BodyComplete: true}); got != want || n != int64(len(in)) {
			t.Errorf("bodyHash(%q) = %#x, %d; want %#x, %d", in, got, n, want, len(in))
		}
	}
}
