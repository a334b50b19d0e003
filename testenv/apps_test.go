package testenv

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestApps checks, at the HTTP level, that the lab apps differ exactly as
// AppRoutes says: the lab's comparison tests rely on it.
func TestApps(t *testing.T) {
	servers := map[AppKind]*httptest.Server{}
	for _, k := range []AppKind{AppProduction, AppShadow, AppBaseline} {
		servers[k] = httptest.NewServer(AppHandler(k))
		defer servers[k].Close()
	}
	get := func(k AppKind, r Request) (*http.Response, []byte, time.Duration) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, servers[k].URL+r.Target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range r.Header {
			req.Header[name] = v
		}
		if r.Host != "" {
			req.Host = r.Host
		}
		tr := &http.Transport{DisableCompression: true}
		defer tr.CloseIdleConnections()
		start := time.Now()
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		return resp, b, took
	}
	jsonOf := func(b []byte) any {
		t.Helper()
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		return v
	}
	for _, rt := range AppRoutes() {
		t.Run(rt.Route, func(t *testing.T) {
			for i := range 2 {
				r := rt.Request(i)
				pr, pb, pt := get(AppProduction, r)
				sr, sb, st := get(AppShadow, r)
				br, bb, _ := get(AppBaseline, r)
				for _, h := range []string{"Server", "ETag", "X-Request-Id"} {
					if pr.Header.Get(h) == sr.Header.Get(h) || pr.Header.Get(h) == br.Header.Get(h) {
						t.Errorf("%s: %s the same in two deployments (%q)", r.Target, h, pr.Header.Get(h))
					}
				}
				if br.StatusCode != pr.StatusCode || br.Header.Get("Cache-Control") != pr.Header.Get("Cache-Control") ||
					br.Header.Get("Set-Cookie") != "" && pr.Header.Get("Set-Cookie") == "" {
					t.Errorf("%s: the baseline answers otherwise than production", r.Target)
				}
				switch rt.Route {
				case "GET /api/users/{id}":
					p, s, b := jsonOf(pb).(map[string]any), jsonOf(sb).(map[string]any), jsonOf(bb).(map[string]any)
					if p["email"] == s["email"] || p["email"] != b["email"] {
						t.Errorf("email: production %v, shadow %v, baseline %v", p["email"], s["email"], b["email"])
					}
					if p["generated_at"] == b["generated_at"] {
						t.Errorf("generated_at the same in production and baseline")
					}
					delete(p, "email")
					delete(s, "email")
					delete(p, "generated_at")
					delete(s, "generated_at")
					if !reflect.DeepEqual(p, s) {
						t.Errorf("other fields differ: %v, %v", p, s)
					}
				case "GET /api/items":
					if string(pb) == string(sb) || !reflect.DeepEqual(jsonOf(pb), jsonOf(sb)) {
						t.Errorf("want the same JSON written otherwise:\n%s\n%s", pb, sb)
					}
				case "GET /static/app.js":
					if string(pb) != string(AppScript()) || string(sb) != string(AppScript()) {
						t.Errorf("decoded scripts differ")
					}
					if pr.Header.Get("Content-Encoding") != "gzip" {
						t.Errorf("production's script not gzipped")
					}
				case "GET /session":
					pc, sc := pr.Cookies(), sr.Cookies()
					if len(pc) != 1 || len(sc) != 1 || pc[0].Domain != "shop.example.com" || sc[0].Domain != "" ||
						pc[0].Value == sc[0].Value || pc[0].MaxAge != sc[0].MaxAge || pc[0].Path != sc[0].Path {
						t.Errorf("cookies %+v, %+v", pr.Header["Set-Cookie"], sr.Header["Set-Cookie"])
					}
				case "GET /report/{id}":
					if pr.StatusCode != 200 || sr.StatusCode != 500 {
						t.Errorf("statuses %d, %d", pr.StatusCode, sr.StatusCode)
					}
				case "GET /page/{id}":
					if pr.Header.Get("Cache-Control") == "" || sr.Header.Get("Cache-Control") != "" || string(pb) != string(sb) {
						t.Errorf("Cache-Control %q, %q", pr.Header.Get("Cache-Control"), sr.Header.Get("Cache-Control"))
					}
				case "GET /search":
					if string(pb) != string(sb) || st < SearchDelay || st < pt {
						t.Errorf("search: bodies equal %v, shadow took %v, production %v", string(pb) == string(sb), st, pt)
					}
				default:
					t.Fatalf("route %s not checked", rt.Route)
				}
				if rt.Kind == "" && rt.Route != "GET /static/app.js" && pr.StatusCode != sr.StatusCode {
					t.Errorf("statuses differ on a route without differences")
				}
			}
		})
	}
}
