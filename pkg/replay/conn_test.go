package replay

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleConnClosedByShadow: when the shadow closes a kept connection
// between requests, the close is seen before the connection is reused
// (counted discarded "closed"): every request, replayable or not, goes on a
// new connection and is answered.
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
	r.Request(mkEx(t, "POST /3 HTTP/1.1\nHost: h", "body", testClient))
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if tg := s.Targets[0]; tg.ReplayedTotal() != 3 || tg.Failed() != 0 || tg.DiscardedClosed != 2 {
		t.Errorf("%+v, want 3 replayed, 2 connections discarded closed", tg)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestConnClosedOnRequest: when the shadow closes a kept connection as the
// next request arrives (the close raced with the reuse), a replayable
// request is sent again on a new connection, as http.Transport does, and
// does not count as failed; a POST is not sent again.
func TestConnClosedOnRequest(t *testing.T) {
	// Every connection answers its first request and closes on its second.
	rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
		if readReq(t, br, true) == nil {
			return
		}
		io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		readReq(t, br, true)
	})
	cfg := testConfig(mustURL(t, rs.url()))
	cfg.MaxInflight = 1
	cfg.Methods = []string{"GET", "POST"}
	r := start(t, cfg)
	replayed := func() uint64 { return r.Stats().Snapshot().Targets[0].ReplayedTotal() }
	r.Request(get(t, "/1")) // connection 0, first
	waitFor(t, "the first answer", func() bool { return replayed() == 1 })
	r.Request(get(t, "/2")) // connection 0, second: closed; sent again on connection 1
	waitFor(t, "the second answer", func() bool { return replayed() == 2 })
	r.Request(mkEx(t, "POST /3 HTTP/1.1\nHost: h", "body", testClient)) // connection 1, second: closed
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if tg := s.Targets[0]; tg.ReplayedTotal() != 2 || tg.FailedError != 1 {
		t.Errorf("%+v, want 2 replayed and the POST failed", tg)
	}
	if n := rs.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
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
