package verdict

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// swapped returns the differences as the reverse comparison should report
// them: production and shadow swapped, in a canonical order, explanations
// left out (they name the sides).
func swapped(ds []Difference, swap bool) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		p, s := d.Production, d.Shadow
		if swap {
			p, s = s, p
		}
		out = append(out, fmt.Sprintf("%s|%s|%q|%q", d.Kind, d.Field, p, s))
	}
	slices.Sort(out)
	return out
}

// FuzzJSONDiff checks the body comparison on any pair of bodies: no panic,
// nothing differs from itself, and comparing b with a reports the same
// fields as a with b, values swapped.
func FuzzJSONDiff(f *testing.F) {
	for _, s := range [][2]string{
		{itemsJSON, `{"total":30,"items":[{"id":1,"price":10,"name":"a"}],"meta":{"page":1,"next":null}}`},
		{`{"a":1.0,"b":[1,2,3]}`, `{"b":[1,2],"a":1}`},
		{`{"a":1,"a":2}`, `{"a":1}`},
		{`[{"\u00e9":"x"}]`, `[{"é":"\u0078"}]`},
		{`1e2`, `100`},
		{`{"a":[[[[[[1]]]]]]}`, `{"a":[[[[[[2]]]]]]}`},
		{strings.Repeat("[", 80) + strings.Repeat("]", 80), strings.Repeat("[", 80) + "1" + strings.Repeat("]", 80)},
		{`"str"`, `null`},
		{`{"x":true}`, `{"x":false}`},
		{`not json`, `{"a":1}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	opt := &CompareOptions{MaxPaths: 5, IgnoreJSONPaths: []string{"$.ignored", "$.list[*].at"}}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ra := resp(200, string(a), "Content-Type: application/json")
		rb := resp(200, string(b), "Content-Type: application/json")
		if d := CompareDetailed(ra, ra, opt); len(d.Diffs) != 0 || d.BodyUnverified {
			t.Fatalf("a differs from itself: %+v", d)
		}
		ab := CompareDetailed(ra, rb, opt)
		ba := CompareDetailed(rb, ra, opt)
		if x, y := swapped(ab.Diffs, false), swapped(ba.Diffs, true); !slices.Equal(x, y) {
			t.Fatalf("not symmetric:\n a,b: %q\n b,a: %q", x, y)
		}
		if ab.BodyPathsOmitted != ba.BodyPathsOmitted {
			t.Fatalf("omitted %d vs %d", ab.BodyPathsOmitted, ba.BodyPathsOmitted)
		}
		if len(ab.Diffs) > opt.MaxPaths {
			t.Fatalf("%d differences, more than MaxPaths %d", len(ab.Diffs), opt.MaxPaths)
		}
	})
}

// FuzzCookieCompare checks the Set-Cookie comparison on any pair of header
// blocks (lines separated by \n): no panic, nothing differs from itself,
// symmetric fields, and every difference a cookie one with an explanation.
func FuzzCookieCompare(f *testing.F) {
	for _, s := range [][2]string{
		{"sid=abc; Path=/; Domain=.example.com; Max-Age=3600; HttpOnly", "sid=xyz; Path=/; Max-Age=3600; HttpOnly"},
		{"sid=abc; Expires=Mon, 30 Nov 2026 09:00:00 GMT", "sid=abc; Max-Age=3600"},
		{"sid=; Max-Age=0\nsid=1; Path=/", "sid=2; Path=/; Secure; SameSite=None"},
		{"a=1; SameSite=Strict; Partitioned; Secure", "a=1; SameSite=lax"},
		{"a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "a=1; Expires=garbage"},
		{"=bad", "b=1; Max-Age=-5"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ra := withCookies(date0, strings.Split(a, "\n")...)
		rb := withCookies("Mon, 30 Nov 2026 08:00:20 GMT", strings.Split(b, "\n")...)
		opt := &CompareOptions{Path: "/app/x", IgnoreHeaders: map[string]bool{"Date": true}}
		if d := Compare(ra, ra, opt); len(d) != 0 {
			t.Fatalf("a differs from itself: %+v", d)
		}
		if d := Compare(rb, rb, opt); len(d) != 0 {
			t.Fatalf("b differs from itself: %+v", d)
		}
		ab := Compare(ra, rb, opt)
		ba := Compare(rb, ra, opt)
		if x, y := swapped(ab, false), swapped(ba, true); !slices.Equal(x, y) {
			t.Fatalf("not symmetric:\n a,b: %q\n b,a: %q", x, y)
		}
		for _, d := range ab {
			if d.Kind != KindCookie || d.Explanation == "" {
				t.Fatalf("unexpected difference %+v", d)
			}
		}
	})
}

// FuzzDecodeBody feeds any bytes to each content decoder: no panic, output
// within the bound, and a decodable body compares equal to its decoding.
func FuzzDecodeBody(f *testing.F) {
	codings := []string{"gzip", "deflate", "br", "zstd", "gzip, br", "identity"}
	for i, c := range codings[:4] {
		f.Add(encode(f, []byte(itemsJSON), c), uint8(i))
	}
	f.Add(encode(f, []byte(itemsJSON), "deflate-raw"), uint8(1))
	f.Add(encode(f, encode(f, []byte(itemsJSON), "gzip"), "br"), uint8(4))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), uint8(0))
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, body []byte, pick uint8) {
		coding := codings[int(pick)%len(codings)]
		cs := contentCodings([]string{coding})
		out, release, err := decodeBody(body, cs, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("%s: decoded %d bytes, beyond the bound %d", coding, len(out), limit)
		}
		var plain []byte
		if err == nil {
			plain = append(plain, out...)
		}
		release()
		if err != nil {
			return
		}
		enc := resp(200, string(body), "Content-Encoding: "+coding)
		opt := &CompareOptions{MaxDecodedBytes: limit, IgnoreHeaders: map[string]bool{"Content-Encoding": true}}
		if d := CompareDetailed(enc, resp(200, string(plain)), opt); len(d.Diffs) != 0 || d.BodyUnverified {
			t.Fatalf("%s: a body differs from its own decoding: %+v", coding, d)
		}
	})
}
