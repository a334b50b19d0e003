package replay

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRewrite(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		body   string
		client string
		base   string // target path prefix
		mod    func(*Config)
		check  func(t *testing.T, c captured)
	}{
		{
			name: "host kept, forwarded headers added, marker",
			raw:  "GET /a/b?x=1&y=%20 HTTP/1.1\nHost: shop.example.com\nAccept: */*",
			check: func(t *testing.T, c captured) {
				want(t, "method", c.Method, "GET")
				want(t, "uri", c.RequestURI, "/a/b?x=1&y=%20")
				want(t, "host", c.Host, "shop.example.com")
				want(t, "xff", c.Header.Get("X-Forwarded-For"), "192.0.2.7")
				want(t, "xfproto", c.Header.Get("X-Forwarded-Proto"), "http")
				want(t, "xfport", c.Header.Get("X-Forwarded-Port"), "8080")
				want(t, "marker", c.Header.Get(MarkerHeader), "1")
				want(t, "accept", c.Header.Get("Accept"), "*/*")
			},
		},
		{
			name: "xff appended v4",
			raw:  "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 10.0.0.1, 10.0.0.2",
			check: func(t *testing.T, c captured) {
				want(t, "xff", strings.Join(c.Header.Values("X-Forwarded-For"), "|"), "10.0.0.1, 10.0.0.2, 192.0.2.7")
			},
		},
		{
			name:   "xff appended v6 without brackets",
			raw:    "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 2001:db8::9",
			client: "[2001:db8::1]:5555",
			check: func(t *testing.T, c captured) {
				want(t, "xff", c.Header.Get("X-Forwarded-For"), "2001:db8::9, 2001:db8::1")
			},
		},
		{
			name:   "v4-mapped client unmapped",
			raw:    "GET / HTTP/1.1\nHost: h",
			client: "[::ffff:192.0.2.9]:5555",
			check: func(t *testing.T, c captured) {
				want(t, "xff", c.Header.Get("X-Forwarded-For"), "192.0.2.9")
			},
		},
		{
			name: "two xff fields joined",
			raw:  "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 10.0.0.1\nX-Forwarded-For: 10.0.0.2",
			check: func(t *testing.T, c captured) {
				want(t, "xff", strings.Join(c.Header.Values("X-Forwarded-For"), "|"), "10.0.0.1, 10.0.0.2, 192.0.2.7")
			},
		},
		{
			name: "forwarded proto and port kept when present",
			raw:  "GET / HTTP/1.1\nHost: h\nX-Forwarded-Proto: https\nX-Forwarded-Port: 443",
			check: func(t *testing.T, c captured) {
				want(t, "xfproto", c.Header.Get("X-Forwarded-Proto"), "https")
				want(t, "xfport", c.Header.Get("X-Forwarded-Port"), "443")
			},
		},
		{
			name: "hop-by-hop removed",
			raw: "GET / HTTP/1.1\nHost: h\nConnection: keep-alive, X-Private, Upgrade\nX-Private: 1\nKeep-Alive: timeout=5\n" +
				"Proxy-Connection: keep-alive\nTE: trailers\nTrailer: X-T\nUpgrade: websocket\nProxy-Authorization: Basic c2VjcmV0\nX-Kept: yes",
			check: func(t *testing.T, c captured) {
				for _, h := range []string{"Connection", "X-Private", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Proxy-Authorization"} {
					if v, ok := c.Header[h]; ok {
						t.Errorf("hop-by-hop %s sent: %q", h, v)
					}
				}
				want(t, "x-kept", c.Header.Get("X-Kept"), "yes")
			},
		},
		{
			name: "de-chunked body sent with content-length",
			raw:  "POST /submit HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nContent-Type: text/plain",
			body: "hello, shadow",
			mod:  func(c *Config) { c.Methods = []string{"POST"} },
			check: func(t *testing.T, c captured) {
				want(t, "body", string(c.Body), "hello, shadow")
				if c.ContentLength != 13 || len(c.TransferEncoding) != 0 {
					t.Errorf("content-length %d, transfer-encoding %q; want 13, none", c.ContentLength, c.TransferEncoding)
				}
			},
		},
		{
			name: "stale content-length replaced",
			raw:  "PUT /x HTTP/1.1\nHost: h\nContent-Length: 99",
			body: "abc",
			mod:  func(c *Config) { c.Methods = []string{"PUT"} },
			check: func(t *testing.T, c captured) {
				want(t, "body", string(c.Body), "abc")
				if c.ContentLength != 3 {
					t.Errorf("content-length %d, want 3", c.ContentLength)
				}
			},
		},
		{
			name: "marker off",
			raw:  "GET / HTTP/1.1\nHost: h",
			mod:  func(c *Config) { c.Marker = false },
			check: func(t *testing.T, c captured) {
				if _, ok := c.Header[MarkerHeader]; ok {
					t.Errorf("marker sent with Marker off")
				}
			},
		},
		{
			name: "set and drop headers",
			raw:  "GET / HTTP/1.1\nHost: h\nX-Env: prod\nCookie: session=abc\nX-Forwarded-For: 10.1.1.1",
			mod: func(c *Config) {
				c.SetHeaders = []HeaderKV{{"x-env", "shadow"}, {"X-New", "1"}}
				c.DropHeaders = []string{"cookie", "X-Forwarded-For"}
			},
			check: func(t *testing.T, c captured) {
				want(t, "x-env", strings.Join(c.Header.Values("X-Env"), "|"), "shadow")
				want(t, "x-new", c.Header.Get("X-New"), "1")
				for _, h := range []string{"Cookie", "X-Forwarded-For"} {
					if v, ok := c.Header[h]; ok {
						t.Errorf("dropped %s sent: %q", h, v)
					}
				}
			},
		},
		{
			name: "host override",
			raw:  "GET / HTTP/1.1\nHost: shop.example.com",
			mod:  func(c *Config) { c.Host = "shadow.internal:8443" },
			check: func(t *testing.T, c captured) {
				want(t, "host", c.Host, "shadow.internal:8443")
			},
		},
		{
			name: "no default user-agent",
			raw:  "GET / HTTP/1.1\nHost: h",
			check: func(t *testing.T, c captured) {
				if v, ok := c.Header["User-Agent"]; ok {
					t.Errorf("User-Agent sent: %q", v)
				}
			},
		},
		{
			name: "user-agent kept",
			raw:  "GET / HTTP/1.1\nHost: h\nUser-Agent: curl/8.0",
			check: func(t *testing.T, c captured) {
				want(t, "ua", c.Header.Get("User-Agent"), "curl/8.0")
			},
		},
		{
			name: "no accept-encoding injected",
			raw:  "GET / HTTP/1.1\nHost: h",
			check: func(t *testing.T, c captured) {
				if v, ok := c.Header["Accept-Encoding"]; ok {
					t.Errorf("Accept-Encoding sent: %q", v)
				}
			},
		},
		{
			// The absolute form's authority is whatever the sender wrote: it
			// must not steer a vhost-routing ingress in front of the shadow.
			name: "absolute form reduced to path, the Host header kept",
			raw:  "GET http://admin.internal:8080/v1/items?id=3 HTTP/1.1\nHost: shop.example.com",
			check: func(t *testing.T, c captured) {
				want(t, "uri", c.RequestURI, "/v1/items?id=3")
				want(t, "host", c.Host, "shop.example.com")
			},
		},
		{
			name: "absolute form without a Host header: the target's host",
			raw:  "GET http://admin.internal/x HTTP/1.1\nAccept: */*",
			check: func(t *testing.T, c captured) {
				want(t, "uri", c.RequestURI, "/x")
				if c.Host == "admin.internal" {
					t.Errorf("host %q: the absolute form's authority was sent", c.Host)
				}
			},
		},
		{
			name: "absolute form with --host: --host",
			raw:  "GET http://admin.internal/x HTTP/1.1\nHost: shop.example.com",
			mod:  func(c *Config) { c.Host = "shadow.internal" },
			check: func(t *testing.T, c captured) {
				want(t, "host", c.Host, "shadow.internal")
			},
		},
		{
			name: "base path prefixed, escapes kept",
			raw:  "GET /a%2Fb/c?q HTTP/1.1\nHost: h",
			base: "/shadow/",
			check: func(t *testing.T, c captured) {
				want(t, "uri", c.RequestURI, "/shadow/a%2Fb/c?q")
			},
		},
		{
			name: "double slash path stays a path",
			raw:  "GET //evil.example/x HTTP/1.1\nHost: h",
			check: func(t *testing.T, c captured) {
				want(t, "uri", c.RequestURI, "//evil.example/x")
				want(t, "host", c.Host, "h")
			},
		},
		{
			name: "OPTIONS asterisk",
			raw:  "OPTIONS * HTTP/1.1\nHost: h",
			check: func(t *testing.T, c captured) {
				want(t, "uri", c.RequestURI, "*")
			},
		},
		{
			name: "expect removed, body sent",
			raw:  "POST /up HTTP/1.1\nHost: h\nExpect: 100-continue\nContent-Length: 2",
			body: "ok",
			mod:  func(c *Config) { c.Methods = []string{"POST"} },
			check: func(t *testing.T, c captured) {
				if v, ok := c.Header["Expect"]; ok {
					t.Errorf("Expect sent: %q", v)
				}
				want(t, "body", string(c.Body), "ok")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			cfg := testConfig(mustURL(t, rec.URL+tt.base))
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			r := start(t, cfg)
			client := tt.client
			if client == "" {
				client = testClient
			}
			ex := mkEx(t, tt.raw, tt.body, client)
			r.Request(ex)
			r.Response(ex)
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			got := rec.got()
			if len(got) != 1 {
				t.Fatalf("shadow got %d requests, want 1; stats %+v", len(got), r.Stats().Snapshot())
			}
			tt.check(t, got[0])
		})
	}
}

func want(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func TestRewriteInvalid(t *testing.T) {
	tests := []struct{ name, raw string }{
		{"relative target", "GET a/b HTTP/1.1\nHost: h"},
		{"control byte", "GET /a\x01b HTTP/1.1\nHost: h"},
		{"bad method", "G(T / HTTP/1.1\nHost: h"},
		{"bad host", "GET / HTTP/1.1\nHost: a/b"},
		{"control byte in a value", "GET / HTTP/1.1\nHost: h\nX-A: a\x01b"},
	}
	rw := newRewriter(&Config{})
	base := &url.URL{Scheme: "http", Host: "shadow"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := mkEx(t, tt.raw, "", testClient)
			if req, err := rw.build(nil, base.Host, "", ex, 1); err == nil {
				t.Fatalf("build accepted it: %q", req.head)
			}
		})
	}
}

// The exact bytes sent: fields in production's order (repeats kept apart),
// hop-by-hop and replaced ones left out, the forwarded headers and the
// marker after them, and the length from the body.
func TestBuildWire(t *testing.T) {
	tests := []struct {
		name, raw, body string
		mod             func(*Config)
		want            string
	}{
		{
			name: "order kept",
			raw:  "GET /p?q=1 HTTP/1.1\nHost: shop.example.com\nX-B: 1\naccept: */*\nConnection: keep-alive\nX-B: 2",
			want: "GET /p?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nX-B: 1\r\nAccept: */*\r\nX-B: 2\r\n" +
				"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\nX-Shadowtap-Replay: 1\r\n\r\n",
		},
		{
			name: "empty query kept, POST without a body says its length",
			raw:  "POST /p? HTTP/1.1\nHost: h\nX-Forwarded-Proto: https\nX-Forwarded-Port: 443",
			mod:  func(c *Config) { c.Marker = false },
			want: "POST /p? HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n" +
				"X-Forwarded-For: 192.0.2.7\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "set replaces wherever it was, drop removes the defaults too",
			raw:  "PUT /p HTTP/1.1\nHost: h\nX-Env: prod\nIdempotency-Key: k1\nX-Shadowtap-Replay: 9",
			body: "abc",
			mod: func(c *Config) {
				c.SetHeaders = []HeaderKV{{"x-env", "shadow"}}
				c.DropHeaders = []string{"X-Forwarded-Proto", "x-forwarded-port", "X-Forwarded-For"}
			},
			want: "PUT /p HTTP/1.1\r\nHost: h\r\nIdempotency-Key: k1\r\nX-Env: shadow\r\nX-Shadowtap-Replay: 2\r\nContent-Length: 3\r\n\r\n",
		},
		{
			name: "no Host: the target's",
			raw:  "GET http://admin.internal/x HTTP/1.1\nAccept:  a ",
			want: "GET /x HTTP/1.1\r\nHost: shadow:8080\r\nAccept: a\r\n" +
				"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\nX-Shadowtap-Replay: 2\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(mustURL(t, "http://shadow:8080"))
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			rw := newRewriter(&cfg)
			ex := mkEx(t, tt.raw, tt.body, testClient)
			nth := 2
			if strings.Contains(tt.want, "Replay: 1") {
				nth = 1
			}
			req, err := rw.build(nil, "shadow:8080", "", ex, nth)
			if err != nil {
				t.Fatal(err)
			}
			if string(req.head) != tt.want {
				t.Errorf("head\n%q\nwant\n%q", req.head, tt.want)
			}
			if string(req.body) != tt.body {
				t.Errorf("body %q, want %q", req.body, tt.body)
			}
			if got := strings.Contains(tt.raw, "Idempotency-Key"); req.idempotent != got {
				t.Errorf("idempotent %v, want %v", req.idempotent, got)
			}
		})
	}
}
