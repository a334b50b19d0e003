package verdict

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTemplateAutomatic(t *testing.T) {
	r, err := newRouter(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, want string
	}{
		{"GET", "/", "GET /"},
		{"GET", "", "GET /"},
		{"get", "/users", "GET /users"},
		{"GET", "/users/42", "GET /users/{id}"},
		{"GET", "/users/42/posts/7", "GET /users/{id}/posts/{id}"},
		{"GET", "/users/42?sort=asc&page=3", "GET /users/{id}"},
		{"GET", "/users/42#frag", "GET /users/{id}"},
		{"GET", "/users/", "GET /users/"},
		{"GET", "/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "GET /orders/{uuid}"},
		{"GET", "/orders/3F2504E0-4F89-11D3-9A0C-0305E82C3301/items", "GET /orders/{uuid}/items"},
		{"GET", "/blobs/0123456789abcdef0123", "GET /blobs/{hex}"}, // >= 16 hex digits
		{"GET", "/commits/a1b2c3d4", "GET /commits/{hex}"},         // 8 hex, digits and letters
		{"GET", "/things/deadbeef", "GET /things/deadbeef"},        // 8 hex letters only: a word
		{"GET", "/things/facade", "GET /things/facade"},            // short, a word
		{"GET", "/blobs/abcdefabcdefabcdef", "GET /blobs/{hex}"},   // 18 hex letters
		{"GET", "/s/aGVsbG8gd29ybGQgdGhpcyBpcw", "GET /s/{token}"}, // base64url
		{"GET", "/s/Xk9_q2Lm-P0zR7tYw3Bv", "GET /s/{token}"},       // random id with separators
		{"GET", "/blog/my-first-article-about-go", "GET /blog/my-first-article-about-go"},
		{"GET", "/blog/my-first-article-title-2024", "GET /blog/my-first-article-title-2024"},
		{"GET", "/docs/internationalization", "GET /docs/internationalization"},
		{"GET", "/api/v2/items", "GET /api/v2/items"},
		{"GET", "/files/report.pdf", "GET /files/report.pdf"},
		{"POST", "/users/42", "POST /users/{id}"},
		{"G E T", "/x", "OTHER /x"},
		{"GET", "users/42", "GET /users/{id}"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			if got := r.Template(tc.method, tc.path); got != tc.want {
				t.Errorf("Template(%q, %q) = %q, want %q", tc.method, tc.path, got, tc.want)
			}
		})
	}
}

func TestTemplateConfigured(t *testing.T) {
	r, err := newRouter([]string{"/users/{name}/posts", "POST /login/{provider}", "/static/{file}"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, want string
	}{
		{"GET", "/users/alice/posts", "GET /users/{name}/posts"},
		{"GET", "/users/42/posts", "GET /users/{name}/posts"}, // the template wins over {id}
		{"GET", "/users/alice/posts?x=1", "GET /users/{name}/posts"},
		{"GET", "/users/alice", "GET /users/alice"},                    // fewer segments: automatic
		{"GET", "/users//posts", "GET /users//posts"},                  // a placeholder needs a segment
		{"POST", "/login/github", "POST /login/{provider}"},            // method-specific template
		{"GET", "/login/github", "GET /login/github"},                  // other method: automatic
		{"GET", "/static/app.3f9a.js", "GET /static/{file}"},           // any segment
		{"GET", "/static/a/b.js", "GET /static/a/b.js"},                // one segment only
		{"HEAD", "/users/bob/posts", "HEAD /users/{name}/posts"},       // any method
		{"GET", "/users/alice/posts/7", "GET /users/alice/posts/{id}"}, // more segments: automatic
	}
	for _, tc := range tests {
		if got := r.Template(tc.method, tc.path); got != tc.want {
			t.Errorf("Template(%q, %q) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestRouteTemplateErrors(t *testing.T) {
	for _, s := range []string{"users/{id}", "/users/{id}x", "/a?b", "GET", "/a/{}", strings.Repeat("/a", 200)} {
		if _, err := newRouter([]string{s}); err == nil {
			t.Errorf("newRouter(%q): no error", s)
		}
	}
}

func TestTemplateBounded(t *testing.T) {
	r, _ := newRouter(nil)
	long := "/" + strings.Repeat("segment/", 100)
	got := r.Template("GET", long)
	if len(got) > maxRouteLen+len("/…") {
		t.Errorf("route of %d bytes, want at most %d", len(got), maxRouteLen)
	}
	if !strings.HasSuffix(got, "/…") {
		t.Errorf("a cut route should end with /…: %q", got)
	}
	if got := r.Template("GET", "/a/\xff\xfe"); !utf8.ValidString(got) {
		t.Errorf("route %q is not valid UTF-8", got)
	}
}

// The cap: MaxRoutes templates keep their own label, later ones are
// "other", and a template that had its own label keeps it.
func TestRouteCapSticky(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MaxRoutes = 3 })
	e.mu.Lock()
	defer e.mu.Unlock()
	tg := e.target("shadow")
	steps := []struct{ tmpl, want string }{
		{"GET /a", "GET /a"},
		{"GET /b", "GET /b"},
		{"GET /c", "GET /c"},
		{"GET /d", OtherRoute},
		{"GET /a", "GET /a"}, // sticky
		{"GET /e", OtherRoute},
		{"GET /c", "GET /c"},
	}
	for i, s := range steps {
		if got := e.route(tg, s.tmpl).route; got != s.want {
			t.Errorf("step %d: route(%q) = %q, want %q", i, s.tmpl, got, s.want)
		}
	}
	if len(tg.order) != 4 {
		t.Errorf("%d route states, want 3 own and other", len(tg.order))
	}
	// Another target has its own budget.
	if got := e.route(e.target("other-shadow"), "GET /d").route; got != "GET /d" {
		t.Errorf("second target: %q, want its own label", got)
	}
}

func TestIsToken(t *testing.T) {
	// Random base64url tokens of 20 to 40 characters should nearly all be
	// recognized; a deterministic generator keeps the test stable.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	x := uint64(0x9e3779b97f4a7c15)
	miss := 0
	const n = 2000
	for i := 0; i < n; i++ {
		l := 20 + i%21
		b := make([]byte, l)
		for j := range b {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			b[j] = alphabet[x%64]
		}
		if classifySegment(string(b)) == string(b) {
			miss++
		}
	}
	if miss > n/50 {
		t.Errorf("%d of %d random tokens kept as literal segments (over 2%%)", miss, n)
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"/users/42", "/a/3f2504e0-4f89-11d3-9a0c-0305e82c3301?x=1", "", "//", "/\xff", "/s/aGVsbG8gd29ybGQgdGhpcyBpcw"} {
		f.Add("GET", s)
	}
	r, err := newRouter([]string{"/users/{id}/posts"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		got := r.Template(method, path)
		m, p, ok := strings.Cut(got, " ")
		if !ok || m == "" || !strings.HasPrefix(p, "/") {
			t.Fatalf("Template(%q, %q) = %q: not METHOD /path", method, path, got)
		}
		if !utf8.ValidString(got) || len(got) > maxRouteLen+len("/…")+16 {
			t.Fatalf("Template(%q, %q) = %q: invalid or unbounded", method, path, got)
		}
		if strings.ContainsAny(p, "?#") {
			t.Fatalf("Template(%q, %q) = %q: query or fragment kept", method, path, got)
		}
		// A route is its own route: templating is idempotent.
		if again := r.Template(m, p); again != got {
			t.Fatalf("Template(%q, %q) = %q, but Template of that is %q", method, path, got, again)
		}
	})
}
