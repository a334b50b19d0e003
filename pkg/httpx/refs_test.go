package httpx

import (
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
