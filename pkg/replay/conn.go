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
	"time"
)

// A worker drives its own keep-alive connection to its target synchronously,
// one request at a time, instead of going through http.Client and
// http.Transport (whose per-request goroutine handoffs, timers and contexts
// cost more CPU than the rest of the replay). The bytes on the wire are
// still net/http's: the request is written by (*http.Request).Write and the
// response read by http.ReadResponse.

const (
	// connBufSize is the size of a connection's read and write buffers, as
	// http.Transport's.
	connBufSize = 4 << 10
	// idleTimeout closes a connection left unused this long, as
	// http.Transport's IdleConnTimeout did.
	idleTimeout = 90 * time.Second
	// max1xx bounds the interim responses accepted before the final one,
	// as http.Transport does.
	max1xx = 5
)

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is a worker's connection to its target: dialled when first needed,
// kept while the shadow's responses allow keep-alive, closed on any error
// and when the worker exits. Only its worker uses it.
type conn struct {
	t       *target
	timeout time.Duration
	nc      net.Conn // nil: not connected
	br      *bufio.Reader
	bw      *bufio.Writer
	stop    func() bool // unregisters the context.AfterFunc of nc
	used    bool        // nc has carried a complete exchange
	idle    time.Time   // when nc's last exchange ended
	buf     []byte      // for response bodies, drainBufSize
}

func newConn(timeout time.Duration, t *target) *conn {
	return &conn{
		t:       t,
		timeout: timeout,
		br:      bufio.NewReaderSize(nil, connBufSize),
		bw:      bufio.NewWriterSize(nil, connBufSize),
		buf:     make([]byte, drainBufSize),
	}
}

// close closes the connection, if any.
func (c *conn) close() {
	if c.nc == nil {
		return
	}
	c.stop()
	c.nc.Close()
	c.nc, c.stop, c.used = nil, nil, false
	c.br.Reset(nil)
	c.bw.Reset(nil)
}

// dial connects to the target (TLS for https) before deadline.
func (c *conn) dial(ctx context.Context, deadline time.Time) error {
	d := net.Dialer{Timeout: c.timeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.t.addr)
	if err != nil {
		return err
	}
	if c.t.tlsConfig != nil {
		nc.SetDeadline(deadline)
		tc := tls.Client(nc, c.t.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	// Once per connection, not per request: when the worker's context ends
	// (Run's context cancelled, or the drain deadline passed), whatever I/O
	// is in flight on nc returns at once.
	c.stop = context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	c.nc = nc
	c.br.Reset(nc)
	c.bw.Reset(nc)
	return nil
}

// roundTrip sends req and reads the final response head, all before
// start+timeout. The caller reads the body to its end and then calls done,
// or close on an error. On error the connection is already closed.
//
// Like http.Transport, a request that fails on a reused connection before
// any byte of response came back (the shadow closed the idle connection) is
// sent once more on a new one if it is replayable.
func (c *conn) roundTrip(ctx context.Context, req *http.Request, start time.Time) (*http.Response, error) {
	if err := validHeaders(req.Header); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	deadline := start.Add(c.timeout)
	for attempt := 0; ; attempt++ {
		if c.nc != nil && start.Sub(c.idle) > idleTimeout {
			c.close()
		}
		reused := c.nc != nil && c.used
		if c.nc == nil {
			if err := c.dial(ctx, deadline); err != nil {
				if req.Body != nil {
					req.Body.Close()
				}
				return nil, err
			}
		}
		c.nc.SetDeadline(deadline)
		if err := ctx.Err(); err != nil {
			// Cancelled before the deadline above was set: the AfterFunc's
			// past deadline may have been overwritten.
			if req.Body != nil {
				req.Body.Close()
			}
			c.close()
			return nil, err
		}
		// Write closes req.Body, whatever happens.
		err := req.Write(c.bw)
		if err == nil {
			err = c.bw.Flush()
		}
		if err == nil {
			_, err = c.br.Peek(1)
		}
		if err != nil {
			c.close()
			if reused && attempt == 0 && retryable(ctx, req, err) {
				if req.GetBody != nil {
					body, gerr := req.GetBody()
					if gerr != nil {
						return nil, err
					}
					req.Body = body
				}
				continue
			}
			return nil, err
		}
		for n1xx := 0; ; n1xx++ {
			resp, err := http.ReadResponse(c.br, req)
			if err != nil {
				c.close()
				return nil, err
			}
			if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
				return resp, nil
			}
			if n1xx == max1xx {
				c.close()
				return nil, errors.New("too many 1xx informational responses")
			}
		}
	}
}

// done ends an exchange whose response body was read to its end: the
// connection is kept for the next request if the response allows it.
func (c *conn) done(resp *http.Response) {
	if resp.Close || resp.StatusCode == http.StatusSwitchingProtocols || c.br.Buffered() > 0 {
		// Buffered bytes after a complete response were never asked for.
		c.close()
		return
	}
	c.used = true
	c.idle = time.Now()
}

// retryable says whether req, which failed with err on a reused connection
// before any byte of response was read, may be sent again on a new one.
func retryable(ctx context.Context, req *http.Request, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &op) {
		return false // not an I/O error: it would fail again
	}
	if req.Body != nil && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	_, ok := req.Header["Idempotency-Key"]
	if !ok {
		_, ok = req.Header["X-Idempotency-Key"]
	}
	return ok
}

// validHeaders checks header names and values as http.Transport does
// before sending: (*http.Request).Write does not.
func validHeaders(h http.Header) error {
	for k, vv := range h {
		if !isToken(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vv {
			for i := 0; i < len(v); i++ {
				if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
					// Not the value: it may be sensitive.
					return fmt.Errorf("invalid header field value for %q", k)
				}
			}
		}
	}
	return nil
}
