package replay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"time"
)

// A worker drives its own keep-alive connection to its target synchronously,
// one request (or, with Config.Pipeline, one batch: pipeline.go) at a
// time, instead of going through http.Client and
// http.Transport (whose per-request goroutine handoffs, timers and contexts
// cost more CPU than the rest of the replay). The request goes on the wire
// as rewrite.go built it; the response is read by http.ReadResponse.
//
// What http.Transport guards against, the worker guards against too:
//   - a response head (with any 1xx before it) larger than
//     Config.MaxResponseHeaderBytes is not read whole: the request fails
//     with errResponseTooLarge (counted failed "response_too_large");
//   - bytes that arrive on a kept connection while no request is
//     outstanding (a body after a HEAD answer, a second response) are never
//     taken as the next request's answer: before each reuse the connection
//     is checked for readable bytes, without blocking, and discarded
//     (counted in conn_discarded{reason="unsolicited"}, or "closed" when
//     the shadow closed it);
//   - a shadow that answers during the upload is heard: a body larger than
//     syncBodyMax is written by a goroutine while the worker reads the
//     answer, and after a write error the worker still reads an answer that
//     came. Such a connection is not reused.

const (
	// connBufSize is the size of a connection's read and write buffers, as
	// http.Transport's.
	connBufSize = 4 << 10
	// pipeReadBufSize is the read buffer's size with pipelining: one read
	// takes in several answers of a batch (a batch of 8 small answers is
	// about 5 KiB). Like connBufSize, it is also the slack of the head limit:
	// bytes read ahead with the previous answer are not counted in it.
	pipeReadBufSize = 16 << 10
	// idleTimeout closes a connection left unused this long, as
	// http.Transport's IdleConnTimeout did.
	idleTimeout = 90 * time.Second
	// max1xx bounds the interim responses accepted before the final one,
	// as http.Transport does.
	max1xx = 5
	// syncBodyMax is the largest request body written before reading the
	// answer: it fits the socket buffers, so the write cannot block on a
	// shadow that answers without reading it. Larger bodies are written by
	// a goroutine while the worker reads the answer.
	syncBodyMax = 64 << 10
	// unsolicitedWait bounds the read that tells, once the socket showed
	// bytes on an idle connection, whether they are data or its end.
	unsolicitedWait = 10 * time.Millisecond
)

// errResponseTooLarge is the error of a response head beyond the limit.
var errResponseTooLarge = errors.New("response head larger than --max-response-header-bytes")

// errMalformedResponse replaces the parse errors of a response head: theirs
// quote the offending line, which may carry a Set-Cookie value or whatever
// the shadow echoed of the request, and errors are logged.
var errMalformedResponse = errors.New("malformed response head")

// headError returns err unless it is a parse error that quotes the head.
func headError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errResponseTooLarge),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return err
	}
	return errMalformedResponse
}

// connFailReason says which failure reason an error of roundTrip has when
// it is not one of classifyErr's general ones.
func connFailReason(err error) (failReason, bool) {
	if errors.Is(err, errResponseTooLarge) {
		return failTooLarge, true
	}
	return 0, false
}

// limitReader sits between a connection and its bufio.Reader: it lets n
// more bytes be read, then fails with errResponseTooLarge, as
// http.Transport's persistConn.readLimit does.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errResponseTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is a worker's connection to its target: dialled when first needed,
// kept while the shadow's responses allow keep-alive, closed on any error
// and when the worker exits. Only its worker uses it.
type conn struct {
	t       *target
	timeout time.Duration
	maxHead int64    // MaxResponseHeaderBytes
	nc      net.Conn // nil: not connected
	lr      limitReader
	peek    sockPeek      // nc's socket, for checkIdle
	br      *bufio.Reader // reads lr
	bw      *bufio.Writer
	stop    func() bool // unregisters the context.AfterFunc of nc
	used    bool        // nc has carried a complete exchange
	idle    time.Time   // when nc's last exchange ended
	buf     []byte      // for response bodies, drainBufSize
	// writing receives the result of the request being written in the
	// background (bodies above syncBodyMax); nil when none is.
	writing chan error
	// noReuse: the exchange in progress leaves nc unusable (the answer came
	// before the whole request was written).
	noReuse bool
	head    []byte       // the request head being sent: reused
	probe   http.Request // what http.ReadResponse is told of the request
	// Pipelining (pipeline.go): the batch being written, reused, and the
	// batch's requests in order.
	wbuf  []byte
	batch []batchReq
	// piped: a batch of several requests was answered whole on nc, so
	// the target pipelines and a later close in a batch is the end of
	// the connection (keep-alive limit), not a refusal to pipeline.
	piped bool
}

func newConn(cfg *Config, t *target) *conn {
	c := &conn{
		t:       t,
		timeout: cfg.Timeout,
		maxHead: cfg.MaxResponseHeaderBytes,
		bw:      bufio.NewWriterSize(nil, connBufSize),
		buf:     make([]byte, drainBufSize),
	}
	if c.maxHead <= 0 {
		c.maxHead = DefaultMaxResponseHeaderBytes
	}
	c.lr.n = math.MaxInt64
	size := connBufSize
	if cfg.Pipeline > 1 {
		size = pipeReadBufSize
	}
	c.br = bufio.NewReaderSize(&c.lr, size)
	return c
}

// close closes the connection, if any, and waits for a background write.
func (c *conn) close() {
	if c.nc == nil {
		return
	}
	c.stop()
	c.nc.Close()
	if c.writing != nil {
		<-c.writing // the write fails at once on the closed connection
		c.writing = nil
	}
	c.nc, c.stop, c.used, c.noReuse, c.piped = nil, nil, false, false, false
	c.lr.r, c.lr.n = nil, math.MaxInt64
	c.br.Reset(&c.lr)
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
	c.attach(nc)
	return nil
}

// attach makes nc the connection's transport.
func (c *conn) attach(nc net.Conn) {
	c.nc, c.idle = nc, time.Now()
	c.lr.r, c.lr.n = nc, math.MaxInt64
	c.br.Reset(&c.lr)
	c.bw.Reset(nc)
	raw := nc
	if tc, ok := nc.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	c.peek.reset(raw)
}

// discard closes a kept connection before its reuse, counted by reason.
func (c *conn) discard(reason discardReason) {
	c.t.stats.discard[reason].Add(1)
	c.close()
}

// checkIdle looks, without blocking, for bytes that arrived on the kept
// connection since its last exchange ended, and discards the connection if
// any did (or if the shadow closed it). It sets nc's deadline to deadline.
func (c *conn) checkIdle(deadline time.Time) {
	if c.br.Buffered() > 0 {
		c.discard(discardUnsolicited)
		return
	}
	c.nc.SetDeadline(deadline)
	if _, ok := c.nc.(*tls.Conn); ok {
		// Plaintext tls.Conn decrypted but bufio did not take: with a
		// past deadline a read returns it without touching the network.
		c.nc.SetReadDeadline(aLongTimeAgo)
		_, err := c.br.Peek(1)
		c.nc.SetReadDeadline(deadline)
		var ne net.Error
		switch {
		case err == nil:
			c.discard(discardUnsolicited)
			return
		case !errors.As(err, &ne) || !ne.Timeout():
			c.discard(discardClosed)
			return
		}
	}
	if !c.peek.readable() {
		return
	}
	// Something came: data, or the end of the connection (FIN, reset,
	// TLS close_notify). It is already in the socket: a short read tells.
	c.nc.SetReadDeadline(time.Now().Add(unsolicitedWait))
	_, err := c.br.Peek(1)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		c.discard(discardUnsolicited)
		return
	}
	c.discard(discardClosed)
}

// send writes req: synchronously when its body is small, else the head
// and then the body in the background (c.writing gets the result) so that
// the answer can be read during the upload. It returns the synchronous
// write's error. The background write has ended when close returns.
func (c *conn) send(req *request) error {
	if len(req.body) <= syncBodyMax {
		c.bw.Write(req.head)
		c.bw.Write(req.body)
		return c.bw.Flush()
	}
	ch := make(chan error, 1)
	c.writing = ch
	go func() {
		c.bw.Write(req.head)
		c.bw.Write(req.body)
		ch <- c.bw.Flush()
	}()
	return nil
}

// writeDone waits for a background write, if any, and returns its error.
func (c *conn) writeDone() error {
	if c.writing == nil {
		return nil
	}
	err := <-c.writing
	c.writing = nil
	return err
}

// ready makes the connection ready for a request started at start: it
// closes one left idle beyond idleTimeout, discards one that received bytes
// nobody asked for (checkIdle), and dials when none is left. reused: the
// connection has carried an exchange before.
func (c *conn) ready(ctx context.Context, start, deadline time.Time) (reused bool, err error) {
	if c.nc != nil && start.Sub(c.idle) > idleTimeout {
		c.close()
	}
	if c.nc != nil && c.used {
		c.checkIdle(deadline)
	}
	reused = c.nc != nil && c.used
	if c.nc == nil {
		err = c.dial(ctx, deadline)
	}
	return reused, err
}

// roundTrip sends req and reads the final response head, all before
// start+timeout. The caller reads the body to its end and then calls done,
// or close on an error. On error the connection is already closed.
//
// Like http.Transport, a request that fails on a reused connection before
// any byte of response came back (the shadow closed the idle connection) is
// sent once more on a new one if it is replayable.
func (c *conn) roundTrip(ctx context.Context, req *request, start time.Time) (*http.Response, error) {
	deadline := start.Add(c.timeout)
	for attempt := 0; ; attempt++ {
		reused, err := c.ready(ctx, start, deadline)
		if err != nil {
			return nil, err
		}
		c.nc.SetDeadline(deadline)
		if err := ctx.Err(); err != nil {
			// Cancelled before the deadline above was set: the AfterFunc's
			// past deadline may have been overwritten.
			c.close()
			return nil, err
		}
		c.noReuse = false
		c.lr.n = c.maxHead // the final head and the 1xx before it
		werr := c.send(req)
		_, err = c.br.Peek(1)
		if werr != nil {
			// The shadow may have answered before it stopped reading (a
			// 413 during the upload): report that answer if it came.
			c.noReuse = true
			if err != nil {
				err = werr
			}
		}
		if err != nil {
			// No answer. close also stops a background write and waits
			// for it.
			c.close()
			if reused && attempt == 0 && retryable(ctx, req, err) {
				continue
			}
			return nil, err
		}
		return c.readHead(req.method)
	}
}

// readHead reads the final response head to a request of method, skipping
// up to max1xx interim responses, within the head limit (c.lr.n is set to
// it by the caller). On error the connection is closed.
func (c *conn) readHead(method string) (*http.Response, error) {
	c.probe.Method = method // ReadResponse reads no body for HEAD
	for n1xx := 0; ; n1xx++ {
		resp, err := http.ReadResponse(c.br, &c.probe)
		if err != nil {
			if c.lr.n <= 0 {
				err = fmt.Errorf("%w (%d bytes)", errResponseTooLarge, c.maxHead)
			}
			c.close()
			return nil, headError(err)
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			c.lr.n = math.MaxInt64 // the body is bounded by the timeout only
			return resp, nil
		}
		if n1xx == max1xx {
			c.close()
			return nil, errors.New("too many 1xx informational responses")
		}
	}
}

// done ends an exchange whose response body was read to its end: the
// connection is kept for the next request if the response allows it.
func (c *conn) done(resp *http.Response) {
	if c.writing != nil {
		select {
		case err := <-c.writing:
			c.writing = nil
			if err != nil {
				c.noReuse = true
			}
		default:
			// The answer is whole but the request is not: the shadow
			// answered before it read everything. close stops the write.
			c.noReuse = true
		}
	}
	if c.br.Buffered() > 0 {
		// Bytes after a complete response were never asked for.
		c.discard(discardUnsolicited)
		return
	}
	if resp.Close || resp.StatusCode == http.StatusSwitchingProtocols || c.noReuse {
		c.close()
		return
	}
	c.used = true
	c.idle = time.Now()
}

// retryable says whether req, which failed with err on a reused connection
// before any byte of response was read, may be sent again on a new one.
func retryable(ctx context.Context, req *request, err error) bool {
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
	return resendable(req.method) || req.idempotent
}
