package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

func get(t testing.TB, path string) *httpx.Exchange {
	return mkEx(t, "GET "+path+" HTTP/1.1\nHost: shop.example.com", "", testClient)
}

// TestRateLimit: with a frozen clock, MaxRPS tokens pass per second of
// clock and the rest are dropped and counted; the tokens come back as the
// clock moves.
func TestRateLimit(t *testing.T) {
	rec := newRecorder(t, nil)
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxRPS = 5
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return clock }
	for range 20 {
		r.Request(get(t, "/"))
	}
	clock = clock.Add(time.Second)
	for range 20 {
		r.Request(get(t, "/"))
	}
	s := r.Stats().Snapshot()
	if got := s.Targets[0].DroppedRate; got != 30 {
		t.Errorf("DroppedRate = %d, want 30", got)
	}
	if got := s.Targets[0].Queued; got != 10 {
		t.Errorf("Queued = %d, want 10", got)
	}
	go r.Run(t.Context())
	if err := r.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	s = r.Stats().Snapshot()
	if got := s.Targets[0].Replayed[Class2xx]; got != 10 {
		t.Errorf("replayed 2xx = %d, want 10", got)
	}
	if n := len(rec.got()); n != 10 {
		t.Errorf("shadow got %d requests, want 10", n)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestQueueOverflow: a target that does not answer fills its queue; later
// requests are dropped and counted, and Request never blocks.
func TestQueueOverflow(t *testing.T) {
	entered := make(chan struct{}, 100)
	release := make(chan struct{})
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight, cfg.Queue = 1, 3
	r := start(t, cfg)
	noHang(t, "Request", func() { r.Request(get(t, "/first")) })
	<-entered // the only worker is busy now
	noHang(t, "Request", func() {
		for range 50 {
			r.Request(get(t, "/more"))
		}
	})
	s := r.Stats().Snapshot().Targets[0]
	if s.DroppedQueue != 47 || s.Queued != 3 || s.InFlight != 1 {
		t.Errorf("dropped %d, queued %d, in flight %d; want 47, 3, 1", s.DroppedQueue, s.Queued, s.InFlight)
	}
	close(release)
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	snap := r.Stats().Snapshot()
	if got := snap.Targets[0].Replayed[Class2xx]; got != 4 {
		t.Errorf("replayed = %d, want 4", got)
	}
	if err := snap.Check(); err != nil {
		t.Error(err)
	}
}

func TestFailures(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // nothing listens there now: connection refused

	slow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	slowBody := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	reset := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
		conn.Close()
	})
	tests := []struct {
		name   string
		target string
		want   func(TargetSnapshot) uint64
	}{
		{"connect refused", deadURL, func(s TargetSnapshot) uint64 { return s.FailedConnect }},
		{"no response header before timeout", slow.URL, func(s TargetSnapshot) uint64 { return s.FailedTimeout }},
		{"body slower than timeout", slowBody.URL, func(s TargetSnapshot) uint64 { return s.FailedTimeout }},
		{"truncated response", reset.URL, func(s TargetSnapshot) uint64 { return s.FailedError }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(mustURL(t, tt.target))
			cfg.Timeout = 200 * time.Millisecond
			r := start(t, cfg)
			r.Request(get(t, "/"))
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			s := r.Stats().Snapshot()
			if got := tt.want(s.Targets[0]); got != 1 || s.Targets[0].Failed() != 1 {
				t.Errorf("outcome %+v, want exactly one failure of this kind", s.Targets[0])
			}
			if err := s.Check(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var followed atomic.Int32
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	r := start(t, testConfig(mustURL(t, rec.URL)))
	ex := get(t, "/old")
	r.Request(ex)
	prodResp(ex, 302, 0)
	r.Response(ex)
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot().Targets[0]
	if s.Replayed[Class3xx] != 1 || s.ReplayedTotal() != 1 || followed.Load() != 0 {
		t.Errorf("replayed %v, followed %d; want one 3xx, none followed", s.Replayed, followed.Load())
	}
}

// TestBodiesDrained: response bodies are read to the end, so one keep-alive
// connection carries every request, and the comparison stage gets each body
// whole with its length and hash.
func TestBodiesDrained(t *testing.T) {
	body := strings.Repeat("x", 256<<10)
	var conns atomic.Int32
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body)) // chunked: no Content-Length set
	}, func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight = 1
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r := start(t, cfg)
	const n = 20
	for i := range n {
		ex := get(t, "/big")
		r.Request(ex)
		bodyLen := int64(len(body))
		if i%2 == 1 {
			bodyLen-- // production sent one byte less
		}
		prodResp(ex, 200, bodyLen)
		r.Response(ex)
	}
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Snapshot().Targets[0].Replayed[Class2xx]; got != n {
		t.Fatalf("replayed %d, want %d", got, n)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections for %d sequential requests, want 1 (bodies not drained?)", got, n)
	}
	xs := fv.exchanges()
	if len(xs) != n {
		t.Fatalf("%d exchanges handed to the comparison, want %d", len(xs), n)
	}
	for i, x := range xs {
		a := x.Answers[0].Response
		if a == nil || a.BodyLen != int64(len(body)) || !a.BodyComplete || string(a.Body) != body {
			t.Fatalf("exchange %d: shadow's answer %v", i, a != nil)
		}
	}
}

// TestAccountingMixed: a mixed run over two targets, one healthy and one
// dead, ends with every request in exactly one outcome.
func TestAccountingMixed(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			w.WriteHeader(404)
		case "/broken":
			w.WriteHeader(503)
		case "/moved":
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
		default:
			w.Write([]byte("hello"))
		}
	})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	cfg := testConfig(mustURL(t, rec.URL), mustURL(t, "http://"+dead.Addr().String()))
	cfg.ExcludePath = []*regexp.Regexp{regexp.MustCompile(`^/admin`)}
	cfg.SamplePercent = 50
	cfg.Timeout = time.Second
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r := start(t, cfg)
	paths := []string{"/", "/missing", "/broken", "/moved", "/admin/x", "/static/a.js"}
	methods := []string{"GET", "GET", "HEAD", "POST", "OPTIONS"}
	const n = 600
	noHang(t, "Request", func() {
		for i := range n {
			raw := fmt.Sprintf("%s %s HTTP/1.1\nHost: h", methods[i%len(methods)], paths[i%len(paths)])
			ex := mkEx(t, raw, "", fmt.Sprintf("10.0.%d.%d:1000", i/250, i%250))
			ex.Req.TooLarge = i%97 == 0
			r.Request(ex)
			if i%3 != 0 {
				prodResp(ex, 200, 5)
			} else {
				ex.Reason = httpx.RespClosed
			}
			r.Response(ex)
		}
	})
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	t.Logf("%+v", s)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.Requests != n || s.FilteredMethod == 0 || s.FilteredPath == 0 || s.SampledOut == 0 || s.TooLarge == 0 || s.Accepted == 0 {
		t.Errorf("a mixed run should reach every outcome: %+v", s)
	}
	good, bad := s.Targets[0], s.Targets[1]
	if good.ReplayedTotal() != s.Accepted-good.Dropped() || good.Replayed[Class2xx] == 0 || good.Replayed[Class3xx] == 0 ||
		good.Replayed[Class4xx] == 0 || good.Replayed[Class5xx] == 0 {
		t.Errorf("healthy target: %+v", good)
	}
	if bad.ReplayedTotal() != 0 || bad.FailedConnect+bad.DroppedQueue != s.Accepted {
		t.Errorf("dead target: %+v", bad)
	}
	// Every answer of the healthy target and every failure of the dead one
	// was handed to the comparison stage, some without production's
	// response (closed).
	answers := fv.answers()
	if got := uint64(answers[good.Target]); got != good.ReplayedTotal() || good.Compared != got {
		t.Errorf("healthy target: %d answers compared (stats %d), %d replayed", got, good.Compared, good.ReplayedTotal())
	}
	if got := uint64(answers[bad.Target]); got != bad.Failed() {
		t.Errorf("dead target: %d failures compared, %d failed", got, bad.Failed())
	}
	missing := 0
	for _, x := range fv.exchanges() {
		if x.Production == nil {
			if x.ProductionMissing != "closed" {
				t.Errorf("production missing %q, want closed", x.ProductionMissing)
			}
			missing++
		}
	}
	if missing == 0 {
		t.Error("no exchange without production's response")
	}
}

// TestDrainDeadline: what has not finished when the drain deadline passes is
// cancelled and counted as failed "drain"; later requests count as dropped.
func TestDrainDeadline(t *testing.T) {
	entered := make(chan struct{}, 10)
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight = 2
	r := start(t, cfg)
	for range 5 {
		r.Request(get(t, "/"))
	}
	<-entered
	<-entered
	err := r.stop(t, 100*time.Millisecond)
	if err == nil {
		t.Fatal("Drain returned nil after its deadline passed")
	}
	noHang(t, "Request after Drain", func() { r.Request(get(t, "/late")) })
	s := r.Stats().Snapshot()
	if tg := s.Targets[0]; tg.FailedDrain != 5 || tg.DroppedStopped != 1 {
		t.Errorf("failed drain %d, dropped stopped %d; want 5, 1", tg.FailedDrain, tg.DroppedStopped)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestRunContextCancel: cancelling Run's context stops everything, counted.
func TestRunContextCancel(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight = 1
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	for range 3 {
		r.Request(get(t, "/"))
	}
	waitFor(t, "a request in flight", func() bool { return r.Stats().Snapshot().Targets[0].InFlight == 1 })
	cancel()
	select {
	case err := <-runErr:
		if err == nil {
			t.Error("Run returned nil after its context was cancelled")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	s := r.Stats().Snapshot()
	if s.Targets[0].FailedDrain != 3 {
		t.Errorf("failed drain %d, want 3", s.Targets[0].FailedDrain)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	if err := r.Drain(t.Context()); err != nil {
		t.Errorf("Drain after Run: %v", err)
	}
}

// TestNoGoroutineLeak: after Drain and Run return, the workers and the
// pooled connections are gone.
func TestNoGoroutineLeak(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	before := runtime.NumGoroutine()
	cfg := testConfig(mustURL(t, rec.URL), mustURL(t, rec.URL+"/second"))
	cfg.MaxInflight = 16
	r := start(t, cfg)
	for range 200 {
		r.Request(get(t, "/"))
	}
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := r.Stats().Snapshot().Check(); err != nil {
		t.Fatal(err)
	}
	// The server's side of closed connections winds down asynchronously.
	var now int
	deadline := time.Now().Add(5 * time.Second)
	for {
		now = runtime.NumGoroutine()
		if now <= before+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if now > before+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after Drain:\n%s", before, now, buf[:runtime.Stack(buf, true)])
	}
}

func TestRunTwice(t *testing.T) {
	r := start(t, testConfig(mustURL(t, "http://127.0.0.1:1")))
	if err := r.Run(t.Context()); err == nil {
		t.Error("second Run returned nil")
	}
}

func TestCollectors(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	r := start(t, testConfig(mustURL(t, rec.URL)))
	reg := prometheus.NewPedanticRegistry()
	for _, c := range r.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	ex := get(t, "/")
	r.Request(ex)
	prodResp(ex, 200, 0)
	r.Response(ex)
	r.Request(mkEx(t, "POST / HTTP/1.1", "", testClient))
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	target := rec.URL
	type key struct{ name, labels string }
	got := map[key]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			got[key{mf.GetName(), strings.Join(ls, ",")}] = v
		}
	}
	for k, v := range map[key]float64{
		{"shadowtap_replay_requests_total", ""}:                                          2,
		{"shadowtap_replay_filtered_total", "reason=method"}:                             1,
		{"shadowtap_replay_accepted_total", ""}:                                          1,
		{"shadowtap_replay_replayed_total", "class=4xx,target=" + target}:                1,
		{"shadowtap_replay_compare_held_bytes", ""}:                                      0,
		{"shadowtap_replay_duration_seconds", "target=" + target}:                        1,
		{"shadowtap_replay_ttfb_seconds", "target=" + target}:                            1,
		{"shadowtap_replay_failed_total", "reason=connect,target=" + target}:             0,
		{"shadowtap_replay_failed_total", "reason=response_too_large,target=" + target}:  0,
		{"shadowtap_replay_conn_discarded_total", "reason=unsolicited,target=" + target}: 0,
		{"shadowtap_replay_conn_discarded_total", "reason=closed,target=" + target}:      0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s{%s} = %v (present %v), want %v", k.name, k.labels, g, ok, v)
		}
	}
}

// TestRateLimitQueueFull: a request refused by a full queue gives its rate
// token back, so it is counted as a queue drop, not a rate drop, and later
// requests are not charged for it.
func TestRateLimitQueueFull(t *testing.T) {
	cfg := testConfig(mustURL(t, "http://127.0.0.1:1"))
	cfg.MaxRPS, cfg.Queue = 5, 2
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return clock }
	for range 10 {
		r.Request(get(t, "/"))
	}
	s := r.Stats().Snapshot().Targets[0]
	if s.Queued != 2 || s.DroppedQueue != 8 || s.DroppedRate != 0 {
		t.Errorf("queued %d, dropped queue %d, dropped rate %d; want 2, 8, 0", s.Queued, s.DroppedQueue, s.DroppedRate)
	}
}

// TestLogsNoSecrets: every log line that can carry a request (the debug
// "replay failed" line, for each failure reason) names the method and path
// but never a header value, a cookie, a query value, or what the shadow
// echoed back in a malformed response.
func TestLogsNoSecrets(t *testing.T) {
	const secretReq = "GET /account?token=s3cret-q HTTP/1.1\nHost: h\nAuthorization: Bearer s3cret-a\nCookie: sid=s3cret-c"
	// shadow answers every request with answer (nil: no shadow at all).
	tests := []struct {
		name   string
		raw    string // the request
		answer func(nc net.Conn, req string)
		reason string
	}{
		{"connect", secretReq, nil, "connect"},
		{"invalid target", "GET /account\x7f?token=s3cret-q HTTP/1.1\nHost: h\nAuthorization: Bearer s3cret-a", func(net.Conn, string) {}, "invalid"},
		{"timeout", secretReq, func(net.Conn, string) { time.Sleep(time.Second) }, "timeout"},
		{"malformed header line echoing the request", secretReq, func(nc net.Conn, req string) {
			// A broken shadow echoing the request's headers without colons.
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nSet-Cookie sid=s3cret-s\r\n"+strings.ReplaceAll(req, ":", "")+"\r\n\r\n")
		}, "error"},
		{"malformed status line echoing the request", secretReq, func(nc net.Conn, req string) {
			io.WriteString(nc, "HTTP/1.1 2x0 "+strings.ReplaceAll(req, "\r\n", " ")+"\r\n\r\n")
		}, "error"},
		{"malformed status echoing the request", secretReq, func(nc net.Conn, req string) {
			io.WriteString(nc, strings.ReplaceAll(req, "\r\n", " ")+"\r\n\r\n")
		}, "error"},
		{"bad chunk echoing the request", secretReq, func(nc net.Conn, req string) {
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+strings.ReplaceAll(req, "\r\n", " ")+"\r\n")
		}, "error"},
		{"response too large", secretReq, func(nc net.Conn, req string) {
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nX: "+strings.Repeat(strings.ReplaceAll(req, "\r\n", " "), 2000))
		}, "response_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := "http://127.0.0.1:1"
			if tc.answer != nil {
				rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					var b strings.Builder
					req.Write(&b)
					tc.answer(nc, b.String())
				})
				target = rs.url()
			}
			var buf strings.Builder
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg := testConfig(mustURL(t, target))
			cfg.Timeout = 300 * time.Millisecond
			cfg.MaxResponseHeaderBytes = 4096
			r, err := New(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			go r.Run(context.Background())
			r.Request(mkEx(t, tc.raw, "", testClient))
			if err := r.Drain(t.Context()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			out := buf.String()
			mu.Unlock()
			if !strings.Contains(out, "replay failed") || !strings.Contains(out, "/account") ||
				!strings.Contains(out, "reason="+tc.reason) {
				t.Fatalf("failure not logged with reason %s and the path (%+v):\n%s", tc.reason, r.Stats().Snapshot(), out)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("log leaks a secret:\n%s", out)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func BenchmarkRequest(b *testing.B) {
	cfg := testConfig(mustURL(b, "http://127.0.0.1:1"))
	cfg.SamplePercent = 50
	cfg.ExcludePath = []*regexp.Regexp{regexp.MustCompile(`^/admin`)}
	cfg.Queue = 1
	r, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	exs := make([]*httpx.Exchange, 256)
	for i := range exs {
		exs[i] = mkEx(b, "GET /products/123?color=red HTTP/1.1\nHost: shop.example.com\nCookie: a=b", "", fmt.Sprintf("10.0.0.%d:1000", i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ex := exs[i%len(exs)]
		r.Request(ex) // queue full after the first: measures the decision path
		r.Response(ex)
	}
}
