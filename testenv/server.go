package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pattern returns n bytes of deterministic text: 10-byte lines "%09d\n" that
// each carry their own offset, so a shifted, missing or repeated piece is
// easy to spot in a diff. /size/N and /chunked/N answer Pattern(N).
func Pattern(n int) []byte {
	b := make([]byte, 0, n+10)
	for off := 0; off < n; off += 10 {
		b = fmt.Appendf(b, "%09d\n", off)
	}
	return b[:n]
}

// ServerExchange is one request a lab Server received and the response its
// handler produced.
type ServerExchange struct {
	// Conn indexes Server.Conns: the connection that carried the exchange.
	Conn   int
	Remote string // client address as the server saw it

	Method, Target, Proto, Host string
	Header                      http.Header // request headers without Host
	Body                        []byte      // request body, de-chunked

	Status int
	// ResponseHeader holds the headers the handler set. net/http adds Date,
	// Content-Length or Transfer-Encoding on the wire; the exact response
	// bytes are in Conns()[Conn].Sent.
	ResponseHeader http.Header
	ResponseBody   []byte // body as the handler wrote it (before chunking)

	Start, End time.Time
}

// ConnRecord is the exact byte stream of one connection, per direction.
type ConnRecord struct {
	Local, Remote string
	Sent          []byte // what this side wrote
	Received      []byte // what this side read
}

// Server is an HTTP/1.1 server in a lab namespace that records every request
// it receives, every response it sends and the raw bytes of every
// connection, so tests can compare with what shadowtap rebuilt.
//
// Handlers:
//
//	/size/N       200, Content-Length N, body Pattern(N)
//	/chunked/N    200, Transfer-Encoding: chunked, body Pattern(N) in chunks
//	              of ?chunk=K bytes (default 4096)
//	/echo         200, the request body, with the request's Content-Type
//	/status/N     status N, a short body unless N forbids one
//	/slow/MS      waits MS milliseconds, then 200
//	anything else 200, "METHOD TARGET body=LEN\n"
//
// Every response carries X-Lab-Server: <namespace>, so a test can tell the
// production server from a shadow.
type Server struct {
	// Addr is the address the server listens on.
	Addr net.Addr
	// NS is the namespace it runs in.
	NS string

	srv  *http.Server
	done chan struct{}
	log  *slog.Logger

	mu        sync.Mutex
	exchanges []ServerExchange
	conns     []*RecordingConn
	serveErr  error
}

type connIndexKey struct{}

// StartHTTPServer starts a lab Server in namespace ns of lab, listening on
// addr (e.g. ":8080", or "[fd81::2]:8080"). It stops when ctx ends or on Close.
func StartHTTPServer(ctx context.Context, lab *Lab, ns, addr string) (*Server, error) {
	ln, err := lab.Listen(ns, "tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr(), NS: ns, done: make(chan struct{}), log: lab.log}
	s.srv = &http.Server{
		Handler:           s.record(s.mux()),
		ReadHeaderTimeout: 30 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*RecordingConn); ok {
				s.mu.Lock()
				defer s.mu.Unlock()
				for i, x := range s.conns {
					if x == rc {
						return context.WithValue(ctx, connIndexKey{}, i)
					}
				}
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(lab.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		err := s.srv.Serve(&recordingListener{Listener: ln, s: s})
		if !errors.Is(err, http.ErrServerClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// Close stops the server: it lets handlers in progress finish (up to 5 s),
// closes every connection and returns once all are closed, so Exchanges and
// Conns are complete afterwards. It is idempotent.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("stopping lab server %s in %s: %w", s.Addr, s.NS, err)
	}
	if s.serveErr != nil {
		return fmt.Errorf("lab server %s in %s: %w", s.Addr, s.NS, s.serveErr)
	}
	return nil
}

// URL returns http://<Addr><path>.
func (s *Server) URL(path string) string {
	return "http://" + s.Addr.String() + path
}

// Port returns the port the server listens on.
func (s *Server) Port() int {
	if a, ok := s.Addr.(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Exchanges returns a copy of the exchanges recorded so far, in the order
// their handlers finished (per connection, the order of the requests).
func (s *Server) Exchanges() []ServerExchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ServerExchange(nil), s.exchanges...)
}

// Conns returns the raw bytes of every connection accepted so far, in
// accept order; ServerExchange.Conn indexes it.
func (s *Server) Conns() []ConnRecord {
	s.mu.Lock()
	conns := append([]*RecordingConn(nil), s.conns...)
	s.mu.Unlock()
	out := make([]ConnRecord, len(conns))
	for i, c := range conns {
		out[i] = c.Record()
	}
	return out
}

// WaitExchanges waits until at least n exchanges are recorded.
func (s *Server) WaitExchanges(ctx context.Context, n int) ([]ServerExchange, error) {
	for {
		ex := s.Exchanges()
		if len(ex) >= n {
			return ex, nil
		}
		select {
		case <-ctx.Done():
			return ex, fmt.Errorf("lab server %s in %s: %d of %d exchanges: %w", s.Addr, s.NS, len(ex), n, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

type recordingListener struct {
	net.Listener
	s *Server
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := NewRecordingConn(c)
	l.s.mu.Lock()
	l.s.conns = append(l.s.conns, rc)
	l.s.mu.Unlock()
	return rc, nil
}

// record wraps h so that every exchange is appended to s.exchanges.
func (s *Server) record(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		w.Header().Set("X-Lab-Server", s.NS)
		rw := &recordingWriter{w: w}
		h.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.WriteHeader(http.StatusOK)
		}
		conn := -1
		if i, ok := r.Context().Value(connIndexKey{}).(int); ok {
			conn = i
		}
		ex := ServerExchange{
			Conn: conn, Remote: r.RemoteAddr,
			Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Host: r.Host,
			Header: r.Header.Clone(), Body: body,
			Status: rw.status, ResponseHeader: rw.header, ResponseBody: rw.body.Bytes(),
			Start: start, End: time.Now(),
		}
		s.log.Debug("lab server exchange", "ns", s.NS, "method", ex.Method, "target", ex.Target,
			"host", ex.Host, "request_body", len(body), "status", ex.Status, "response_body", len(ex.ResponseBody))
		s.mu.Lock()
		s.exchanges = append(s.exchanges, ex)
		s.mu.Unlock()
	})
}

type recordingWriter struct {
	w      http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (rw *recordingWriter) Header() http.Header { return rw.w.Header() }

func (rw *recordingWriter) WriteHeader(code int) {
	if rw.status != 0 {
		return
	}
	rw.status = code
	rw.header = rw.w.Header().Clone()
	rw.w.WriteHeader(code)
}

func (rw *recordingWriter) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	n, err := rw.w.Write(p)
	rw.body.Write(p[:n])
	return n, err
}

func (rw *recordingWriter) Flush() {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (rw *recordingWriter) Unwrap() http.ResponseWriter { return rw.w }

// pathInt parses the integer after prefix in the request path.
func pathInt(r *http.Request, prefix string) (int, error) {
	v, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, prefix))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s wants a non-negative integer after %s", r.URL.Path, prefix)
	}
	return v, nil
}

func (s *Server) mux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/size/", func(w http.ResponseWriter, r *http.Request) {
		n, err := pathInt(r, "/size/")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(Pattern(n))
	})
	mux.HandleFunc("/chunked/", func(w http.ResponseWriter, r *http.Request) {
		n, err := pathInt(r, "/chunked/")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		chunk := 4096
		if c, err := strconv.Atoi(r.URL.Query().Get("chunk")); err == nil && c > 0 {
			chunk = c
		}
		w.Header().Set("Content-Type", "text/plain")
		f, _ := w.(http.Flusher)
		body := Pattern(n)
		for len(body) > 0 {
			k := min(chunk, len(body))
			_, _ = w.Write(body[:k])
			body = body[k:]
			if f != nil {
				f.Flush() // one chunk per Write
			}
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, err := pathInt(r, "/status/")
		if err != nil || code < 200 || code > 999 {
			http.Error(w, "/status/N wants N in 200..999", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
		if code != http.StatusNoContent && code != http.StatusNotModified {
			_, _ = fmt.Fprintf(w, "status %d\n", code)
		}
	})
	mux.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		ms, err := pathInt(r, "/slow/")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		_, _ = fmt.Fprintf(w, "slept %d ms\n", ms)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = fmt.Fprintf(w, "%s %s body=%d\n", r.Method, r.RequestURI, len(body))
	})
	return mux
}
