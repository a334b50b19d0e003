package replay

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// feedBody sends n body bytes on the request direction in segments.
func feedBody(h flow.Handler, seg []byte, n int, ts uint64) {
	for n > 0 {
		k := min(n, len(seg))
		h.Data(event.Request, seg[:k], ts)
		n -= k
	}
}

// TestFilteredBodiesNotKept is issue 10's experiment: 8 connections × 64
// unanswered 4 MiB POSTs, POST not replayed. The parser must decide at the
// head that the bodies will never be replayed and measure them instead of
// keeping them (2 GiB of heap before), still handing every request over and
// counting it filtered.
func TestFilteredBodiesNotKept(t *testing.T) {
	if testing.Short() {
		t.Skip("feeds 2 GiB through the parser")
	}
	rec := newRecorder(t, nil)
	r := start(t, testConfig(mustURL(t, rec.URL))) // GET, HEAD, OPTIONS
	var pst httpx.Stats
	newHandler := httpx.NewFactory(httpx.Config{}, r, &pst, testLogger(t))

	const conns, perConn, bodyLen = 8, 64, 4 << 20
	const bound = 64 << 20 // heads, parser state, pools: far below one body per request
	seg := make([]byte, 64<<10)
	for i := range seg {
		seg[i] = 'x'
	}
	before := heapInUse()
	key := flow.Key{VNI: 1, Client: netip.MustParseAddrPort(testClient), Server: netip.MustParseAddrPort(testServer)}
	var hs []flow.Handler
	ts := uint64(1)
	for c := range conns {
		key.Client = netip.AddrPortFrom(key.Client.Addr(), key.Client.Port()+1)
		h := newHandler(key, ts, false)
		hs = append(hs, h)
		for i := range perConn {
			head := fmt.Sprintf("POST /upload/%d/%d HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n", c, i, bodyLen)
			h.Data(event.Request, []byte(head), ts)
			feedBody(h, seg, bodyLen, ts)
			ts++
		}
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d MiB holding %d unanswered %d MiB POSTs", grown>>20, conns*perConn, bodyLen>>20)
	if grown > bound {
		t.Errorf("heap grew by %d MiB with every request unanswered and none to replay; want at most %d MiB", grown>>20, bound>>20)
	}
	hst := pst.Snapshot()
	if hst.Requests != conns*perConn {
		t.Errorf("parser handed over %d requests, want %d", hst.Requests, conns*perConn)
	}
	if hst.RequestsBodySkipped != conns*perConn || hst.RequestBodySkippedBytes != conns*perConn*bodyLen || hst.BodyBudgetHeld != 0 {
		t.Errorf("parser: %d bodies (%d bytes) measured and skipped, %d bytes held; want %d (%d), 0",
			hst.RequestsBodySkipped, hst.RequestBodySkippedBytes, hst.BodyBudgetHeld, conns*perConn, conns*perConn*bodyLen)
	}
	for _, h := range hs {
		h.Close(flow.CloseFIN, ts)
	}
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	if s.Requests != conns*perConn || s.FilteredMethod != conns*perConn || s.Accepted != 0 {
		t.Errorf("replay: requests %d, filtered method %d, accepted %d; want %d, %d, 0",
			s.Requests, s.FilteredMethod, s.Accepted, conns*perConn, conns*perConn)
	}
	hst = pst.Snapshot()
	if got := hst.Answered + hst.NoRespGap + hst.NoRespClosed + hst.NoRespGaveUp + hst.NoRespOverflow; got != hst.Requests {
		t.Errorf("parser: %d requests, %d ended", hst.Requests, got)
	}
	if hst.NoRespClosed != conns*perConn {
		t.Errorf("parser: %d requests ended closed, want %d (all unanswered)", hst.NoRespClosed, conns*perConn)
	}
}

// TestBodyBudgetAndQueueBytes: GETs with bodies on pipelined connections
// whose answers never come, while the replayer is not running (its queue
// holds what it accepted). Bodies beyond the process's body budget are
// dropped and counted filtered body_budget; bodies beyond the target's
// queue bytes are dropped "queue"; the budget covers both the parser's and
// the queue's bodies and comes back whole once both let go.
func TestBodyBudgetAndQueueBytes(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                     string
		budget, queueBytes       int64
		conns, perConn, bodySize int
		// want
		accepted, overBudget, droppedQueue uint64
		held, queued                       int64
	}{
		{name: "budget", budget: 8 * mib, queueBytes: 64 * mib, conns: 2, perConn: 8, bodySize: mib,
			accepted: 8, overBudget: 8, held: 8 * mib, queued: 8 * mib},
		{name: "queue bytes", budget: 64 * mib, queueBytes: 3 * mib, conns: 2, perConn: 4, bodySize: mib,
			accepted: 8, droppedQueue: 5, held: 8 * mib, queued: 3 * mib},
		{name: "one body larger than the queue", budget: 64 * mib, queueBytes: mib / 2, conns: 1, perConn: 2, bodySize: mib,
			accepted: 2, droppedQueue: 2, held: 2 * mib, queued: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(mustURL(t, "http://127.0.0.1:1"))
			cfg.QueueBytes = tc.queueBytes
			r, err := New(cfg, testLogger(t)) // not run: the queue keeps what it takes
			if err != nil {
				t.Fatal(err)
			}
			budget := httpx.NewBudget(tc.budget)
			var pst httpx.Stats
			newHandler := httpx.NewFactory(httpx.Config{BodyBudget: budget}, r, &pst, testLogger(t))
			key := flow.Key{VNI: 1, Client: netip.MustParseAddrPort(testClient), Server: netip.MustParseAddrPort(testServer)}
			seg := make([]byte, 64<<10)
			var hs []flow.Handler
			for c := range tc.conns {
				key.Client = netip.AddrPortFrom(key.Client.Addr(), key.Client.Port()+1)
				h := newHandler(key, 1, false)
				hs = append(hs, h)
				for i := range tc.perConn {
					head := fmt.Sprintf("GET /search/%d/%d HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n", c, i, tc.bodySize)
					h.Data(event.Request, []byte(head), 1)
					feedBody(h, seg, tc.bodySize, 1)
				}
			}
			s := r.Stats().Snapshot()
			if s.Accepted != tc.accepted || s.BodyBudget != tc.overBudget || s.Targets[0].DroppedQueue != tc.droppedQueue {
				t.Errorf("accepted %d, filtered body_budget %d, dropped queue %d; want %d, %d, %d",
					s.Accepted, s.BodyBudget, s.Targets[0].DroppedQueue, tc.accepted, tc.overBudget, tc.droppedQueue)
			}
			if got := int64(s.Targets[0].QueuedBytes); got != tc.queued {
				t.Errorf("queued bytes %d, want %d", got, tc.queued)
			}
			if got := budget.Held(); got != tc.held {
				t.Errorf("budget held %d with every request unanswered, want %d", got, tc.held)
			}
			if got := pst.Snapshot().RequestsOverBudget; got != tc.overBudget {
				t.Errorf("parser counted %d bodies over budget, want %d", got, tc.overBudget)
			}
			if err := s.Check(); err != nil {
				t.Error(err)
			}
			// The connections end: the parser lets go, the queue still holds.
			for _, h := range hs {
				h.Close(flow.CloseFIN, 2)
			}
			if got := budget.Held(); got != tc.queued {
				t.Errorf("budget held %d once the connections closed, want the queue's %d", got, tc.queued)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			r.Drain(ctx) // never run: what is queued fails "drain" and is released
			if got := budget.Held(); got != 0 {
				t.Errorf("budget held %d after the queue was drained, want 0", got)
			}
			s = r.Stats().Snapshot()
			if err := s.Check(); err != nil {
				t.Error(err)
			}
			if s.Targets[0].QueuedBytes != 0 {
				t.Errorf("queued bytes %d after drain", s.Targets[0].QueuedBytes)
			}
			hst := pst.Snapshot()
			if got := hst.Answered + hst.NoRespGap + hst.NoRespClosed + hst.NoRespGaveUp + hst.NoRespOverflow; got != hst.Requests {
				t.Errorf("parser: %d requests, %d ended", hst.Requests, got)
			}
		})
	}
}
