package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/shadowtap/shadowtap/testenv"
)

// TestReplayReachesShadow drives real conversations through the lab's
// mirror and checks what the shadow server receives: every replayable
// request exactly once, with its method, target, Host, headers and body as
// the client sent them, the client's address appended to X-Forwarded-For
// (IPv4 and IPv6 clients), and the replay marker. Production receives each
// request once and never a replay.
func TestReplayReachesShadow(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	prod := startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	p := startRun(t, lab, newPinRoot(t), "--target", shadowTarget(lab, shadowPort))

	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)
	prod6 := testenv.HostPort(lab.ProdAddr6, prodPort)
	type sent struct {
		req  testenv.Request
		host string // the Host header the client sent
		xff  string // the client's X-Forwarded-For, if any
		from string // the client's address as production saw it
	}
	big := testenv.Pattern(20000) // several segments
	conns := []struct {
		prod, from string
		reqs       []testenv.Request
	}{
		{prod4, lab.ClientAddr4.String(), []testenv.Request{
			{Target: "/get/plain"},
			{Target: "/get/query?q=a%20b&x=1", Host: "shop.example.com",
				Header: http.Header{"X-Forwarded-For": {"192.0.2.7, 198.51.100.9"}, "X-Request-Id": {"r-2"}, "Accept": {"text/html"}}},
			{Target: "/get/with-body", Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("a GET may carry a body\n")},
			{Method: "OPTIONS", Target: "/get/options-chunked", Body: testenv.Pattern(5000), Chunked: true, ChunkSize: 1500},
			{Method: "HEAD", Target: "/size/300"},
			{Target: "/get/big-body", Body: big},
		}},
		{prod4, lab.ClientAddr4.String(), []testenv.Request{
			{Target: "/size/100000"}, // a long response; the next request follows it
			{Target: "/get/after-long-response", Header: http.Header{"Cookie": {"session=abc"}}},
		}},
		{prod6, lab.ClientAddr6.String(), []testenv.Request{
			{Target: "/get/ipv6", Host: "shop.example.com", Header: http.Header{"X-Forwarded-For": {"2001:db8::7"}}},
			{Target: "/get/ipv6-body", Body: []byte("from an IPv6 client")},
		}},
	}
	want := map[string]sent{}
	for _, c := range conns {
		for _, r := range c.reqs {
			host := r.Host
			if host == "" {
				host = c.prod
			}
			want[r.Target] = sent{req: r, host: host, xff: r.Header.Get("X-Forwarded-For"), from: c.from}
		}
		converse(t, lab, c.prod, c.reqs...)
	}
	n := float64(len(want))

	// Every request ends in exactly one outcome: once all n are replayed and
	// nothing is pending, a duplicate would already be counted.
	m := p.waitMetrics(fmt.Sprintf("%v requests replayed", n), func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_replayed_total") >= n && settled(t, m)
	})
	if got := m.Get(t, "shadowtap_http_requests_total"); got != n {
		t.Errorf("parsed %v requests, want %v", got, n)
	}
	if got := m.Get(t, "shadowtap_replay_replayed_total"); got != n {
		t.Errorf("replayed %v requests, want %v", got, n)
	}
	if got := m.Get(t, "shadowtap_replay_replayed_total", "class", "2xx"); got != n {
		t.Errorf("shadow answered %v requests with 2xx, want %v", got, n)
	}

	seen := map[string]int{}
	for _, ex := range shadow.Exchanges() {
		seen[ex.Target]++
		w, ok := want[ex.Target]
		if !ok {
			t.Errorf("shadow received %s %s, which no client sent", ex.Method, ex.Target)
			continue
		}
		if ex.Method != w.req.Method && !(w.req.Method == "" && ex.Method == "GET") {
			t.Errorf("%s: method %s, want %s", ex.Target, ex.Method, w.req.Method)
		}
		if ex.Host != w.host {
			t.Errorf("%s: Host %q, want %q", ex.Target, ex.Host, w.host)
		}
		wantXFF := w.from
		if w.xff != "" {
			wantXFF = w.xff + ", " + w.from
		}
		if got := strings.Join(ex.Header.Values("X-Forwarded-For"), ", "); got != wantXFF {
			t.Errorf("%s: X-Forwarded-For %q, want %q", ex.Target, got, wantXFF)
		}
		if got := ex.Header.Get("X-Shadowtap-Replay"); got != "1" {
			t.Errorf("%s: X-Shadowtap-Replay %q, want 1", ex.Target, got)
		}
		for k := range w.req.Header {
			if k == "X-Forwarded-For" {
				continue
			}
			if got, wv := ex.Header.Values(k), w.req.Header.Values(k); strings.Join(got, "\n") != strings.Join(wv, "\n") {
				t.Errorf("%s: header %s = %q, want %q", ex.Target, k, got, wv)
			}
		}
		if !bytes.Equal(ex.Body, w.req.Body) {
			t.Errorf("%s: body of %d bytes differs from the %d the client sent", ex.Target, len(ex.Body), len(w.req.Body))
		}
	}
	for target := range want {
		if seen[target] != 1 {
			t.Errorf("shadow received %s %d times, want once", target, seen[target])
		}
	}

	prodSeen := map[string]int{}
	for _, ex := range prod.Exchanges() {
		prodSeen[ex.Target]++
		if ex.Header.Get("X-Shadowtap-Replay") != "" {
			t.Errorf("production received a replay of %s", ex.Target)
		}
	}
	for target := range want {
		if prodSeen[target] != 1 {
			t.Errorf("production received %s %d times, want once", target, prodSeen[target])
		}
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// TestMethods checks the default that protects the read-only shadow: a POST
// (or any write) is never replayed unless --methods names it.
func TestMethods(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)
	post := []byte(`{"user":"ana","password":"x"}`)

	tests := []struct {
		name     string
		flags    []string
		replayed []string // methods the shadow must receive
	}{
		{"default", nil, []string{"GET"}},
		{"GET,POST", []string{"--methods", "GET,POST"}, []string{"GET", "POST"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startRun(t, lab, newPinRoot(t), append([]string{"--target", shadowTarget(lab, shadowPort)}, tc.flags...)...)
			prefix := "/" + strings.ReplaceAll(tc.name, ",", "-") + "/"
			converse(t, lab, prod4,
				testenv.Request{Target: prefix + "page"},
				testenv.Request{Method: "POST", Target: prefix + "login", Body: post, Header: http.Header{"Content-Type": {"application/json"}}},
				testenv.Request{Method: "DELETE", Target: prefix + "cart/1"},
			)
			m := p.waitMetrics("3 requests ended", func(m testenv.Metrics) bool {
				return m.Get(t, "shadowtap_http_requests_total") >= 3 && settled(t, m) &&
					m.Get(t, "shadowtap_replay_replayed_total")+m.Get(t, "shadowtap_replay_filtered_total") >= 3
			})
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
			want := map[string]bool{}
			for _, meth := range tc.replayed {
				want[meth] = true
			}
			if got, w := m.Get(t, "shadowtap_replay_filtered_total", "reason", "method"), float64(3-len(want)); got != w {
				t.Errorf("filtered by method: %v, want %v", got, w)
			}
			got := map[string]int{}
			for _, ex := range shadow.Exchanges() {
				if !strings.HasPrefix(ex.Target, prefix) {
					continue
				}
				got[ex.Method]++
				if ex.Method == "POST" && !bytes.Equal(ex.Body, post) {
					t.Errorf("POST body %q at the shadow, want %q", ex.Body, post)
				}
			}
			for _, meth := range []string{"GET", "POST", "DELETE"} {
				n := 0
				if want[meth] {
					n = 1
				}
				if got[meth] != n {
					t.Errorf("shadow received %d %s requests, want %d", got[meth], meth, n)
				}
			}
		})
	}
}
