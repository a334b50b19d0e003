package replay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

const (
	testClient = "192.0.2.7:40000"
	testServer = "198.51.100.1:8080"
)

// mkEx builds an Exchange as the parser would: raw is the request head
// (request line and header lines, "\n" or "\r\n" separated, with or without
// the blank line); body is the de-chunked body.
func mkEx(t testing.TB, raw, body, client string) *httpx.Exchange {
	t.Helper()
	head := []byte(raw)
	if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		head = bytes.ReplaceAll(head, []byte("\r\n"), []byte("\n"))
		head = bytes.TrimRight(head, "\n")
		head = append(bytes.ReplaceAll(head, []byte("\n"), []byte("\r\n")), "\r\n\r\n"...)
	}
	ex := &httpx.Exchange{Conn: flow.Key{
		VNI:    7,
		Client: netip.MustParseAddrPort(client),
		Server: netip.MustParseAddrPort(testServer),
	}}
	ex.Req.Head = head
	lines := bytes.Split(head[:len(head)-4], []byte("\r\n"))
	parts := bytes.SplitN(lines[0], []byte(" "), 3)
	if len(parts) != 3 {
		t.Fatalf("mkEx: bad request line %q", lines[0])
	}
	ex.Req.Method, ex.Req.Target, ex.Req.Proto = parts[0], parts[1], parts[2]
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			t.Fatalf("mkEx: bad header line %q", l)
		}
		ex.Req.Fields = append(ex.Req.Fields, httpx.Field{Name: name, Value: bytes.TrimSpace(value)})
	}
	if body != "" {
		ex.Req.Body = []byte(body)
	}
	return ex
}

// prodResp sets production's response on ex.
func prodResp(ex *httpx.Exchange, status int, bodyLen int64) {
	ex.Resp = &httpx.Response{Status: status, BodyLen: bodyLen}
	ex.Reason = httpx.RespOK
}

// prodBody sets production's response on ex as the parser keeps it with
// ResponseBodyKeep keep: the first keep bytes of body, and when it is
// longer, the hash of all of it.
func prodBody(ex *httpx.Exchange, status int, body string, keep int, fields ...string) {
	ex.Resp = &httpx.Response{Status: status, BodyLen: int64(len(body)), BodyComplete: len(body) <= keep}
	if !ex.Resp.BodyComplete {
		ex.Resp.BodyHash = httpx.HashAdd(httpx.HashInit, []byte(body))
	}
	if body != "" {
		ex.Resp.Body = []byte(body[:min(keep, len(body))])
	}
	for i := 0; i+1 < len(fields); i += 2 {
		ex.Resp.Fields = append(ex.Resp.Fields, httpx.Field{Name: []byte(fields[i]), Value: []byte(fields[i+1])})
	}
	ex.Reason = httpx.RespOK
}

// fakeVerdict is a comparison stage that records what replay hands it.
type fakeVerdict struct {
	mu         sync.Mutex
	xs         []*verdict.Exchange
	uncompared map[string]map[string]int // target -> reason -> count
	hold       bool                      // do not call Done: a busy engine still holding the bodies
}

// Submit keeps x and, unless hold is set, is done with it at once (as the
// engine is after comparing it), which gives its bodies' budget back.
func (f *fakeVerdict) Submit(x *verdict.Exchange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.xs = append(f.xs, x)
	if !f.hold && x.Done != nil {
		x.Done()
	}
}

func (f *fakeVerdict) Uncompared(target, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.uncompared == nil {
		f.uncompared = map[string]map[string]int{}
	}
	if f.uncompared[target] == nil {
		f.uncompared[target] = map[string]int{}
	}
	f.uncompared[target][reason]++
}

func (f *fakeVerdict) exchanges() []*verdict.Exchange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*verdict.Exchange(nil), f.xs...)
}

// answers counts, per target, the answers handed over in exchanges.
func (f *fakeVerdict) answers() map[string]int {
	out := map[string]int{}
	for _, x := range f.exchanges() {
		for _, a := range x.Answers {
			out[a.Target]++
		}
	}
	return out
}

func (f *fakeVerdict) uncomparedOf(target string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.uncompared[target] {
		out[k] = v
	}
	return out
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// started is a running Replayer; stop drains it and waits for Run.
type started struct {
	*Replayer
	runErr chan error
	ran    bool // Run has returned
}

func start(t testing.TB, cfg Config) *started {
	t.Helper()
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &started{Replayer: r, runErr: make(chan error, 1)}
	go func() { s.runErr <- r.Run(context.Background()) }()
	waitFor(t, "Run to start", func() bool {
		r.runMu.Lock()
		defer r.runMu.Unlock()
		return r.started
	})
	t.Cleanup(func() { s.stop(t, 5*time.Second) })
	return s
}

// stop drains with the given deadline and waits for Run to return.
func (s *started) stop(t testing.TB, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := s.Drain(ctx)
	if s.ran {
		return err
	}
	s.ran = true
	select {
	case runErr := <-s.runErr:
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Drain")
	}
	return err
}

// noHang runs f and fails the test if it has not returned within 5 s: a
// hang detector for calls that must not block, not a timing measure.
func noHang(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

// captured is what the shadow server received.
type captured struct {
	Method, RequestURI, Host string
	Header                   http.Header
	Body                     []byte
	ContentLength            int64
	TransferEncoding         []string
}

// recorder is a shadow server that records every request.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []captured
}

func newRecorder(t testing.TB, h func(w http.ResponseWriter, r *http.Request), opts ...func(*http.Server)) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, captured{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body, r.ContentLength, r.TransferEncoding})
		rec.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}))
	rec.Config.DisableGeneralOptionsHandler = true // let OPTIONS * reach the handler
	for _, o := range opts {
		o(rec.Config)
	}
	rec.Start()
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) got() []captured {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]captured(nil), rec.reqs...)
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func testConfig(targets ...*url.URL) Config {
	cfg := DefaultConfig()
	cfg.Targets = targets
	cfg.Timeout = 5 * time.Second
	cfg.MaxInflight = 4
	return cfg
}
