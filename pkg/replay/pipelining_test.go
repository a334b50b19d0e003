package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// Pipelining (pipeline.go) against shadows that pipeline and shadows that
// do not. The requests are queued before Run, so the one worker finds them
// all waiting and batches them Config.Pipeline at a time.

// runQueued starts a Replayer with cfg after giving it reqs (each with
// production's response), and drains it.
func runQueued(t *testing.T, cfg Config, reqs []*httpx.Exchange) *started {
	t.Helper()
	s, err := drainQueued(t, cfg, reqs, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// drainQueued is runQueued with the drain's deadline, returning its error.
func drainQueued(t *testing.T, cfg Config, reqs []*httpx.Exchange, drain time.Duration) (*started, error) {
	t.Helper()
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range reqs {
		r.Request(ex)
		prodResp(ex, 200, 0)
		r.Response(ex)
	}
	s := &started{Replayer: r, runErr: make(chan error, 1)}
	go func() { s.runErr <- r.Run(context.Background()) }()
	t.Cleanup(func() { s.stop(t, 5*time.Second) })
	return s, s.stop(t, drain)
}

// exchanges builds one exchange per "METHOD /path".
func exchanges(t *testing.T, lines ...string) []*httpx.Exchange {
	var out []*httpx.Exchange
	for _, l := range lines {
		body := ""
		if strings.HasPrefix(l, "POST ") {
			body = "data"
		}
		out = append(out, mkEx(t, l+" HTTP/1.1\nHost: shop", body, testClient))
	}
	return out
}

// echo is the answer of a shadow that echoes the request's path as its
// body (none for HEAD: Content-Length only), with extra header lines.
func echo(req *http.Request, extra string) string {
	p := req.URL.Path
	if req.Method == "HEAD" {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n", len(p), extra)
	}
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s", len(p), extra, p)
}

// checkPipelined verifies that every request was answered once, with its own
// answer handed to the comparison: the body is the request's path (empty
// for HEAD), so an answer matched to the wrong request shows.
func checkPipelined(t *testing.T, r *started, fv *fakeVerdict, reqs []*httpx.Exchange) {
	t.Helper()
	s := r.Stats().Snapshot()
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	tg := s.Targets[0]
	if tg.ReplayedTotal() != uint64(len(reqs)) || tg.Failed() != 0 {
		t.Errorf("replayed %d, failed %d; want %d, 0: %+v", tg.ReplayedTotal(), tg.Failed(), len(reqs), tg)
	}
	seen := map[string]int{}
	for _, x := range fv.exchanges() {
		if len(x.Answers) != 1 || x.Answers[0].Response == nil {
			t.Errorf("%s %s: answers %+v, want one response", x.Method, x.Path, x.Answers)
			continue
		}
		a := x.Answers[0].Response
		want := x.Path
		if x.Method == "HEAD" {
			want = ""
		}
		if got := string(a.Body); got != want || a.BodyLen != int64(len(want)) || a.Status != 200 {
			t.Errorf("%s %s: answer %d %q (%d bytes), want 200 %q", x.Method, x.Path, a.Status, got, a.BodyLen, want)
		}
		seen[x.Method+" "+x.Path]++
	}
	for _, ex := range reqs {
		key := string(ex.Req.Method) + " " + string(ex.Req.Target)
		if seen[key] != 1 {
			t.Errorf("%s: %d answers handed over, want 1", key, seen[key])
		}
	}
}

// TestPipelineBatches: a shadow that supports pipelining gets the waiting
// requests several per write (it finds the next request already arrived
// when it reads one), answers them in order, and each answer reaches the
// request it belongs to; HEAD answers (no body) and interim 1xx responses
// inside a batch are read as a single request's are.
func TestPipelineBatches(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req *http.Request, i int) string // the i-th answer on a connection
		reqs   []string
	}{
		{
			name:   "GETs",
			answer: func(req *http.Request, _ int) string { return echo(req, "") },
			reqs:   []string{"GET /a", "GET /b", "GET /c", "GET /d", "GET /e", "GET /f", "GET /g", "GET /h"},
		},
		{
			name:   "HEAD inside a batch",
			answer: func(req *http.Request, _ int) string { return echo(req, "") },
			reqs:   []string{"GET /a", "HEAD /bb", "GET /c", "HEAD /dd", "HEAD /ee", "GET /f", "OPTIONS /g", "GET /h"},
		},
		{
			name: "1xx before some answers",
			answer: func(req *http.Request, i int) string {
				if i%2 == 1 {
					return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + echo(req, "")
				}
				return echo(req, "")
			},
			reqs: []string{"GET /a", "GET /b", "HEAD /c", "GET /d", "GET /e", "GET /f", "GET /g", "GET /h"},
		},
		{
			name:   "chunked answers",
			answer: func(req *http.Request, _ int) string { return chunked(req) },
			reqs:   []string{"GET /a", "GET /b", "GET /c", "GET /d", "GET /e", "GET /f", "GET /g", "GET /h"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			behind := 0 // requests read while the next one had already arrived
			rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
				for i := 0; ; i++ {
					req := readReq(t, br, true)
					if req == nil {
						return
					}
					if br.Buffered() > 0 {
						mu.Lock()
						behind++
						mu.Unlock()
					}
					if _, err := io.WriteString(nc, tc.answer(req, i)); err != nil {
						return
					}
				}
			})
			cfg := testConfig(mustURL(t, rs.url()))
			cfg.MaxInflight, cfg.Pipeline = 1, 4
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			reqs := exchanges(t, tc.reqs...)
			r := runQueued(t, cfg, reqs)
			checkPipelined(t, r, fv, reqs)
			tg := r.Stats().Snapshot().Targets[0]
			// 8 requests, 4 per batch: two writes of 4.
			if tg.PipelineBatches != 2 || tg.PipelinedRequests != 8 || tg.PipelineFallbacks != 0 {
				t.Errorf("batches %d of %d requests, fallbacks %d; want 2 of 8, 0", tg.PipelineBatches, tg.PipelinedRequests, tg.PipelineFallbacks)
			}
			mu.Lock()
			defer mu.Unlock()
			// In each batch of 4 the first 3 were read with the next one
			// already there: the requests were on the wire together.
			if behind != 6 {
				t.Errorf("the shadow read %d requests with the next already arrived, want 6", behind)
			}
			if n := rs.conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

// chunked answers with the request's path as a chunked body.
func chunked(req *http.Request) string {
	p := req.URL.Path
	if req.Method == "HEAD" {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	}
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(p), p)
}

// TestPipelineNetHTTP: net/http's server, which serves pipelined requests
// one after another, answers every request of every batch in order, with
// several workers sending batches at once.
func TestPipelineNetHTTP(t *testing.T) {
	var conns sync.Map
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.URL.Path))
	}, func(s *http.Server) {
		s.ConnState = func(nc net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Store(nc, true)
			}
		}
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight, cfg.Pipeline = 3, 8
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	var lines []string
	for i := range 200 {
		m := "GET"
		if i%7 == 3 {
			m = "HEAD"
		}
		lines = append(lines, fmt.Sprintf("%s /item/%d", m, i))
	}
	reqs := exchanges(t, lines...)
	r := runQueued(t, cfg, reqs)
	checkPipelined(t, r, fv, reqs)
	tg := r.Stats().Snapshot().Targets[0]
	if tg.PipelineBatches == 0 || tg.PipelinedRequests <= tg.PipelineBatches || tg.PipelineFallbacks != 0 {
		t.Errorf("batches %d of %d requests, fallbacks %d; want batches of several, no fallback", tg.PipelineBatches, tg.PipelinedRequests, tg.PipelineFallbacks)
	}
	if got := len(rec.got()); got != len(reqs) {
		t.Errorf("the shadow got %d requests, want %d", got, len(reqs))
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n > cfg.MaxInflight {
		t.Errorf("%d connections for %d workers", n, cfg.MaxInflight)
	}
}

// TestPipelineFallback: a shadow that ends the connection before answering
// a whole batch gets the unanswered requests again one at a time on new
// connections, and from then on one request at a time: the fallback is
// counted once, no request is lost or counted twice, and a request whose
// method cannot be sent twice is never left behind another in a batch.
// A connection that already answered whole batches and then closes (a
// keep-alive request limit) is not taken for a shadow that cannot pipeline.
func TestPipelineFallback(t *testing.T) {
	tests := []struct {
		name string
		// answer returns the i-th answer on a connection and whether the
		// shadow closes the connection after it.
		answer        func(req *http.Request, i int) (string, bool)
		reqs          []string
		wantBatches   uint64
		wantFallbacks uint64
		wantConns     int32
	}{
		{
			name: "answers the first request of a connection and closes",
			answer: func(req *http.Request, _ int) (string, bool) {
				return echo(req, ""), true
			},
			reqs:        []string{"GET /a", "GET /b", "GET /c", "GET /d", "GET /e", "GET /f", "GET /g", "GET /h"},
			wantBatches: 1, wantFallbacks: 1,
			wantConns: 8, // the batch's (one answer), then one per request
		},
		{
			name: "POST only ever first in a batch",
			answer: func(req *http.Request, _ int) (string, bool) {
				return echo(req, ""), true
			},
			// [GET /a] alone (the POST ends its batch), then [POST /b,
			// GET /c, GET /d]: the POST is answered, the GETs sent again.
			reqs:        []string{"GET /a", "POST /b", "GET /c", "GET /d", "GET /e", "GET /f"},
			wantBatches: 1, wantFallbacks: 1,
			wantConns: 6,
		},
		{
			name: "Connection: close on the second answer",
			answer: func(req *http.Request, i int) (string, bool) {
				if i == 1 {
					return echo(req, "Connection: close\r\n"), true
				}
				return echo(req, ""), false
			},
			// [a b c d]: b closes, c and d alone on a new connection (d
			// its second answer: closed); then e..h alone, two per
			// connection.
			reqs:        []string{"GET /a", "GET /b", "GET /c", "GET /d", "GET /e", "GET /f", "GET /g", "GET /h"},
			wantBatches: 1, wantFallbacks: 1,
			wantConns: 4,
		},
		{
			name: "close after whole batches: a keep-alive limit",
			answer: func(req *http.Request, i int) (string, bool) {
				if i == 5 {
					return echo(req, "Connection: close\r\n"), true
				}
				return echo(req, ""), false
			},
			// [1-4] whole; [5-8]: 6 closes, 7 and 8 alone on connection 2,
			// then [9-12] on it, pipelined still: 12 is its 6th answer.
			reqs: []string{"GET /1", "GET /2", "GET /3", "GET /4", "GET /5", "GET /6",
				"GET /7", "GET /8", "GET /9", "GET /10", "GET /11", "GET /12"},
			wantBatches: 3, wantFallbacks: 0,
			wantConns: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
				for i := 0; ; i++ {
					req := readReq(t, br, true)
					if req == nil {
						return
					}
					resp, end := tc.answer(req, i)
					if _, err := io.WriteString(nc, resp); err != nil || end {
						return // closed with the rest of the batch unread
					}
				}
			})
			cfg := testConfig(mustURL(t, rs.url()))
			cfg.MaxInflight, cfg.Pipeline = 1, 4
			cfg.Methods = []string{"GET", "POST"}
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			reqs := exchanges(t, tc.reqs...)
			r := runQueued(t, cfg, reqs)
			checkPipelined(t, r, fv, reqs)
			tg := r.Stats().Snapshot().Targets[0]
			if tg.PipelineBatches != tc.wantBatches || tg.PipelineFallbacks != tc.wantFallbacks {
				t.Errorf("batches %d, fallbacks %d; want %d, %d", tg.PipelineBatches, tg.PipelineFallbacks, tc.wantBatches, tc.wantFallbacks)
			}
			if got := r.targets[0].noPipe.Load(); got != (tc.wantFallbacks > 0) {
				t.Errorf("pipelining off %v, want %v", got, tc.wantFallbacks > 0)
			}
			if n := rs.conns.Load(); n != tc.wantConns {
				t.Errorf("%d connections, want %d", n, tc.wantConns)
			}
			if got := gatherCounter(t, r.Collectors(), "shadowtap_replay_pipeline_fallbacks_total", rs.url()); got != float64(tc.wantFallbacks) {
				t.Errorf("shadowtap_replay_pipeline_fallbacks_total = %v, want %d", got, tc.wantFallbacks)
			}
		})
	}
}

// gatherCounter reads the counter name{target} from collectors.
func gatherCounter(t *testing.T, collectors []prometheus.Collector, name, target string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" && l.GetValue() == target {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{target=%q} not exported", name, target)
	return 0
}

// TestPipelineStalls: a shadow that stops answering in the middle of a
// batch. With time left, the stalled request fails "timeout" (its time
// counted from the end of the previous answer), the ones behind it, never
// answered, are sent again on a new connection, and pipelining stays on
// (a slow shadow is not one that cannot pipeline). When Drain's deadline
// passes first, every request still waiting for its answer fails "drain".
// Either way each request ends in exactly one outcome.
func TestPipelineStalls(t *testing.T) {
	tests := []struct {
		name       string
		timeout    time.Duration
		drain      time.Duration
		want       map[string]string // path -> "" (answered) or the failure reason
		wantConns2 bool              // a second connection was opened
	}{
		{
			name: "timeout", timeout: 300 * time.Millisecond, drain: 10 * time.Second,
			want:       map[string]string{"/a": "", "/b": "timeout", "/c": "", "/d": ""},
			wantConns2: true,
		},
		{
			name: "drain deadline", timeout: 10 * time.Second, drain: 300 * time.Millisecond,
			want: map[string]string{"/a": "", "/b": "stopped", "/c": "stopped", "/d": "stopped"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The first connection answers its first request, then reads
			// on without answering until the client gives up on it.
			rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
				for i := 0; ; i++ {
					req := readReq(t, br, true)
					if req == nil {
						return
					}
					if n == 0 && i > 0 {
						continue
					}
					if _, err := io.WriteString(nc, echo(req, "")); err != nil {
						return
					}
				}
			})
			cfg := testConfig(mustURL(t, rs.url()))
			cfg.MaxInflight, cfg.Pipeline, cfg.Timeout = 1, 4, tc.timeout
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			s, _ := drainQueued(t, cfg, exchanges(t, "GET /a", "GET /b", "GET /c", "GET /d"), tc.drain)
			r := s.Replayer
			st := r.Stats().Snapshot()
			if err := st.Check(); err != nil {
				t.Error(err)
			}
			got := map[string]string{}
			for _, x := range fv.exchanges() {
				for _, a := range x.Answers {
					if _, dup := got[x.Path]; dup {
						t.Errorf("%s: answered twice", x.Path)
					}
					got[x.Path] = a.Error
					if a.Response != nil && string(a.Response.Body) != x.Path {
						t.Errorf("%s: answer body %q", x.Path, a.Response.Body)
					}
				}
			}
			for p, want := range tc.want {
				if g, ok := got[p]; !ok || g != want {
					t.Errorf("%s: outcome %q (present %v), want %q (\"\" = answered)", p, g, ok, want)
				}
			}
			tg := st.Targets[0]
			if tg.PipelineFallbacks != 0 || r.targets[0].noPipe.Load() {
				t.Errorf("fallbacks %d: a stalled shadow turned pipelining off", tg.PipelineFallbacks)
			}
			if n := rs.conns.Load(); (n > 1) != tc.wantConns2 {
				t.Errorf("%d connections", n)
			}
		})
	}
}
