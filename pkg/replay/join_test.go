package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// TestJoin: replay meets production's response and the shadow's answer,
// whichever comes first, and hands one exchange to the comparison stage
// with both sides as they were seen.
func TestJoin(t *testing.T) {
	const shadowBody = `{"id":7,"email":"b@example.com"}`
	tests := []struct {
		name        string
		prod        func(ex *httpx.Exchange)
		shadowFirst bool
		check       func(t *testing.T, x *verdict.Exchange)
	}{
		{"production first", func(ex *httpx.Exchange) {
			prodBody(ex, 200, `{"id":7,"email":"a@example.com"}`, 1<<20, "Content-Type", "application/json", "Set-Cookie", "sid=1; Domain=.shop.example.com")
		}, false, func(t *testing.T, x *verdict.Exchange) {
			p, want := x.Production, `{"id":7,"email":"a@example.com"}`
			if p == nil || p.Status != 200 || string(p.Body) != want || !p.BodyComplete || p.BodyLen != int64(len(want)) {
				t.Fatalf("production %+v", p)
			}
			if p.Header.Get("Content-Type") != "application/json" || p.Header.Get("Set-Cookie") != "sid=1; Domain=.shop.example.com" {
				t.Errorf("production header %v", p.Header)
			}
		}},
		{"shadow first", func(ex *httpx.Exchange) { prodBody(ex, 404, "nope", 1<<20) }, true,
			func(t *testing.T, x *verdict.Exchange) {
				if x.Production == nil || x.Production.Status != 404 || string(x.Production.Body) != "nope" {
					t.Errorf("production %+v", x.Production)
				}
			}},
		{"production lost in a gap", func(ex *httpx.Exchange) { ex.Reason = httpx.RespGap }, true,
			func(t *testing.T, x *verdict.Exchange) {
				if x.Production != nil || x.ProductionMissing != "gap" {
					t.Errorf("production %+v, missing %q; want nil, gap", x.Production, x.ProductionMissing)
				}
			}},
		{"production too large", func(ex *httpx.Exchange) {
			prodResp(ex, 200, 1<<30)
			ex.Resp.TooLarge, ex.Reason = true, httpx.RespTooLarge
		}, false, func(t *testing.T, x *verdict.Exchange) {
			if x.Production != nil || x.ProductionMissing != "too_large" {
				t.Errorf("production %+v, missing %q; want nil, too_large", x.Production, x.ProductionMissing)
			}
		}},
		{"production body beyond the compare limit", func(ex *httpx.Exchange) {
			prodBody(ex, 200, strings.Repeat("p", 100), 1<<20) // the parser kept more than replay keeps
		}, false, func(t *testing.T, x *verdict.Exchange) {
			p := x.Production
			if len(p.Body) != 64 || p.BodyComplete || p.BodyLen != 100 || p.BodyHash != httpx.HashAdd(httpx.HashInit, []byte(strings.Repeat("p", 100))) {
				t.Errorf("production body %d bytes, complete %v, len %d", len(p.Body), p.BodyComplete, p.BodyLen)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Shadow", "yes")
				w.Write([]byte(shadowBody))
			})
			cfg := testConfig(mustURL(t, rec.URL))
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			if strings.Contains(tt.name, "limit") {
				cfg.CompareBodyBytes = 64
			}
			r := start(t, cfg)
			ex := get(t, "/users/7?token=abc")
			ex.Req.End = 1_000_000
			r.Request(ex)
			if tt.shadowFirst {
				waitFor(t, "the shadow's answer", func() bool { return r.Stats().Snapshot().Targets[0].Awaiting == 1 })
				if n := len(fv.exchanges()); n != 0 {
					t.Fatalf("%d exchanges handed over before production's response", n)
				}
			}
			tt.prod(ex)
			if ex.Resp != nil {
				ex.Resp.Start = 3_000_000
			}
			r.Response(ex)
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			xs := fv.exchanges()
			if len(xs) != 1 {
				t.Fatalf("%d exchanges handed over, want 1", len(xs))
			}
			x := xs[0]
			if x.Method != "GET" || x.Path != "/users/7" || x.Query != "token=abc" || x.Host != "shop.example.com" || x.Time.IsZero() {
				t.Errorf("exchange %s %s ? %s host %s at %v", x.Method, x.Path, x.Query, x.Host, x.Time)
			}
			if x.Production != nil && x.Production.Latency != 2*time.Millisecond {
				t.Errorf("production latency %v, want 2ms (response start - request end)", x.Production.Latency)
			}
			if len(x.Answers) != 1 {
				t.Fatalf("answers %+v", x.Answers)
			}
			a := x.Answers[0]
			if a.Target != rec.URL || a.Baseline || a.Error != "" || a.Response == nil {
				t.Fatalf("answer %+v", a)
			}
			if s := a.Response; s.Status != 200 || s.Header.Get("X-Shadow") != "yes" || string(s.Body) != shadowBody || !s.BodyComplete ||
				s.BodyLen != int64(len(shadowBody)) || s.Latency <= 0 {
				t.Errorf("shadow's answer %+v", s)
			}
			tt.check(t, x)
			st := r.Stats().Snapshot()
			if err := st.Check(); err != nil {
				t.Error(err)
			}
			r.cmp.mu.Lock()
			left := len(r.cmp.joins)
			r.cmp.mu.Unlock()
			if left != 0 || r.cmp.held.Load() != 0 {
				t.Errorf("%d joins and %d bytes left", left, r.cmp.held.Load())
			}
		})
	}
}

// TestJoinFailures: a target that did not answer is an answer without a
// response, with the reason the comparison reports; a request that cannot
// be rebuilt is counted uncompared by replay.
func TestJoinFailures(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	slow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
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
	ok := newRecorder(t, nil)
	tests := []struct {
		name, target, req string
		wantError         string // the answer's Error
		wantUncompared    string // or replay's uncompared reason
	}{
		{"connect", deadURL, "GET / HTTP/1.1\nHost: h", "connect", ""},
		{"timeout", slow.URL, "GET / HTTP/1.1\nHost: h", "timeout", ""},
		{"reset", reset.URL, "GET / HTTP/1.1\nHost: h", "reset", ""},
		{"invalid request", ok.URL, "GET no-slash HTTP/1.1\nHost: h", "", UncomparedInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(mustURL(t, tt.target))
			cfg.Timeout = 200 * time.Millisecond
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			r := start(t, cfg)
			ex := mkEx(t, tt.req, "", testClient)
			r.Request(ex)
			prodResp(ex, 200, 0)
			r.Response(ex)
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			xs := fv.exchanges()
			if tt.wantUncompared != "" {
				if len(xs) != 0 || fv.uncomparedOf(tt.target)[tt.wantUncompared] != 1 {
					t.Errorf("exchanges %d, uncompared %v; want none, one %s", len(xs), fv.uncomparedOf(tt.target), tt.wantUncompared)
				}
			} else if len(xs) != 1 || len(xs[0].Answers) != 1 || xs[0].Answers[0].Response != nil || xs[0].Answers[0].Error != tt.wantError {
				t.Fatalf("exchanges %+v, want one answer with error %q", xs, tt.wantError)
			}
			if err := r.Stats().Snapshot().Check(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestBaseline: the baseline is one more target with its own counters;
// every replayed request reaches it, and its answer is marked Baseline in
// the same exchange as the shadow's.
func TestBaseline(t *testing.T) {
	shadow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("new")) })
	base := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("old")) })
	cfg := testConfig(mustURL(t, shadow.URL))
	cfg.Baseline = mustURL(t, base.URL)
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r := start(t, cfg)
	const n = 10
	for range n {
		ex := get(t, "/p")
		r.Request(ex)
		prodBody(ex, 200, "old", 1<<20)
		r.Response(ex)
	}
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(shadow.got()) != n || len(base.got()) != n {
		t.Errorf("shadow got %d, baseline %d requests; want %d each", len(shadow.got()), len(base.got()), n)
	}
	s := r.Stats().Snapshot()
	if len(s.Targets) != 2 || s.Targets[0].Baseline || !s.Targets[1].Baseline || s.Targets[1].Target != base.URL || s.Targets[1].Replayed[Class2xx] != n {
		t.Errorf("targets %+v", s.Targets)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	xs := fv.exchanges()
	if len(xs) != n {
		t.Fatalf("%d exchanges, want %d", len(xs), n)
	}
	for _, x := range xs {
		got := map[string]string{}
		for _, a := range x.Answers {
			got[a.Target] = string(a.Response.Body)
			if a.Baseline != (a.Target == base.URL) {
				t.Errorf("answer of %s marked Baseline %v", a.Target, a.Baseline)
			}
		}
		if got[shadow.URL] != "new" || got[base.URL] != "old" {
			t.Errorf("answers %v", got)
		}
	}
	bad := testConfig(mustURL(t, shadow.URL))
	bad.Baseline = mustURL(t, shadow.URL)
	if _, err := New(bad, nil); err == nil {
		t.Error("a baseline that is also a target was accepted")
	}
}

// TestCompareBudget: bodies held for comparison stay within CompareBudget;
// an exchange whose bodies do not fit is counted uncompared "budget" for
// every target that answered, and the budget is given back.
func TestCompareBudget(t *testing.T) {
	big := strings.Repeat("b", 4000)
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(big))
			return
		}
		w.Write([]byte("small"))
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.CompareBudget = 5000
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r := start(t, cfg)
	for _, tc := range []struct{ path, prod string }{
		{"/small", "small"}, // 10 bytes: fits
		{"/big", big},       // 8000 bytes: does not
		{"/small", "small"}, // fits again: the budget was given back
	} {
		ex := get(t, tc.path)
		r.Request(ex)
		prodBody(ex, 200, tc.prod, 1<<20)
		r.Response(ex)
		waitFor(t, "the exchange to end", func() bool { return r.Stats().Snapshot().Targets[0].Awaiting == 0 && r.cmp.held.Load() == 0 })
	}
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(fv.exchanges()); n != 2 {
		t.Errorf("%d exchanges handed over, want the 2 small ones", n)
	}
	if u := fv.uncomparedOf(rec.URL); u[UncomparedBudget] != 1 {
		t.Errorf("uncompared %v, want one budget", u)
	}
	s := r.Stats().Snapshot()
	if tg := s.Targets[0]; tg.Compared != 2 || tg.Uncompared != 1 {
		t.Errorf("compared %d, uncompared %d; want 2, 1", tg.Compared, tg.Uncompared)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestReplayDelay: each request is held ReplayDelay before it is sent, and
// counted in flight meanwhile; a drain deadline cancels held requests.
func TestReplayDelay(t *testing.T) {
	arrived := make(chan time.Time, 10)
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { arrived <- time.Now() })
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.ReplayDelay = 300 * time.Millisecond
	r := start(t, cfg)
	sent := time.Now()
	r.Request(get(t, "/a"))
	waitFor(t, "the request to be held", func() bool { return r.Stats().Snapshot().Targets[0].InFlight == 1 })
	select {
	case at := <-arrived:
		if d := at.Sub(sent); d < cfg.ReplayDelay {
			t.Errorf("sent after %v, want at least %v", d, cfg.ReplayDelay)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held request was never sent")
	}
	waitFor(t, "the answer", func() bool { return r.Stats().Snapshot().Targets[0].Replayed[Class2xx] == 1 })

	cfg.ReplayDelay = time.Hour
	held := start(t, cfg)
	held.Request(get(t, "/b"))
	waitFor(t, "the request to be held", func() bool { return held.Stats().Snapshot().Targets[0].InFlight == 1 })
	if err := held.stop(t, 50*time.Millisecond); err == nil {
		t.Error("Drain returned nil while a request was held past its deadline")
	}
	s := held.Stats().Snapshot()
	if s.Targets[0].FailedDrain != 1 {
		t.Errorf("failed drain %d, want 1", s.Targets[0].FailedDrain)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestNoVerdictNoJoins: without a comparison stage replay keeps no join
// table, copies no body and its Check skips the comparison identity.
func TestNoVerdictNoJoins(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	r := start(t, testConfig(mustURL(t, rec.URL)))
	ex := get(t, "/")
	r.Request(ex)
	prodBody(ex, 200, "x", 1<<20)
	r.Response(ex)
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if r.cmp.joins != nil || s.Comparing || s.Targets[0].Compared+s.Targets[0].Uncompared+s.Targets[0].Awaiting != 0 {
		t.Errorf("joins %v, stats %+v", r.cmp.joins, s.Targets[0])
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestShadowBodyBeyondLimit: of a shadow body longer than CompareBodyBytes
// the first bytes are kept and the whole is hashed as httpx hashes
// production's, whatever the framing; a body that fits is kept whole.
func TestShadowBodyBeyondLimit(t *testing.T) {
	long := strings.Repeat("0123456789", 10_000) // several reads
	for _, tc := range []struct {
		name, body string
		chunked    bool
	}{
		{"content-length", long, false},
		{"chunked", long, true},
		{"fits", long[:64], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(tc.body)))
				}
				for i := 0; i < len(tc.body); i += 1000 {
					w.Write([]byte(tc.body[i:min(i+1000, len(tc.body))]))
				}
			})
			cfg := testConfig(mustURL(t, rec.URL))
			cfg.CompareBodyBytes = 64
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			r := start(t, cfg)
			ex := get(t, "/")
			r.Request(ex)
			prodBody(ex, 200, tc.body, 64)
			r.Response(ex)
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			xs := fv.exchanges()
			if len(xs) != 1 {
				t.Fatalf("%d exchanges", len(xs))
			}
			p, a := xs[0].Production, xs[0].Answers[0].Response
			fits := len(tc.body) <= 64
			if a == nil || string(a.Body) != tc.body[:64] || a.BodyLen != int64(len(tc.body)) || a.BodyComplete != fits {
				t.Fatalf("shadow's answer: body %d bytes, length %d, complete %v", len(a.Body), a.BodyLen, a.BodyComplete)
			}
			wantHash := uint64(0)
			if !fits {
				wantHash = httpx.HashAdd(httpx.HashInit, []byte(tc.body))
			}
			if a.BodyHash != wantHash || p.BodyHash != wantHash {
				t.Errorf("hashes: shadow %x, production %x, want %x", a.BodyHash, p.BodyHash, wantHash)
			}
		})
	}
}

// TestCompareBudgetCoversEngineQueue: bodies handed to the comparison stage
// stay in the budget until the stage is done with them (Done), so a slow
// engine's queue cannot hold more than --compare-budget.
func TestCompareBudgetCoversEngineQueue(t *testing.T) {
	rec := newRecorder(t, nil)
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.CompareBudget = 5000
	fv := &fakeVerdict{hold: true}
	cfg.Verdict = fv
	r := start(t, cfg)
	body := strings.Repeat("x", 3000)
	ex := get(t, "/a")
	r.Request(ex)
	prodBody(ex, 200, body, 1<<20)
	r.Response(ex)
	waitFor(t, "the first exchange handed over", func() bool { return len(fv.exchanges()) == 1 })
	if held := r.cmp.held.Load(); held < 3000 {
		t.Fatalf("%d bytes held while the engine holds the exchange, want at least its 3000-byte body", held)
	}
	// A second one does not fit while the first is held.
	ex2 := get(t, "/b")
	r.Request(ex2)
	prodBody(ex2, 200, body, 1<<20)
	r.Response(ex2)
	waitFor(t, "the second exchange to end", func() bool { return r.Stats().Snapshot().Targets[0].Awaiting == 0 })
	if n := len(fv.exchanges()); n != 1 {
		t.Errorf("%d exchanges handed over, want 1: the second is beyond the budget", n)
	}
	fv.exchanges()[0].Done()
	if held := r.cmp.held.Load(); held != 0 {
		t.Errorf("%d bytes held after the engine was done, want 0", held)
	}
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestFailAnswer: what the comparison is told about a target that did not
// answer, and so what a shadow_error difference says.
func TestFailAnswer(t *testing.T) {
	tests := []struct {
		reason failReason
		err    error
		want   string
	}{
		{failConnect, errors.New("dial"), "connect"},
		{failTimeout, context.DeadlineExceeded, "timeout"},
		{failDrain, context.Canceled, "stopped"},
		{failTooLarge, errors.New("head too large"), "response_too_large"},
		{failError, syscall.ECONNRESET, "reset"},
		{failError, io.ErrUnexpectedEOF, "reset"},
		{failError, errors.New("malformed"), "error"},
	}
	for _, tc := range tests {
		if got := failAnswer(tc.reason, tc.err); got.Error != tc.want || got.Response != nil {
			t.Errorf("failAnswer(%s, %v) = %+v, want Error %q", failNames[tc.reason], tc.err, got, tc.want)
		}
	}
}

// Production's header as the comparison sees it: every field under its
// canonical name, repeated names in order, values as parsed; and the
// slices of one name never share room with another's (an append to one
// must not change the next).
func TestHeaderOf(t *testing.T) {
	tests := []struct {
		name   string
		fields [][2]string
		want   http.Header
	}{
		{"none", nil, http.Header{}},
		{"known and unknown names, any case", [][2]string{{"content-type", "text/html"}, {"ETag", `"abc"`}, {"x-odd-NAME", "1"}, {"WWW-Authenticate", "Basic"}},
			http.Header{"Content-Type": {"text/html"}, "Etag": {`"abc"`}, "X-Odd-Name": {"1"}, "Www-Authenticate": {"Basic"}}},
		{"repeated, interleaved", [][2]string{{"Set-Cookie", "a=1"}, {"Vary", "Accept"}, {"set-cookie", "b=2"}, {"Vary", ""}, {"Set-Cookie", "c=3"}},
			http.Header{"Set-Cookie": {"a=1", "b=2", "c=3"}, "Vary": {"Accept", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fields []httpx.Field
			for _, f := range tc.fields {
				fields = append(fields, httpx.Field{Name: []byte(f[0]), Value: []byte(f[1])})
			}
			h := headerOf(fields)
			if fmt.Sprint(h) != fmt.Sprint(tc.want) {
				t.Fatalf("headerOf = %v, want %v", h, tc.want)
			}
			for k := range h {
				before := fmt.Sprint(h)
				h2 := append(h[k], "appended")
				_ = h2
				if fmt.Sprint(h) != before {
					t.Errorf("appending to %s's values changed another name's: %v", k, h)
				}
			}
		})
	}
}
