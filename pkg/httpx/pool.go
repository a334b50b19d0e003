package httpx

import "sync"

// pool recycles exchanges and their buffers so that steady-state parsing
// does not allocate.
type pool struct{ p sync.Pool }

func newPool() *pool {
	pl := &pool{}
	pl.p.New = func() any { return &Exchange{pool: pl} }
	return pl
}

func (p *pool) get() *Exchange {
	e := p.p.Get().(*Exchange)
	e.refs.Store(1)
	return e
}

func (p *pool) put(e *Exchange) {
	// Keep the buffers' capacity, forget their contents.
	e.Req = Request{Head: e.Req.Head[:0], Fields: e.Req.Fields[:0], Body: e.Req.Body[:0]}
	if e.Resp != nil {
		r := e.Resp
		*r = Response{Head: r.Head[:0], Fields: r.Fields[:0], Body: r.Body[:0]}
	}
	e.Seq, e.Reason = 0, RespOK
	p.p.Put(e)
}
