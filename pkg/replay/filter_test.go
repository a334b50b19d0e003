package replay

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

func TestSplitTarget(t *testing.T) {
	tests := []struct{ in, auth, path, query string }{
		{"/", "", "/", ""},
		{"/a/b?x=1", "", "/a/b", "x=1"},
		{"/a?", "", "/a", ""},
		{"*", "", "*", ""},
		{"http://h.example:81/p?q=1", "h.example:81", "/p", "q=1"},
		{"http://h.example", "h.example", "/", ""},
		{"http://h.example?q", "h.example", "/", "q"},
		{"/redirect?to=http://x/y", "", "/redirect", "to=http://x/y"},
	}
	for _, tt := range tests {
		a, p, q := splitTarget([]byte(tt.in))
		if string(a) != tt.auth || string(p) != tt.path || string(q) != tt.query {
			t.Errorf("splitTarget(%q) = %q %q %q; want %q %q %q", tt.in, a, p, q, tt.auth, tt.path, tt.query)
		}
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		cookies []string
		name    string
		want    string
		ok      bool
	}{
		{[]string{"session=abc"}, "session", "abc", true},
		{[]string{"a=1; session=abc; b=2"}, "session", "abc", true},
		{[]string{"a=1", "session=\"q\""}, "session", "q", true},
		{[]string{"xsession=abc"}, "session", "", false},
		{[]string{"session="}, "session", "", false},
		{nil, "session", "", false},
	}
	for _, tt := range tests {
		var fields []httpx.Field
		for _, c := range tt.cookies {
			fields = append(fields, httpx.Field{Name: []byte("cookie"), Value: []byte(c)})
		}
		got, ok := cookieValue(fields, tt.name)
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("cookieValue(%q, %q) = %q, %v; want %q, %v", tt.cookies, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestSampling checks that the decision is the same for the same key, every
// time and in every Replayer (receivers behind an NLB must agree), and that
// about SamplePercent of the keys are in.
func TestSampling(t *testing.T) {
	const keys = 20000
	tests := []struct {
		name    string
		key     string
		percent float64
		ex      func(i int) *httpx.Exchange
	}{
		{"client-ip 30%", "client-ip", 30, func(i int) *httpx.Exchange {
			return mkEx(t, "GET / HTTP/1.1\nHost: h", "", fmt.Sprintf("10.%d.%d.%d:1234", i>>16&255, i>>8&255, i&255))
		}},
		{"xff 20%, one ALB node as the peer", "xff", 20, func(i int) *httpx.Exchange {
			return mkEx(t, fmt.Sprintf("GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 198.51.100.7, 10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "", testClient)
		}},
		{"header 50%", "header:X-User", 50, func(i int) *httpx.Exchange {
			return mkEx(t, fmt.Sprintf("GET / HTTP/1.1\nHost: h\nx-user: user-%d", i), "", testClient)
		}},
		{"cookie 5%", "cookie:sid", 5, func(i int) *httpx.Exchange {
			return mkEx(t, fmt.Sprintf("GET / HTTP/1.1\nHost: h\nCookie: theme=dark; sid=%x; lang=en", i*7919), "", testClient)
		}},
		{"cookie 0.5%", "cookie:sid", 0.5, func(i int) *httpx.Exchange {
			return mkEx(t, fmt.Sprintf("GET / HTTP/1.1\nHost: h\nCookie: sid=s%d", i), "", testClient)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newR := func() *Replayer {
				cfg := testConfig(mustURL(t, "http://shadow"))
				cfg.SamplePercent, cfg.SampleKey = tt.percent, tt.key
				r, err := New(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			r1, r2 := newR(), newR()
			in := 0
			for i := range keys {
				ex := tt.ex(i)
				d := r1.sampled(ex)
				for range 3 {
					if r1.sampled(ex) != d || r2.sampled(ex) != d {
						t.Fatalf("key %d: decision changed", i)
					}
				}
				if d {
					in++
				}
			}
			// 5 standard deviations of a binomial: fails by chance ~never.
			p := tt.percent / 100
			tol := 5 * math.Sqrt(keys*p*(1-p))
			if got := float64(in); math.Abs(got-keys*p) > tol {
				t.Errorf("%d of %d keys in, want %.0f ± %.0f", in, keys, keys*p, tol)
			}
			if miss := r1.Stats().Snapshot().SampleKeyMissing; miss != 0 {
				t.Errorf("SampleKeyMissing = %d, want 0", miss)
			}
		})
	}
}

// TestSamplingFallback: without the key header, requests are sampled on the
// client address, and it is counted.
func TestSamplingFallback(t *testing.T) {
	cfg := testConfig(mustURL(t, "http://shadow"))
	cfg.SamplePercent, cfg.SampleKey = 50, "header:X-User"
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	byHeader := mkEx(t, "GET / HTTP/1.1\nX-User: 192.0.2.7", "", "203.0.113.1:1")
	byAddr := mkEx(t, "GET / HTTP/1.1", "", "192.0.2.7:1")
	if r.sampled(byHeader) != r.sampled(byAddr) {
		t.Errorf("the same key bytes gave different decisions")
	}
	if got := r.Stats().Snapshot().SampleKeyMissing; got != 1 {
		t.Errorf("SampleKeyMissing = %d, want 1", got)
	}
}

func TestFilters(t *testing.T) {
	re := regexp.MustCompile
	tests := []struct {
		name string
		mod  func(*Config)
		raw  string
		big  bool // TooLarge
		want StatsSnapshot
	}{
		{"GET replayed", nil, "GET /x HTTP/1.1", false, StatsSnapshot{Requests: 1, Accepted: 1}},
		{"HEAD replayed", nil, "HEAD /x HTTP/1.1", false, StatsSnapshot{Requests: 1, Accepted: 1}},
		{"OPTIONS replayed", nil, "OPTIONS * HTTP/1.1", false, StatsSnapshot{Requests: 1, Accepted: 1}},
		{"POST filtered by default", nil, "POST /login HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredMethod: 1}},
		{"DELETE filtered by default", nil, "DELETE /x HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredMethod: 1}},
		{"lower-case method is another method", nil, "get /x HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredMethod: 1}},
		{"POST allowed", func(c *Config) { c.Methods = []string{"post"} }, "POST /login HTTP/1.1", false, StatsSnapshot{Requests: 1, Accepted: 1}},
		{"GET not in custom list", func(c *Config) { c.Methods = []string{"POST"} }, "GET /x HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredMethod: 1}},
		{"include matches", func(c *Config) { c.IncludePath = []*regexp.Regexp{re(`^/api/`), re(`^/static/`)} }, "GET /static/a.css HTTP/1.1", false, StatsSnapshot{Requests: 1, Accepted: 1}},
		{"include misses", func(c *Config) { c.IncludePath = []*regexp.Regexp{re(`^/api/`)} }, "GET /home HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredPath: 1}},
		{"include ignores query", func(c *Config) { c.IncludePath = []*regexp.Regexp{re(`^/api/`)} }, "GET /home?next=/api/ HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredPath: 1}},
		{"include on absolute form path", func(c *Config) { c.IncludePath = []*regexp.Regexp{re(`^/api/`)} }, "GET http://h/api/x HTTP/1.1", false, StatsSnapshot{Requests: 1, Accepted: 1}},
		{"exclude matches", func(c *Config) { c.ExcludePath = []*regexp.Regexp{re(`^/admin`)} }, "GET /admin/users HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredPath: 1}},
		{"exclude beats include", func(c *Config) {
			c.IncludePath = []*regexp.Regexp{re(`^/api/`)}
			c.ExcludePath = []*regexp.Regexp{re(`/internal`)}
		}, "GET /api/internal/x HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredPath: 1}},
		{"method before path", func(c *Config) { c.ExcludePath = []*regexp.Regexp{re(`.`)} }, "POST /x HTTP/1.1", false, StatsSnapshot{Requests: 1, FilteredMethod: 1}},
		{"sampled out at 0%", func(c *Config) { c.SamplePercent = 0 }, "GET /x HTTP/1.1", false, StatsSnapshot{Requests: 1, SampledOut: 1}},
		{"too large", nil, "GET /x HTTP/1.1", true, StatsSnapshot{Requests: 1, TooLarge: 1}},
		{"sampled out before too large", func(c *Config) { c.SamplePercent = 0 }, "GET /x HTTP/1.1", true, StatsSnapshot{Requests: 1, SampledOut: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(mustURL(t, "http://shadow"))
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			r, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ex := mkEx(t, tt.raw, "", testClient)
			ex.Req.TooLarge = tt.big
			r.Request(ex)
			r.Response(ex)
			s := r.Stats().Snapshot()
			type counts struct{ Requests, FilteredMethod, FilteredPath, SampledOut, TooLarge, Accepted uint64 }
			got := counts{s.Requests, s.FilteredMethod, s.FilteredPath, s.SampledOut, s.TooLarge, s.Accepted}
			w := counts{tt.want.Requests, tt.want.FilteredMethod, tt.want.FilteredPath, tt.want.SampledOut, tt.want.TooLarge, tt.want.Accepted}
			if got != w {
				t.Errorf("stats %+v, want %+v", got, w)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
			defer cancel()
			if err := r.Drain(ctx); err == nil {
				t.Fatal("Drain without Run returned nil after its deadline")
			}
			if err := r.Stats().Snapshot().Check(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSampleKeyXFF checks which address the default key takes: the last one
// of the last X-Forwarded-For header (what the load balancer appended,
// whatever the client claimed before it), and the peer when there is none.
func TestSampleKeyXFF(t *testing.T) {
	k := SampleKey{Kind: SampleXFF}
	tests := []struct {
		name, head   string
		want         string
		wantFallback bool
	}{
		{"one address", "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 203.0.113.9", "203.0.113.9", false},
		{"client-supplied entries before", "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 1.2.3.4,  203.0.113.9 ", "203.0.113.9", false},
		{"last header wins", "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 1.2.3.4\nx-forwarded-for: 203.0.113.10", "203.0.113.10", false},
		{"absent: the peer", "GET / HTTP/1.1\nHost: h", netip.MustParseAddrPort(testClient).Addr().String(), true},
		{"empty: the peer", "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: ", netip.MustParseAddrPort(testClient).Addr().String(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf [64]byte
			got, fb := sampleKeyOf(k, mkEx(t, tt.head, "", testClient), buf[:])
			if string(got) != tt.want || fb != tt.wantFallback {
				t.Errorf("key %q (fallback %v), want %q (fallback %v)", got, fb, tt.want, tt.wantFallback)
			}
		})
	}
}
