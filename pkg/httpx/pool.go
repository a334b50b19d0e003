package httpx

import (
	"sync"

	"github.com/shadowtap/shadowtap/pkg/flow"
)

// maxPooledBuf is the largest buffer capacity kept when an exchange returns
// to the pool; bigger buffers (a rare large body) are left to the GC so that
// idle pools do not pin memory.
const maxPooledBuf = 1 << 20

// pool recycles exchanges and their buffers so that steady-state parsing
// does not allocate.
type pool struct{ p sync.Pool }

func newPool() *pool {
	pl := &pool{}
	pl.p.New = func() any {
		e := &Exchange{pool: pl}
		e.refs.Store(1)
		return e
	}
	return pl
}

// get returns an exchange holding one reference. Pooled exchanges keep a
// count of 1 (see Release), so no atomic store is needed here.
func (p *pool) get() *Exchange {
	e := p.p.Get().(*Exchange)
	e.free = false
	return e
}

func (p *pool) put(e *Exchange) {
	e.reset()
	e.free = true
	p.p.Put(e)
}

// reset makes e as new, keeping its buffers and its count of 1.
func (e *Exchange) reset() {
	e.unholdBody()
	e.qb.reset()
	e.sb.reset()
	// Forget the contents, keep the buffers. Resp must be cleared: a recycled
	// exchange must not point at a previous response.
	e.Req = Request{}
	e.resp = Response{}
	e.Resp = nil
	e.Conn = flow.Key{}
	e.Seq, e.Reason, e.Mark = 0, RespOK, 0
}

func (b *bufs) reset() {
	if cap(b.head) > maxPooledBuf {
		b.head = nil
		// The fields are views into the head dropped: let it go. Otherwise
		// they only point into the head kept (appendHead), and every Field
		// taken for a new head is written whole, so they need no clearing.
		clear(b.fields[:cap(b.fields)])
	}
	if cap(b.body) > maxPooledBuf {
		b.body = nil
	}
	b.head, b.body, b.fields = b.head[:0], b.body[:0], b.fields[:0]
}

// appendHead appends x to the head. When the head moves to a larger array,
// the fields are cleared up to their capacity: they only ever point into the
// current head, which lets reset keep them as they are.
func (b *bufs) appendHead(x []byte) {
	if b.grow(x) {
		clear(b.fields[:cap(b.fields)])
	}
}

// grow appends x to the head and reports whether it moved.
func (b *bufs) grow(x []byte) bool {
	old := cap(b.head)
	b.head = append(b.head, x...)
	return cap(b.head) != old
}
