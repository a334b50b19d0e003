package replay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// HTTP/1.1 pipelining (Config.Pipeline N > 1, --pipeline): a worker that
// finds more jobs waiting in its target's queue takes up to N of them at
// once, never waiting for more (a lone request goes at once), writes their
// requests in one write, and reads the answers in order. Each answer ends
// its job exactly as a single request's does (stats, histograms, the
// comparison's hand-off).
//
// What goes in a batch:
//   - requests whose bodies are at most syncBodyMax, and at most
//     pipelineBytesMax bytes for the whole batch (mirrored heads and
//     bodies), so that the write cannot block on a target that answers
//     without reading: it fits the socket buffers, as a single request's
//     synchronous write does. A request that does not fit ends the batch
//     and starts the next one; one with a larger body goes alone, written
//     while its answer is read (conn.send);
//   - after the first, only requests that may be sent again (GET, HEAD,
//     OPTIONS, TRACE): a request left unanswered by a connection that
//     ended in the middle of a batch is sent again on its own, which no
//     other method allows. Any other request starts a batch, where it is
//     exactly as exposed as a single request.
//
// Detection and fallback: when the target ends the connection (EOF, reset,
// a response with Connection: close, or one delimited by the close) after
// k answers, 0 < k < batch, the requests after the k-th were never answered:
// each is sent again on its own on a new connection (retryable), and the
// target is sent one request at a time from then on (target.noPipe, logged
// once, counted in shadowtap_replay_pipeline_fallbacks_total). A
// connection that already answered a whole batch of several requests has
// shown that the target pipelines: its end in a later batch is the target
// closing a kept connection (a keep-alive request limit such as nginx's
// keepalive_requests), so the unanswered requests are sent again but
// pipelining stays on. A connection that ends before its first answer
// gives no evidence either way: the requests are handled as a single
// request would be (sent again when the connection was reused and the
// method allows).

// pipelineBytesMax bounds the bytes of a batch's requests (estimated from
// the mirrored heads and bodies; the rewritten heads differ by a few
// header lines).
const pipelineBytesMax = syncBodyMax

// PipelineWorkerBytes is what a pipelining worker holds beyond a single
// request's worker, at most: a batch's request bytes (the heads a few
// header lines longer than mirrored) and its larger read buffer.
const PipelineWorkerBytes = 2*pipelineBytesMax + pipeReadBufSize

// batchReq is one request of a batch being answered.
type batchReq struct {
	jb         job
	method     string
	idempotent bool
}

// pipelineWorker is a worker with Config.Pipeline > 1: it sends the jobs it
// finds waiting together (replayBatch), and a lone job, or any job once the
// target stopped pipelining, as replay does.
func (r *Replayer) pipelineWorker(ctx context.Context, t *target, c *conn) {
	jobs := make([]job, 0, r.cfg.Pipeline)
	var next job // taken from the queue but not fitting the last batch
	carry := false
	for {
		var first job
		if carry {
			first, carry = next, false
		} else {
			jb, ok := <-t.queue
			if !ok {
				return
			}
			t.take(jb)
			first = jb
		}
		jobs = append(jobs[:0], first)
		if size := wireSize(first); !t.noPipe.Load() && len(first.ex.Req.Body) <= syncBodyMax {
		more:
			for len(jobs) < r.cfg.Pipeline {
				select {
				case jb, ok := <-t.queue:
					if !ok {
						break more // the queue is closed: the next receive ends the loop
					}
					t.take(jb)
					n := wireSize(jb)
					if len(jb.ex.Req.Body) > syncBodyMax || !resendable(jb.ex.Req.Method) || size+n > pipelineBytesMax {
						next, carry = jb, true
						break more
					}
					size += n
					jobs = append(jobs, jb)
				default:
					break more // never wait for more
				}
			}
		}
		if len(jobs) == 1 {
			r.replay(ctx, t, c, first)
			t.end(first)
			continue
		}
		r.replayBatch(ctx, t, c, jobs)
		clear(jobs) // no reference to released exchanges until the next batch
	}
}

// wireSize estimates the bytes of jb's request on the wire.
func wireSize(jb job) int { return len(jb.ex.Req.Head) + len(jb.ex.Req.Body) }

// resendable reports whether a request with method m may be sent again
// when it was left unanswered, whatever its headers (retryable also allows
// other methods with an idempotency key).
func resendable[T string | []byte](m T) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// replayBatch sends jobs (two or more) in one write on the worker's
// connection and reads their answers in order. Every job ends in exactly
// one outcome, counted, and is ended (t.end) before replayBatch returns.
func (r *Replayer) replayBatch(ctx context.Context, t *target, c *conn, jobs []job) {
	for _, jb := range jobs {
		r.hold(ctx, jb) // in dispatch order: the last one is due last
	}
	if ctx.Err() != nil {
		for _, jb := range jobs {
			r.drained(t, jb)
			t.end(jb)
		}
		return
	}
	start := time.Now()
	c.wbuf, c.batch = c.wbuf[:0], c.batch[:0]
	for _, jb := range jobs {
		req, err := r.rw.build(c.head, t.url.Host, t.basePath, jb.ex, jb.nth)
		if err != nil {
			r.fail(ctx, t, jb, failInvalid, err)
			t.end(jb)
			continue
		}
		c.head = req.head[:0]
		c.wbuf = append(c.wbuf, req.head...)
		c.wbuf = append(c.wbuf, req.body...)
		c.batch = append(c.batch, batchReq{jb: jb, method: req.method, idempotent: req.idempotent})
	}
	pend := c.batch
	if len(pend) == 0 {
		return
	}
	defer clear(pend) // no reference to released exchanges until the next batch
	// The connection, as roundTrip prepares it for a single request.
	deadline := start.Add(c.timeout)
	reused, err := c.ready(ctx, start, deadline)
	if err != nil {
		// The dial failed for the first; the others try on their own, as
		// each would have without pipelining.
		r.fail(ctx, t, pend[0].jb, classifyErr(ctx, err), err)
		t.end(pend[0].jb)
		r.eachAlone(ctx, t, c, pend[1:])
		return
	}
	c.nc.SetDeadline(deadline)
	if err := ctx.Err(); err != nil {
		// Cancelled before the deadline above was set: the AfterFunc's
		// past deadline may have been overwritten.
		c.close()
		r.unanswered(ctx, t, c, pend, err)
		return
	}
	c.noReuse = false
	_, werr := c.nc.Write(c.wbuf)
	if werr != nil {
		// The target may have answered some before it stopped reading:
		// read what came; the connection is not reused.
		c.noReuse = true
	}
	if len(pend) > 1 {
		t.stats.batches.Add(1)
		t.stats.batched.Add(uint64(len(pend)))
	}
	// Each answer is timed from the end of the previous one, the first
	// from the batch's write start. A target answers pipelined requests in
	// order, and most (net/http's server among them) serve them one after
	// another: until the previous answer ended, this request waited behind
	// it rather than being served. Timing from the write start would charge
	// the target, in the latency histograms and in the comparison's latency
	// against production, for the queue the batch itself made. (A target
	// that works on several at once may look faster than it is.) The
	// timeout runs from the same instant.
	from := start
	for i := range pend {
		p := &pend[i]
		if i > 0 {
			c.nc.SetReadDeadline(from.Add(c.timeout))
			if err := ctx.Err(); err != nil {
				c.close()
				r.unanswered(ctx, t, c, pend[i:], err)
				return
			}
		}
		c.lr.n = c.maxHead // the final head and the 1xx before it
		if _, err := c.br.Peek(1); err != nil {
			// No byte of this answer: the connection ended, or the time
			// ran out, before the target answered it.
			if werr != nil {
				err = werr
			}
			proven := c.piped
			c.close()
			if i > 0 && !proven && ctx.Err() == nil && !isTimeout(err) {
				r.fallback(t, i, len(pend))
			}
			// This one is handled as a single request on a reused
			// connection would be (after an answer on it, it is one).
			req := request{method: p.method, idempotent: p.idempotent}
			if (reused || i > 0) && retryable(ctx, &req, err) {
				r.replay(ctx, t, c, p.jb)
			} else {
				r.fail(ctx, t, p.jb, classifyErr(ctx, err), err)
			}
			t.end(p.jb)
			r.unanswered(ctx, t, c, pend[i+1:], err)
			return
		}
		resp, err := c.readHead(p.method)
		if err != nil {
			// readHead closed the connection.
			r.fail(ctx, t, p.jb, classifyErr(ctx, err), err)
			t.end(p.jb)
			r.unanswered(ctx, t, c, pend[i+1:], err)
			return
		}
		head := time.Since(from)
		b, err := r.readBody(resp.Body, c.buf, p.jb.j, resp.ContentLength)
		if err != nil {
			// Not resp.Body.Close: it would read the rest from the connection.
			c.close()
			r.fail(ctx, t, p.jb, classifyErr(ctx, err), err)
			t.end(p.jb)
			r.unanswered(ctx, t, c, pend[i+1:], err)
			return
		}
		resp.Body.Close() // at EOF: nothing left to read
		end := time.Now()
		last := i == len(pend)-1
		// The connection ends after this answer: Connection: close (or
		// HTTP/1.0, or a body delimited by the close), or a switch of
		// protocols.
		ends := resp.Close || resp.StatusCode == http.StatusSwitchingProtocols
		proven := c.piped
		if last {
			if !ends && !c.noReuse && len(pend) > 1 {
				c.piped = true // unless done closes it
			}
			c.done(resp)
		} else if ends {
			c.close()
		}
		r.answered(t, p.jb, resp, b, head, end.Sub(from))
		t.end(p.jb)
		if ends && !last {
			if !proven {
				r.fallback(t, i+1, len(pend))
			}
			r.unanswered(ctx, t, c, pend[i+1:], io.EOF)
			return
		}
		from = end
	}
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// unanswered ends the requests of a batch that were sent but never
// answered, because the connection ended (or broke, with cause) before
// their turn: each is sent again on its own when its method allows
// (retryable), on a new connection since c is closed, else counted failed
// for cause.
func (r *Replayer) unanswered(ctx context.Context, t *target, c *conn, pend []batchReq, cause error) {
	for _, p := range pend {
		req := request{method: p.method, idempotent: p.idempotent}
		// No byte of their answers came: as retryable sees a connection
		// that ended before the answer, whatever broke it.
		if ctx.Err() == nil && retryable(ctx, &req, io.ErrUnexpectedEOF) {
			r.replay(ctx, t, c, p.jb)
		} else {
			r.fail(ctx, t, p.jb, classifyErr(ctx, cause), cause)
		}
		t.end(p.jb)
	}
}

// eachAlone sends each of pend as a single request, in order.
func (r *Replayer) eachAlone(ctx context.Context, t *target, c *conn, pend []batchReq) {
	for _, p := range pend {
		r.replay(ctx, t, c, p.jb)
		t.end(p.jb)
	}
}

// fallback stops pipelining to t: it ended a connection after answered of
// sent pipelined requests. Counted and logged once per target.
func (r *Replayer) fallback(t *target, answered, sent int) {
	if !t.noPipe.CompareAndSwap(false, true) {
		return
	}
	t.stats.pipeFallbacks.Add(1)
	r.log.Warn("replay target ended a connection in the middle of pipelined requests: sending it one request at a time from now on; the unanswered requests are sent again one at a time when their method allows, else counted failed",
		"target", t.name, "answered", answered, "sent", sent)
}
