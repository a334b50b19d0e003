package replay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The replay client (conn.go) against a scripted shadow: each test's server
// reads the requests itself and writes exactly the bytes it wants, so the
// client meets what net/http's server would never send.

// script answers the requests of one accepted connection. n is the index
// of the connection (0 for the first accepted).
type script func(t *testing.T, n int, nc net.Conn, br *bufio.Reader)

// rawShadow is a TCP (or TLS) server that runs a script per connection.
type rawShadow struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func newRawShadow(t *testing.T, tlsConfig *tls.Config, s script) *rawShadow {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	rs := &rawShadow{ln: ln}
	rs.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(rs.conns.Add(1)) - 1
			rs.wg.Go(func() {
				defer nc.Close()
				s(t, n, nc, bufio.NewReader(nc))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		rs.wg.Wait()
	})
	return rs
}

func (rs *rawShadow) url() string { return "http://" + rs.ln.Addr().String() }

// readReq reads one request head from br; with body, its body too.
func readReq(t *testing.T, br *bufio.Reader, body bool) *http.Request {
	req, err := http.ReadRequest(br)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			t.Logf("shadow: reading a request: %v", err)
		}
		return nil
	}
	if body {
		io.Copy(io.Discard, req.Body)
	}
	return req
}

// answerAll answers every request of the connection with resp(req).
func answerAll(resp func(req *http.Request) string) script {
	return func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
		for {
			req := readReq(t, br, true)
			if req == nil {
				return
			}
			if _, err := io.WriteString(nc, resp(req)); err != nil {
				return
			}
		}
	}
}

// TestClientResponses: responses without a body (HEAD, 204, 304), interim
// 1xx responses, close-delimited bodies: each answer is counted in its
// class with its real body length, and the connection is kept when the
// response allows it.
func TestClientResponses(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		resp      func(req *http.Request) string
		class     Class
		bodyLen   int64 // the answer's body length (compared with production's)
		wantConns int32 // connections for 3 requests
	}{
		{
			name: "HEAD: Content-Length without a body", method: "HEAD",
			resp:  func(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" },
			class: Class2xx, bodyLen: 0, wantConns: 1,
		},
		{
			name: "204 without a body", method: "GET",
			resp:  func(*http.Request) string { return "HTTP/1.1 204 No Content\r\n\r\n" },
			class: Class2xx, bodyLen: 0, wantConns: 1,
		},
		{
			name: "304 with a Content-Length and no body", method: "GET",
			resp: func(*http.Request) string {
				return "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nETag: \"x\"\r\n\r\n"
			},
			class: Class3xx, bodyLen: 0, wantConns: 1,
		},
		{
			name: "1xx interim responses before the final one", method: "GET",
			resp: func(*http.Request) string {
				return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" +
					"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
			},
			class: Class2xx, bodyLen: 5, wantConns: 1,
		},
		{
			name: "chunked body", method: "GET",
			resp: func(*http.Request) string {
				return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
			},
			class: Class2xx, bodyLen: 7, wantConns: 1,
		},
		{
			name: "HTTP/1.0 without Content-Length: body ends at close", method: "GET",
			resp:  func(*http.Request) string { return "HTTP/1.0 200 OK\r\n\r\n0123456789" },
			class: Class2xx, bodyLen: 10, wantConns: 3,
		},
		{
			name: "HTTP/1.1 Connection: close, body ends at close", method: "GET",
			resp:  func(*http.Request) string { return "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnope" },
			class: Class4xx, bodyLen: 4, wantConns: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
				for {
					req := readReq(t, br, true)
					if req == nil {
						return
					}
					if _, err := io.WriteString(nc, tc.resp(req)); err != nil {
						return
					}
					if req.Method != tc.method {
						t.Errorf("shadow got %s, want %s", req.Method, tc.method)
					}
					if req.Close || strings.HasPrefix(tc.resp(req), "HTTP/1.0") || strings.Contains(tc.resp(req), "Connection: close") {
						return
					}
				}
			})
			cfg := testConfig(mustURL(t, rs.url()))
			cfg.MaxInflight = 1
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			r := start(t, cfg)
			for i := range 3 {
				ex := mkEx(t, fmt.Sprintf("%s /%d HTTP/1.1\nHost: h", tc.method, i), "", testClient)
				prodResp(ex, 200, tc.bodyLen)
				r.Request(ex)
				r.Response(ex)
				// One at a time: each answer is read before the next request.
				waitFor(t, "the answer", func() bool { return r.Stats().Snapshot().Targets[0].ReplayedTotal() == uint64(i+1) })
			}
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			s := r.Stats().Snapshot()
			if err := s.Check(); err != nil {
				t.Error(err)
			}
			tg := s.Targets[0]
			if tg.Replayed[tc.class] != 3 || tg.Failed() != 0 {
				t.Errorf("%+v: want 3 answers of class %v, none failed", tg, tc.class)
			}
			checkAnswers(t, fv, 3, tc.bodyLen)
			if n := rs.conns.Load(); n != tc.wantConns {
				t.Errorf("%d connections, want %d", n, tc.wantConns)
			}
			if tg.DiscardedUnsolicited != 0 {
				t.Errorf("%d connections discarded for unsolicited bytes, want none", tg.DiscardedUnsolicited)
			}
		})
	}
}

// TestClientTooMany1xx: more interim responses than http.Transport
// accepts is a failure, not an answer.
func TestClientTooMany1xx(t *testing.T) {
	rs := newRawShadow(t, nil, answerAll(func(*http.Request) string {
		return strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", max1xx+1) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	}))
	r := start(t, testConfig(mustURL(t, rs.url())))
	r.Request(get(t, "/"))
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if tg := r.Stats().Snapshot().Targets[0]; tg.FailedError != 1 || tg.ReplayedTotal() != 0 {
		t.Errorf("%+v: want failed error", tg)
	}
}

// TestClientResponseHeadTooLarge: a response head beyond
// MaxResponseHeaderBytes is not read whole: the request fails with reason
// response_too_large, and the client's memory does not grow with the head.
func TestClientResponseHeadTooLarge(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name string
		head func(w io.Writer) error
	}{
		{"one huge header line", func(w io.Writer) error {
			if _, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nX-Big: "); err != nil {
				return err
			}
			chunk := []byte(strings.Repeat("a", 64<<10))
			for range (32 << 20) / len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return err
				}
			}
			_, err := io.WriteString(w, "\r\nContent-Length: 0\r\n\r\n")
			return err
		}},
		{"many header lines", func(w io.Writer) error {
			if _, err := io.WriteString(w, "HTTP/1.1 200 OK\r\n"); err != nil {
				return err
			}
			line := []byte("X-Many: " + strings.Repeat("b", 100) + "\r\n")
			for range (limit * 4) / len(line) {
				if _, err := w.Write(line); err != nil {
					return err
				}
			}
			_, err := io.WriteString(w, "Content-Length: 0\r\n\r\n")
			return err
		}},
		{"a 1xx and the final head share the limit", func(w io.Writer) error {
			half := "X-Half: " + strings.Repeat("c", limit*3/4) + "\r\n"
			_, err := io.WriteString(w, "HTTP/1.1 103 Early Hints\r\n"+half+"\r\nHTTP/1.1 200 OK\r\n"+half+"Content-Length: 0\r\n\r\n")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRawShadow(t, nil, func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
				if readReq(t, br, true) == nil {
					return
				}
				tc.head(nc)
			})
			cfg := testConfig(mustURL(t, rs.url()))
			cfg.MaxResponseHeaderBytes = limit
			r := start(t, cfg)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r.Request(get(t, "/"))
			waitFor(t, "the request's end", func() bool {
				tg := r.Stats().Snapshot().Targets[0]
				return tg.ReplayedTotal()+tg.Failed() == 1
			})
			runtime.ReadMemStats(&after)
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			tg := r.Stats().Snapshot().Targets[0]
			if tg.FailedResponseTooLarge != 1 || tg.ReplayedTotal() != 0 || tg.Failed() != 1 {
				t.Errorf("%+v: want failed response_too_large", tg)
			}
			// The client reads at most the limit and a buffer beyond it;
			// generous slack for everything else the process allocates.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("allocated %d MiB while reading a response head limited to %d KiB", grew>>20, limit>>10)
			}
		})
	}
}

// TestClientUnsolicited: bytes that arrive on an idle kept connection (a
// body after a HEAD answer, a second response) are not taken as the next
// request's answer: the connection is discarded and counted.
func TestClientUnsolicited(t *testing.T) {
	tests := []struct {
		name   string
		method string
		first  string // the answer to the first request
		late   string // sent after it, while the connection is idle
	}{
		{"body after a HEAD answer", "HEAD",
			"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n",
			"HTTP/1.1 500 Bogus\r\nContent-Length: 0\r\n\r\n"},
		{"a second response", "GET",
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			"HTTP/1.1 500 Bogus\r\nContent-Length: 0\r\n\r\n"},
		{"body after a 204", "GET",
			"HTTP/1.1 204 No Content\r\n\r\n",
			"HTTP/1.1 500 Bogus\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range tests {
		for _, useTLS := range []bool{false, true} {
			name := tc.name
			if useTLS {
				name += " (TLS)"
			}
			t.Run(name, func(t *testing.T) {
				lateSent := make(chan struct{})
				s := func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
					first := true
					for {
						if readReq(t, br, true) == nil {
							return
						}
						if n == 0 && first {
							first = false
							io.WriteString(nc, tc.first)
							time.Sleep(20 * time.Millisecond) // a separate segment
							io.WriteString(nc, tc.late)
							close(lateSent)
							continue
						}
						io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					}
				}
				r, rs := startScripted(t, useTLS, s, nil)
				r.Request(mkEx(t, tc.method+" /1 HTTP/1.1\nHost: h", "", testClient))
				waitFor(t, "the first answer", func() bool { return r.Stats().Snapshot().Targets[0].ReplayedTotal() == 1 })
				<-lateSent
				time.Sleep(50 * time.Millisecond) // let the late bytes reach the client's socket
				r.Request(get(t, "/2"))
				if err := r.stop(t, 5*time.Second); err != nil {
					t.Fatal(err)
				}
				s0 := r.Stats().Snapshot()
				tg := s0.Targets[0]
				if tg.Replayed[Class2xx] != 2 || tg.ReplayedTotal() != 2 || tg.Failed() != 0 {
					t.Errorf("%+v: want both answered 2xx (the late 500 is nobody's answer)", tg)
				}
				if tg.DiscardedUnsolicited != 1 {
					t.Errorf("%d connections discarded for unsolicited bytes, want 1", tg.DiscardedUnsolicited)
				}
				if n := rs.conns.Load(); n != 2 {
					t.Errorf("%d connections, want 2", n)
				}
				if err := s0.Check(); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// startScripted starts a Replayer (POST replayed, one worker) against a
// scripted shadow, over TLS when useTLS.
func startScripted(t *testing.T, useTLS bool, s script, mod func(*Config)) (*started, *rawShadow) {
	t.Helper()
	if !useTLS {
		rs := newRawShadow(t, nil, s)
		cfg := testConfig(mustURL(t, rs.url()))
		cfg.MaxInflight = 1
		cfg.Methods = []string{"GET", "HEAD", "POST"}
		if mod != nil {
			mod(&cfg)
		}
		return start(t, cfg), rs
	}
	// httptest's certificate (example.com, 127.0.0.1) and its client roots.
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.StartTLS()
	serverTLS := ts.TLS.Clone()
	serverTLS.NextProtos = []string{"http/1.1"}
	roots := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ts.Close()
	rs := newRawShadow(t, serverTLS, s)
	_, port, _ := net.SplitHostPort(rs.ln.Addr().String())
	cfg := testConfig(mustURL(t, "https://example.com:"+port))
	cfg.MaxInflight = 1
	cfg.Methods = []string{"GET", "HEAD", "POST"}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r.targets[0].addr = rs.ln.Addr().String()
	r.targets[0].tlsConfig.RootCAs = roots
	st := &started{Replayer: r, runErr: make(chan error, 1)}
	go func() { st.runErr <- r.Run(context.Background()) }()
	t.Cleanup(func() { st.stop(t, 5*time.Second) })
	return st, rs
}

// TestClientEarlyResponse: a shadow that answers during the upload (413
// before reading the body), whether it then closes or keeps waiting, has
// its answer counted: replayed 4xx, not failed, and well before the
// request's timeout.
func TestClientEarlyResponse(t *testing.T) {
	const bodySize = 8 << 20
	tests := []struct {
		name  string
		close bool // close the connection after the answer, without reading
	}{
		{"answer and close", true},
		{"answer and wait", false},
	}
	for _, tc := range tests {
		for _, useTLS := range []bool{false, true} {
			name := tc.name
			if useTLS {
				name += " (TLS)"
			}
			t.Run(name, func(t *testing.T) {
				release := make(chan struct{})
				s := func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
					req := readReq(t, br, false)
					if req == nil {
						return
					}
					if req.Method != "POST" {
						io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						return
					}
					io.WriteString(nc, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!")
					if tc.close {
						return // closes with unread bytes: a reset
					}
					<-release
				}
				fv := &fakeVerdict{}
				r, _ := startScripted(t, useTLS, s, func(c *Config) { c.Timeout = 4 * time.Second; c.Verdict = fv })
				defer close(release)
				ex := mkEx(t, fmt.Sprintf("POST /upload HTTP/1.1\nHost: h\nContent-Length: %d", bodySize), strings.Repeat("x", bodySize), testClient)
				prodResp(ex, 413, 8)
				r.Request(ex)
				r.Response(ex)
				waitFor(t, "the answer", func() bool {
					tg := r.Stats().Snapshot().Targets[0]
					return tg.ReplayedTotal()+tg.Failed() == 1
				})
				tg := r.Stats().Snapshot().Targets[0]
				if tg.Replayed[Class4xx] != 1 || tg.Failed() != 0 {
					t.Errorf("%+v: want the 413 counted as replayed 4xx", tg)
				}
				waitFor(t, "the exchange handed to the comparison", func() bool { return len(fv.exchanges()) == 1 })
				if a := fv.exchanges()[0].Answers; len(a) != 1 || a[0].Response == nil || a[0].Response.Status != 413 || a[0].Response.BodyLen != 8 {
					t.Errorf("answers %+v: want the 413 with its 8-byte body", a)
				}
				// The worker goes on with the next request on a new connection.
				r.Request(get(t, "/after"))
				waitFor(t, "the next answer", func() bool { return r.Stats().Snapshot().Targets[0].Replayed[Class2xx] == 1 })
			})
		}
	}
}

// TestClientEarlyResponseSmallBody: the synchronous path (a body that fits
// the socket buffers) also reads an answer that came before a write error.
func TestClientEarlyResponseSmallBody(t *testing.T) {
	s := func(t *testing.T, n int, nc net.Conn, br *bufio.Reader) {
		if readReq(t, br, false) == nil {
			return
		}
		io.WriteString(nc, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		// Close with the body unread: the kernel answers the rest with a reset.
		nc.(*net.TCPConn).SetLinger(0)
	}
	r, _ := startScripted(t, false, s, nil)
	// The first request carries no body beyond the head's segment; the
	// write error comes when the client writes the next bytes after the
	// reset, so send a body written in several pieces.
	r.Request(mkEx(t, "POST /small HTTP/1.1\nHost: h\nContent-Length: 40000", strings.Repeat("y", 40000), testClient))
	waitFor(t, "the answer", func() bool {
		tg := r.Stats().Snapshot().Targets[0]
		return tg.ReplayedTotal()+tg.Failed() == 1
	})
	if tg := r.Stats().Snapshot().Targets[0]; tg.Replayed[Class4xx] != 1 {
		t.Errorf("%+v: want the 413 counted as replayed 4xx", tg)
	}
}

// checkAnswers checks that the comparison stage got n exchanges, each with
// one answer whose body was bodyLen bytes long.
func checkAnswers(t *testing.T, fv *fakeVerdict, n int, bodyLen int64) {
	t.Helper()
	xs := fv.exchanges()
	if len(xs) != n {
		t.Fatalf("%d exchanges handed to the comparison, want %d", len(xs), n)
	}
	for i, x := range xs {
		if len(x.Answers) != 1 || x.Answers[0].Response == nil {
			t.Errorf("exchange %d: answers %+v, want one response", i, x.Answers)
			continue
		}
		if got := x.Answers[0].Response.BodyLen; got != bodyLen {
			t.Errorf("exchange %d: answer body %d bytes, want %d", i, got, bodyLen)
		}
	}
}
