package verdict

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	date0 = "Mon, 30 Nov 2026 08:00:00 GMT"
	// Values no cookie difference may ever show.
	prodValue   = "PRODSECRETVALUE"
	shadowValue = "SHADOWSECRETVALUE"
)

// withCookies builds a response with a Date (when date != "") and Set-Cookie lines.
func withCookies(date string, lines ...string) *Response {
	h := http.Header{}
	if date != "" {
		h.Set("Date", date)
	}
	for _, l := range lines {
		h.Add("Set-Cookie", l)
	}
	return &Response{Status: 200, Header: h, BodyComplete: true}
}

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func TestCompareCookies(t *testing.T) {
	t0, _ := http.ParseTime(date0)
	in := func(d time.Duration) string { return httpDate(t0.Add(d)) }
	for _, tc := range []struct {
		name               string
		prodDate, shDate   string
		prod, shadow       []string
		path               string // CompareOptions.Path
		want               []Difference
		explanationContain []string // one per wanted difference ("" = not checked)
	}{
		// Not differences.
		{name: "values differ only", prodDate: date0, shDate: date0,
			prod:   []string{"sid=" + prodValue + "; Path=/; Domain=.example.com; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"},
			shadow: []string{"sid=" + shadowValue + "; Path=/; Domain=.example.com; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"}},
		{name: "Expires vs equivalent Max-Age", prodDate: date0, shDate: date0,
			prod:   []string{"sid=" + prodValue + "; Path=/; Expires=" + in(time.Hour)},
			shadow: []string{"sid=" + shadowValue + "; Path=/; Max-Age=3600"}},
		{name: "Expires against each side's own Date", prodDate: date0, shDate: in(5 * time.Minute),
			prod:   []string{"sid=1; Expires=" + in(time.Hour)},
			shadow: []string{"sid=2; Expires=" + in(time.Hour+5*time.Minute)}},
		{name: "Expires against the other side's Date", prodDate: date0, shDate: "",
			prod:   []string{"sid=1; Max-Age=3600"},
			shadow: []string{"sid=2; Expires=" + in(time.Hour)}},
		{name: "within 60 s", prodDate: date0, shDate: date0, prod: []string{"a=1; Max-Age=3600"}, shadow: []string{"a=1; Max-Age=3659"}},
		{name: "within 1 %", prodDate: date0, shDate: date0, prod: []string{"a=1; Max-Age=86400"}, shadow: []string{"a=1; Max-Age=87200"}},
		{name: "Domain case and leading dot", prodDate: date0, shDate: date0, prod: []string{"a=1; Domain=.Example.COM"}, shadow: []string{"a=1; Domain=example.com"}},
		{name: "deleted both ways", prodDate: date0, shDate: date0,
			prod: []string{"sid=; Max-Age=0"}, shadow: []string{"sid=deleted; Expires=Thu, 01 Jan 1970 00:00:00 GMT"}},
		{name: "no Date: Expires vs Expires", prod: []string{"a=1; Expires=" + in(time.Hour)}, shadow: []string{"a=2; Expires=" + in(time.Hour+30*time.Second)}},
		{name: "no Date: old Expires is a deletion", prod: []string{"a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT"}, shadow: []string{"a=2; Max-Age=0"}},
		{name: "default path of the request", prodDate: date0, shDate: date0, path: "/login",
			prod: []string{"a=1; Path=/"}, shadow: []string{"a=1"}},
		{name: "unparseable Expires is a session cookie", prodDate: date0, shDate: date0,
			prod: []string{"a=1; Expires=someday"}, shadow: []string{"a=1"}},
		{name: "unknown SameSite is none", prodDate: date0, shDate: date0,
			prod: []string{"a=1; SameSite=Sometimes"}, shadow: []string{"a=1"}},
		{name: "invalid lines are ignored", prodDate: date0, shDate: date0,
			prod: []string{"=novalue", "a=1"}, shadow: []string{"a=1"}},
		{name: "order of lines", prodDate: date0, shDate: date0,
			prod: []string{"a=1; Path=/", "b=1; Path=/x", "a=2; Path=/y"}, shadow: []string{"a=3; Path=/y", "a=4; Path=/", "b=1; Path=/x"}},

		// Differences.
		{name: "the logout incident: Domain dropped", prodDate: date0, shDate: date0,
			prod:               []string{"sid=" + prodValue + "; Path=/; Domain=.example.com; HttpOnly"},
			shadow:             []string{"sid=" + shadowValue + "; Path=/; HttpOnly"},
			want:               []Difference{{Kind: KindCookie, Field: "sid; Domain", Production: "Domain=.example.com", Shadow: ""}},
			explanationContain: []string{"production sets sid with Domain=.example.com, the shadow without Domain: a browser that holds both keeps two cookies named sid"}},
		{name: "Domain other", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Domain=example.com"}, shadow: []string{"sid=1; Domain=www.example.com"},
			want: []Difference{{Kind: KindCookie, Field: "sid; Domain", Production: "Domain=example.com", Shadow: "Domain=www.example.com"}}},
		{name: "Path", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Path=/"}, shadow: []string{"sid=1; Path=/app"},
			want:               []Difference{{Kind: KindCookie, Field: "sid; Path", Production: "Path=/", Shadow: "Path=/app"}},
			explanationContain: []string{"two cookies named sid"}},
		{name: "Path absent, request path unknown", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Path=/"}, shadow: []string{"sid=1"},
			want: []Difference{{Kind: KindCookie, Field: "sid; Path", Production: "Path=/", Shadow: ""}}},
		{name: "Path absent, default path differs", prodDate: date0, shDate: date0, path: "/app/login",
			prod: []string{"sid=1; Path=/"}, shadow: []string{"sid=1"},
			want: []Difference{{Kind: KindCookie, Field: "sid; Path", Production: "Path=/", Shadow: ""}}},
		{name: "Secure and HttpOnly", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Secure"}, shadow: []string{"sid=1; HttpOnly"},
			want: []Difference{
				{Kind: KindCookie, Field: "sid; Secure", Production: "Secure", Shadow: ""},
				{Kind: KindCookie, Field: "sid; HttpOnly", Production: "", Shadow: "HttpOnly"},
			},
			explanationContain: []string{"production sets sid with Secure, the shadow without", "the shadow sets sid with HttpOnly, production without"}},
		{name: "SameSite", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; SameSite=Strict"}, shadow: []string{"sid=1; SameSite=None; Secure"},
			want: []Difference{
				{Kind: KindCookie, Field: "sid; Secure", Shadow: "Secure"},
				{Kind: KindCookie, Field: "sid; SameSite", Production: "SameSite=Strict", Shadow: "SameSite=None"},
			}},
		{name: "Partitioned", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Secure; Partitioned"}, shadow: []string{"sid=1; Secure"},
			want: []Difference{{Kind: KindCookie, Field: "sid; Partitioned", Production: "Partitioned"}}},
		{name: "lifetime beyond tolerance", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Max-Age=3600"}, shadow: []string{"sid=1; Max-Age=7200"},
			want:               []Difference{{Kind: KindCookie, Field: "sid; Max-Age", Production: "Max-Age=3600", Shadow: "Max-Age=7200"}},
			explanationContain: []string{"production keeps sid for 1h0m0s, the shadow for 2h0m0s"}},
		{name: "lifetime: wrong expiry", prodDate: date0, shDate: date0,
			prod: []string{"sid=1; Expires=" + in(30*24*time.Hour)}, shadow: []string{"sid=1; Max-Age=1209600"},
			want: []Difference{{Kind: KindCookie, Field: "sid; Max-Age", Production: "Expires=" + in(30*24*time.Hour) + " (2592000 s after Date)", Shadow: "Max-Age=1209600"}}},
		{name: "session vs persistent", prodDate: date0, shDate: date0,
			prod: []string{"sid=1"}, shadow: []string{"sid=1; Max-Age=86400"},
			want:               []Difference{{Kind: KindCookie, Field: "sid; Max-Age", Production: "session", Shadow: "Max-Age=86400"}},
			explanationContain: []string{"until the browser closes"}},
		{name: "deletion on one side", prodDate: date0, shDate: date0,
			prod: []string{"sid=; Max-Age=0; Path=/"}, shadow: []string{"sid=x; Max-Age=3600; Path=/"},
			want:               []Difference{{Kind: KindCookie, Field: "sid; deletion", Production: "Max-Age=0", Shadow: "Max-Age=3600"}},
			explanationContain: []string{"production deletes sid"}},
		{name: "deletion by Expires before Date", prodDate: date0, shDate: date0,
			prod: []string{"sid=1"}, shadow: []string{"sid=; Expires=" + in(-time.Hour)},
			want:               []Difference{{Kind: KindCookie, Field: "sid; deletion", Production: "session", Shadow: "Expires=" + in(-time.Hour) + " (not after Date)"}},
			explanationContain: []string{"the shadow deletes sid"}},
		{name: "set on production only", prodDate: date0, shDate: date0,
			prod: []string{"sid=" + prodValue + "; Path=/; HttpOnly"}, shadow: nil,
			want:               []Difference{{Kind: KindCookie, Field: "sid", Production: "Path=/; HttpOnly", Shadow: ""}},
			explanationContain: []string{"production sets sid, the shadow does not"}},
		{name: "set on the shadow only", prodDate: date0, shDate: date0,
			prod: []string{"a=1"}, shadow: []string{"a=1", "tracking=" + shadowValue},
			want:               []Difference{{Kind: KindCookie, Field: "tracking", Production: "", Shadow: "set, no attributes"}},
			explanationContain: []string{"the shadow sets tracking, production does not"}},
		{name: "deleted on production only", prodDate: date0, shDate: date0,
			prod: []string{"sid=; Max-Age=0"}, shadow: nil,
			want:               []Difference{{Kind: KindCookie, Field: "sid", Production: "Max-Age=0"}},
			explanationContain: []string{"production deletes sid, the shadow does not"}},
		{name: "set twice vs once", prodDate: date0, shDate: date0,
			prod:   []string{"sid=; Domain=.example.com; Max-Age=0", "sid=" + prodValue + "; Path=/"},
			shadow: []string{"sid=" + shadowValue + "; Path=/"},
			want: []Difference{{Kind: KindCookie, Field: "sid",
				Production: "2 lines: Path=/ | Domain=.example.com; Max-Age=0", Shadow: "Path=/"}},
			explanationContain: []string{"production sets sid 2 times, the shadow once"}},
		{name: "names sorted", prodDate: date0, shDate: date0,
			prod: []string{"b=1; Secure", "a=1; Secure"}, shadow: []string{"b=1", "a=1"},
			want: []Difference{{Kind: KindCookie, Field: "a; Secure", Production: "Secure"}, {Kind: KindCookie, Field: "b; Secure", Production: "Secure"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := defaultOptions()
			opt.Path = tc.path
			got := Compare(withCookies(tc.prodDate, tc.prod...), withCookies(tc.shDate, tc.shadow...), opt)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d differences %+v, want %+v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Kind != w.Kind || g.Field != w.Field || g.Production != w.Production || g.Shadow != w.Shadow {
					t.Errorf("difference %d: got %+v, want %+v", i, g, w)
				}
				if g.Explanation == "" || strings.Contains(g.Explanation, "\n") {
					t.Errorf("difference %d: explanation %q is not one line", i, g.Explanation)
				}
				if i < len(tc.explanationContain) && !strings.Contains(g.Explanation, tc.explanationContain[i]) {
					t.Errorf("difference %d: explanation %q lacks %q", i, g.Explanation, tc.explanationContain[i])
				}
			}
			for _, g := range got {
				if s := g.Field + g.Production + g.Shadow + g.Explanation; strings.Contains(s, prodValue) || strings.Contains(s, shadowValue) {
					t.Errorf("a cookie value leaked: %+v", g)
				}
			}
		})
	}
}

func TestDefaultCookiePath(t *testing.T) {
	for in, want := range map[string]string{"": "/", "x": "/", "/": "/", "/login": "/", "/app/login": "/app", "/a/b/": "/a/b"} {
		if got := defaultCookiePath(in); got != want {
			t.Errorf("defaultCookiePath(%q) = %q, want %q", in, got, want)
		}
	}
}
