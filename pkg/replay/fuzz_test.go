package replay

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeConn is a net.Conn whose reads return in, then EOF; writes succeed
// and are discarded; deadlines are ignored.
type fakeConn struct {
	in   *bytes.Reader
	read int64 // bytes returned by Read
}

func (f *fakeConn) Read(p []byte) (int, error) {
	n, err := f.in.Read(p)
	f.read += int64(n)
	return n, err
}
func (f *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *fakeConn) Close() error                     { return nil }
func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReadResponse feeds arbitrary bytes to the replay client as the
// shadow's answers to a few requests on one kept connection: it never
// panics or hangs, reads no more than the head limit before a response
// head is complete, and ends every exchange with an answer or an error.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"\x01HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody until the end",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nHTTP/1.1 500 x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxHead = 4096
		method := "GET"
		if len(in) > 0 && in[0] == 1 {
			method, in = "HEAD", in[1:]
		}
		cfg := DefaultConfig()
		cfg.Timeout = time.Second
		cfg.MaxResponseHeaderBytes = maxHead
		c := newConn(&cfg, &target{name: "fuzz", addr: "invalid:0", stats: &targetStats{}})
		fc := &fakeConn{in: bytes.NewReader(in)}
		c.attach(fc)
		c.stop = func() bool { return true }
		ctx := context.Background()
		// A retry after the input's end dials: refused at once on loopback.
		c.t.addr = "127.0.0.1:1"
		for i := 0; i < 3 && c.nc != nil; i++ {
			req := &request{method: method, head: []byte(method + " /x HTTP/1.1\r\nHost: shadow\r\n\r\n")}
			before := fc.read
			resp, err := c.roundTrip(ctx, req, time.Now())
			if err != nil {
				if c.nc != nil {
					t.Fatalf("roundTrip failed (%v) and left the connection open", err)
				}
				return
			}
			if head := fc.read - before; head > maxHead+int64(c.br.Size()) {
				t.Fatalf("read %d bytes for a response head limited to %d", head, maxHead)
			}
			// Any final status is an answer (000 and 999 included, counted
			// "other", as net/http returns them); never an interim one.
			if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("interim status %d returned as the answer", resp.StatusCode)
			}
			if _, err := drainBody(resp.Body, c.buf); err != nil {
				c.close()
				return
			}
			resp.Body.Close()
			c.done(resp)
			if fc.read > int64(len(in)) {
				t.Fatalf("read %d bytes of %d", fc.read, len(in))
			}
		}
		c.close()
		if _, err := io.Copy(io.Discard, fc.in); err != nil {
			t.Fatal(err)
		}
	})
}

// drainBody reads body to its end through buf, as the worker does.
func drainBody(body io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := body.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// FuzzPipelinedResponses feeds arbitrary bytes to the replay client as the
// shadow's answers to a batch of pipelined requests (pipeline.go): it never
// panics or hangs, and every request of the batch ends in exactly one
// outcome (answered, or failed — those sent again go to a port that
// refuses, so they fail "connect"), none left in flight.
func FuzzPipelinedResponses(f *testing.F) {
	for _, s := range []string{
		"\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"\x02HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"\x00HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"\x01HTTP/1.0 200 OK\r\n\r\nbody until the end",
		"\x03HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"\x00HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		// The first byte: bit i says whether request i of 4 is a HEAD.
		heads, in := in[0], in[1:]
		cfg := DefaultConfig()
		cfg.Targets = []*url.URL{{Scheme: "http", Host: "127.0.0.1:1"}} // a retry is refused at once
		cfg.Timeout = time.Second
		cfg.MaxResponseHeaderBytes = 4096
		cfg.Pipeline = 4
		r, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		tg := r.targets[0]
		var jobs []job
		for i := range 4 {
			m := "GET"
			if heads&(1<<i) != 0 {
				m = "HEAD"
			}
			ex := mkEx(t, m+" /"+strconv.Itoa(i)+" HTTP/1.1\nHost: shadow", "", testClient)
			ex.Retain()
			jb := job{ex: ex, nth: 1}
			tg.take(jb)
			jobs = append(jobs, jb)
		}
		c := newConn(&r.cfg, tg)
		c.attach(&fakeConn{in: bytes.NewReader(in)})
		c.stop = func() bool { return true }
		r.replayBatch(context.Background(), tg, c, jobs)
		c.close()
		s := r.Stats().Snapshot().Targets[0]
		if got := s.ReplayedTotal() + s.Failed(); got != 4 || s.InFlight != 0 {
			t.Fatalf("outcomes %d (replayed %d, failed %d), in flight %d; want 4 and 0", got, s.ReplayedTotal(), s.Failed(), s.InFlight)
		}
	})
}
