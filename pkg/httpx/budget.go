package httpx

import "sync/atomic"

// DefaultBodyBudget is the process-wide budget for request bodies held
// (Config.BodyBudget) when none is given: 256 MiB.
const DefaultBodyBudget = 256 << 20

// Budget bounds the bytes of request bodies held across a process: by the
// parsers of every connection and shard (requests in progress and pipelined
// requests waiting for their responses) and by the stages after them (the
// replay queues), until the exchange goes back to its pool. A body that
// would go beyond it is dropped (Request.OverBudget) and counted. It is
// safe for concurrent use.
type Budget struct {
	limit int64
	held  atomic.Int64
}

// NewBudget returns a budget of limit bytes (at least 0).
func NewBudget(limit int64) *Budget {
	return &Budget{limit: max(limit, 0)}
}

// Limit is the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Held is the bytes taken and not yet given back.
func (b *Budget) Held() int64 { return b.held.Load() }

// take takes n bytes, or nothing and false when they do not fit.
func (b *Budget) take(n int64) bool {
	if b.held.Add(n) > b.limit {
		b.held.Add(-n)
		return false
	}
	return true
}

func (b *Budget) give(n int64) { b.held.Add(-n) }

// HeadDecider is an optional interface of a Sink: the parser calls WantBody
// once a request's head is parsed (Exchange.Conn, Req.Method, Req.Target,
// Req.Proto, Req.Head and Req.Fields set, on the connection's shard
// goroutine, before any body byte) to ask whether the body will be used.
// When it reports false, the body is measured (Request.BodyLen) and its
// bytes dropped as they come (Request.BodySkipped); the request is still
// handed to Request. WantBody may record its decision in Exchange.Mark for
// Request to reuse. It must not block nor keep ex.
type HeadDecider interface {
	WantBody(ex *Exchange) bool
}
