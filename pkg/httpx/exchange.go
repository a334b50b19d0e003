package httpx

import (
	"bytes"
	"sync/atomic"

	"github.com/shadowtap/shadowtap/pkg/flow"
)

// Field is one header field; Name and Value are views into the message's Head.
type Field struct {
	Name, Value []byte
}

// Request is one complete HTTP/1.x request rebuilt from the mirror.
type Request struct {
	Method, Target, Proto []byte  // views into Head
	Head                  []byte  // request line and header lines as received, through the blank line
	Fields                []Field // header fields in order
	Body                  []byte  // body bytes, de-chunked; nil when there is none
	Chunked               bool    // the body was sent chunked
	TooLarge              bool    // beyond --max-header-bytes or --max-body-bytes: Body is nil, not to be replayed
	Start, End            uint64  // capture time (ns) of the first and last byte

	// BodyLen is the body bytes received (de-chunked), kept or not.
	BodyLen int64
	// BodySkipped: the sink's HeadDecider did not want the body, so it
	// was measured (BodyLen), not kept; Body is nil.
	BodySkipped bool
	// OverBudget: keeping the body would have gone beyond the process's
	// Config.BodyBudget, so it was dropped; Body is nil, not to be replayed.
	OverBudget bool
}

// Response is production's answer to a Request.
type Response struct {
	Proto, Reason []byte // views into Head
	Status        int
	Head          []byte
	Fields        []Field
	BodyLen       int64  // body bytes (de-chunked)
	Body          []byte // the first Config.ResponseBodyKeep body bytes (de-chunked); nil when not kept or TooLarge
	// BodyComplete says Body holds the whole body (a response without a
	// body is complete). When it does not, BodyHash is FNV-1a 64 of the
	// whole de-chunked body (hashed as it streams by, from the first byte
	// once the body goes beyond Config.ResponseBodyKeep: a body that fits
	// is not hashed, the comparison hashes Body itself if it needs to).
	// Both only when Config.ResponseBodyKeep > 0 and the response is not
	// TooLarge: otherwise false and 0.
	BodyComplete bool
	BodyHash     uint64
	TooLarge     bool
	Start, End   uint64
}

// FNV-1a 64 parameters, for Response.BodyHash.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// HashInit is the FNV-1a 64 hash of no bytes: BodyHash of an empty body.
const HashInit uint64 = fnvOffset64

// HashAdd continues an FNV-1a 64 hash (start from HashInit) over b: the hash
// Response.BodyHash holds, for a comparison stage hashing the other side.
func HashAdd(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// Get returns the first value of the named header (case-insensitive), or nil.
func Get(fields []Field, name string) []byte {
	for i := range fields {
		if len(fields[i].Name) == len(name) && bytes.EqualFold(fields[i].Name, []byte(name)) {
			return fields[i].Value
		}
	}
	return nil
}

// NoResponse says why an exchange ended without production's response.
type NoResponse uint8

const (
	RespOK       NoResponse = iota // the response arrived: Exchange.Resp is set
	RespGap                        // a gap in the response stream swallowed it
	RespClosed                     // the connection ended (FIN, RST, idle, evicted) first
	RespTooLarge                   // the response went beyond the limits (Resp set, TooLarge)
	RespGaveUp                     // parsing of the response direction stopped (not HTTP, upgrade)
	RespOverflow                   // too many requests were waiting for a response on the connection
)

// String returns a short name for the reason.
func (r NoResponse) String() string {
	switch r {
	case RespOK:
		return "ok"
	case RespGap:
		return "gap"
	case RespClosed:
		return "closed"
	case RespTooLarge:
		return "too_large"
	case RespGaveUp:
		return "gave_up"
	case RespOverflow:
		return "overflow"
	}
	return "unknown"
}

// Exchange is a request and, once it completes, production's response, on
// one connection. Exchanges come from a pool: a Sink that keeps one beyond
// the call must Retain it and Release it when done.
type Exchange struct {
	Conn   flow.Key
	Seq    uint64 // index of the request on its connection, from 0
	Req    Request
	Resp   *Response
	Reason NoResponse
	// Mark is the sink's own: a HeadDecider may record its decision here
	// in WantBody for Request to reuse. 0 until set; cleared with the
	// exchange.
	Mark uint8

	resp Response     // storage that Resp points to once the response is paired
	qb   bufs         // request buffers (Req.Head, Req.Fields, Req.Body are views of them)
	sb   bufs         // response buffers, travel with resp
	refs atomic.Int32 // 1 while pooled
	free bool         // in the pool
	pool *pool

	budget *Budget // the budget held is taken from
	held   int64   // bytes of the request body taken from budget, given back by reset
}

// holdBody takes n bytes of b for the request body, or reports false.
func (e *Exchange) holdBody(b *Budget, n int64) bool {
	if !b.take(n) {
		return false
	}
	e.budget = b
	e.held += n
	return true
}

// unholdBody gives back what the request body holds of the budget.
func (e *Exchange) unholdBody() {
	if e.held != 0 {
		e.budget.give(e.held)
		e.held = 0
	}
}

// bufs are the reusable buffers of one message.
type bufs struct {
	head   []byte
	body   []byte
	fields []Field
}

// Retain adds a reference; pair with Release.
func (e *Exchange) Retain() { e.refs.Add(1) }

// Release drops a reference; the last one returns the exchange to its pool.
func (e *Exchange) Release() {
	if e.pool == nil {
		e.refs.Add(-1)
		return
	}
	if e.free {
		return // released once too often: ignored, as a count below zero was
	}
	switch {
	case e.refs.Load() == 1:
		// The caller holds the only reference, so no other goroutine can
		// change the count (Retain needs a reference): skip the locked
		// read-modify-write, the common case on the parser's path. The
		// count stays 1 in the pool, ready for the next get.
	case e.refs.Add(-1) == 0:
		e.refs.Store(1)
	default:
		return
	}
	e.pool.put(e)
}

// Sink receives exchanges from the parser, on the connection's shard goroutine.
// For every request, Request is called once as soon as the request is
// complete, then Response exactly once: when the response completes, or when
// it is known it never will (Exchange.Reason says why). Neither may block.
type Sink interface {
	Request(ex *Exchange)
	Response(ex *Exchange)
}
