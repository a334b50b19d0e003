package replay

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleConnClosedByShadow: when the shadow closes a kept connection
// between requests, a replayable request is sent again on a new one, as
// http.Transport did, and does not count as failed.
func TestIdleConnClosedByShadow(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight = 1
	cfg.Methods = []string{"GET", "POST"}
	r := start(t, cfg)
	replayed := func() uint64 { return r.Stats().Snapshot().Targets[0].ReplayedTotal() }
	r.Request(get(t, "/1"))
	waitFor(t, "the first answer", func() bool { return replayed() == 1 })
	rec.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // let the close reach the worker's socket
	r.Request(get(t, "/2"))
	waitFor(t, "the second answer", func() bool { return replayed() == 2 })
	rec.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	r.Request(mkEx(t, "POST /3 HTTP/1.1\nHost: h", "body", testClient)) // not replayable: not sent again
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if tg := s.Targets[0]; tg.ReplayedTotal() != 2 || tg.FailedError != 1 {
		t.Errorf("%+v, want 2 replayed and the POST failed", tg)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestHTTPSTarget: an https target gets TLS with the URL's host as server
// name, HTTP/1.1, and keeps its connection.
func TestHTTPSTarget(t *testing.T) {
	var conns, h1 atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && r.TLS != nil && r.TLS.ServerName == "example.com" {
			h1.Add(1)
		}
		w.Write([]byte("secure"))
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	u := mustURL(t, "https://example.com:"+mustURL(t, srv.URL).Port())
	cfg := testConfig(u)
	cfg.MaxInflight = 1
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tg := r.targets[0]
	tg.addr = srv.Listener.Addr().String()
	tg.tlsConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(t.Context()) }()
	for range 3 {
		r.Request(get(t, "/"))
	}
	if err := r.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot().Targets[0]
	if s.Replayed[Class2xx] != 3 || h1.Load() != 3 || conns.Load() != 1 {
		t.Errorf("%+v; %d HTTP/1.1 with SNI, %d connections; want 3, 3, 1", s, h1.Load(), conns.Load())
	}
}
