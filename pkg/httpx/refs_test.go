package httpx

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// The last Release, on whichever goroutine, returns an exchange to its pool
// once; a Release too many is ignored.
func TestReleaseRefs(t *testing.T) {
	pl := newPool()
	for i := 0; i < 100; i++ {
		e := pl.get()
		if e.free || e.refs.Load() != 1 {
			t.Fatalf("got free=%v refs=%d", e.free, e.refs.Load())
		}
		const holders = 4
		var wg sync.WaitGroup
		for j := 0; j < holders; j++ {
			e.Retain()
			wg.Add(1)
			go func() { defer wg.Done(); e.Release() }()
		}
		e.Release()
		wg.Wait()
		if !e.free || e.refs.Load() != 1 {
			t.Fatalf("after the last release: free=%v refs=%d", e.free, e.refs.Load())
		}
		e.Release() // once too often
		if !e.free || e.refs.Load() != 1 {
			t.Fatalf("after an extra release: free=%v refs=%d", e.free, e.refs.Load())
		}
	}
	var e Exchange // not from a pool
	e.Retain()
	e.Release()
	if e.refs.Load() != 0 {
		t.Fatalf("unpooled refs %d", e.refs.Load())
	}
}

func TestQueue(t *testing.T) {
	var q queue
	var want []*Exchange
	for i := 0; i < 5000; i++ {
		if len(want) > 0 && (i%3 == 0 || len(want) > 40) {
			if got := q.pop(); got != want[0] {
				t.Fatalf("step %d: pop %p, want %p", i, got, want[0])
			}
			want = want[1:]
		} else {
			e := new(Exchange)
			q.push(e)
			want = append(want, e)
		}
		if q.len() != len(want) || len(want) > 0 && q.front() != want[0] {
			t.Fatalf("step %d: len %d, want %d", i, q.len(), len(want))
		}
	}
}

// within reports whether v (if it holds any capacity) is a view into the
// array of h.
func within(h, v []byte) bool {
	if cap(v) == 0 {
		return true
	}
	off := cap(h) - cap(v)
	return off >= 0 && &h[:cap(h)][off] == &v[:1][0]
}

// fieldSink checks that every Field kept by an exchange, up to the capacity
// of its list, is a view into its own head: old views must not pin other
// buffers, since the pool does not clear them.
type fieldSink struct {
	t *testing.T
	n *sinkCounts
}

// sinkCounts is what a fieldSink received, so that the test fails when
// nothing reaches it.
type sinkCounts struct {
	requests, responses, withBig, fields int
}

func (s fieldSink) check(b *bufs) {
	for i, f := range b.fields[:cap(b.fields)] {
		s.n.fields++
		if !within(b.head, f.Name) || !within(b.head, f.Value) {
			s.t.Fatalf("field %d %q: %q is not a view into the head", i, f.Name, f.Value)
		}
	}
}
func (s fieldSink) Request(ex *Exchange) {
	s.n.requests++
	if len(Get(ex.Req.Fields, "X-Big")) > 0 {
		s.n.withBig++
	}
	s.check(&ex.qb)
}
func (s fieldSink) Response(ex *Exchange) {
	s.n.responses++
	s.check(&ex.qb)
	s.check(&ex.sb)
}

func TestFieldsStayInHead(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	var n sinkCounts
	h := NewFactory(Config{ResponseBodyKeep: KeepWholeBody}, fieldSink{t, &n}, nil, nil)(testKey, 0, false)
	const exchanges = 3000
	wantBig := 0
	for i := 0; i < exchanges; i++ {
		g := genExchange(rng, false)
		big := strings.Repeat("v", rng.IntN(3)*rng.IntN(3000))
		if big != "" {
			wantBig++
		}
		req := strings.Replace(g.req, "\r\n\r\n", "\r\nX-Big: "+big+"\r\n\r\n", 1)
		for _, s := range cuts(rng, req, 1+rng.IntN(2000)) {
			h.Data(Q, []byte(s), 1)
		}
		for _, s := range cuts(rng, g.resp, 1+rng.IntN(2000)) {
			h.Data(R, []byte(s), 1)
		}
	}
	if n.requests != exchanges || n.responses != exchanges || n.withBig != wantBig || n.fields < exchanges {
		t.Errorf("sink got %d requests (%d with X-Big), %d responses, checked %d fields; want %d, %d, %d, at least %d",
			n.requests, n.withBig, n.responses, n.fields, exchanges, wantBig, exchanges, exchanges)
	}
}
