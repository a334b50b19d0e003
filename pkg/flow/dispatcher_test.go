package flow

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

func TestFlowHashSymmetric(t *testing.T) {
	d := &Dispatcher{shards: make([]*shard, 7)}
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[int]bool{}
	for range 2000 {
		var h event.Header
		h.Family = event.FamilyIPv6
		for i := range h.SrcAddr {
			h.SrcAddr[i], h.DstAddr[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		h.SrcPort, h.DstPort, h.VNI = uint16(rng.Uint32()), uint16(rng.Uint32()), rng.Uint32()
		r := h
		r.SrcAddr, r.DstAddr = h.DstAddr, h.SrcAddr
		r.SrcPort, r.DstPort = h.DstPort, h.SrcPort
		r.Direction = event.Response
		if flowHash(&h) != flowHash(&r) {
			t.Fatalf("hash not symmetric for %+v", h)
		}
		seen[d.shardOf(&h)] = true
	}
	if len(seen) != 7 {
		t.Fatalf("only %d of 7 shards used", len(seen))
	}
}

func TestDispatcherDelivers(t *testing.T) {
	var rec recorder
	d := NewDispatcher(context.Background(), DispatchConfig{Shards: 3, BatchEvents: 16, QueueLen: 64}, rec.factory)
	const conns = 20
	want := make([]string, conns)
	// Interleave the connections; both directions; many batches.
	for i := range 50 {
		for c := range conns {
			data := fmt.Sprintf("<%d.%d>%s", c, i, strings.Repeat("_", 100))[:100]
			feed(d, sg{dir: event.Request, seq: uint32(1000 + 100*i), data: data, port: uint16(1000 + c)},
				sg{dir: event.Response, seq: uint32(7 + i), data: "r", port: uint16(1000 + c)})
			want[c] += data
		}
		if i%7 == 0 {
			d.Flush()
		}
	}
	d.Close()
	got := rec.all()
	if len(got) != conns {
		t.Fatalf("%d connections, want %d", len(got), conns)
	}
	for _, c := range got {
		i := int(c.key.Client.Port()) - 1000
		if s := c.get(event.Request); s != want[i] {
			t.Errorf("conn %d request stream %q…", i, s[:min(len(s), 40)])
		}
		if s := c.get(event.Response); len(s) != 50 {
			t.Errorf("conn %d response %d bytes", i, len(s))
		}
		if !slices.Equal(c.reasons(), []CloseReason{CloseShutdown}) {
			t.Errorf("conn %d reasons %v", i, c.reasons())
		}
	}
	s := d.Stats()
	checkIdentity(t, s)
	if s.EventsIn != s.EventsAccounted() || s.QueueFullEvents != 0 || s.EventsIn != 2*50*conns {
		t.Fatalf("events in %d, segments %d, dropped %d", s.EventsIn, s.SegmentsIn, s.QueueFullEvents)
	}
}

// blockingHandler blocks in Data until released, the first time.
type blockingHandler struct {
	*recConn
	entered, release chan struct{}
	blocked          bool
}

func (b *blockingHandler) Data(dir event.Direction, p []byte, ts uint64) {
	if !b.blocked {
		b.blocked = true
		close(b.entered)
		<-b.release
	}
	b.recConn.Data(dir, p, ts)
}

func TestDispatcherQueueFull(t *testing.T) {
	var rec recorder
	entered, release := make(chan struct{}), make(chan struct{})
	factory := func(k Key, ts uint64, mid bool) Handler {
		c := rec.factory(k, ts, mid).(*recConn)
		if k.Client.Port() == 1 {
			return &blockingHandler{recConn: c, entered: entered, release: release}
		}
		return c
	}
	d := NewDispatcher(context.Background(), DispatchConfig{Shards: 1, QueueLen: 1, BatchEvents: 1}, factory)
	a := func(seq uint32, s string) sg { return sg{dir: event.Request, seq: seq, data: s, port: 1} }
	b := func(seq uint32, s string) sg { return sg{dir: event.Request, seq: seq, data: s, port: 2} }

	feed(d, a(100, "one "))
	d.Flush()
	<-entered // the shard is stuck in the handler with batch 1
	feed(d, a(104, "two "))
	d.Flush()                              // queued: the queue holds one batch
	feed(d, a(108, "three "), b(1, "B1 ")) // batch "three" is dropped when "B1" needs room
	d.Flush()                              // batch "B1" is dropped too
	s := d.Stats()
	if s.QueueFullEvents != 2 || s.QueueFullBatches != 2 {
		t.Fatalf("dropped events %d batches %d, want 2 and 2", s.QueueFullEvents, s.QueueFullBatches)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); d.Stats().SegmentsIn < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("shard did not drain")
		}
	}
	feed(d, a(114, "four"), b(4, "B2"))
	d.Close()

	conns := rec.all()
	if len(conns) != 2 {
		t.Fatalf("%d conns", len(conns))
	}
	ca, cb := conns[0], conns[1]
	if got := ca.get(event.Request); got != "one two <GAP>four" {
		t.Errorf("damaged request stream %q", got)
	}
	if got := ca.get(event.Response); got != "<GAP>" {
		t.Errorf("damaged response stream %q", got)
	}
	// Connection B was not tracked when its first batch was dropped: it is
	// joined mid-stream at the next segment.
	if got := cb.get(event.Request); got != "B2" || !cb.midStream {
		t.Errorf("B stream %q", got)
	}
	s = d.Stats()
	checkIdentity(t, s)
	if s.EventsIn != s.EventsAccounted() {
		t.Fatalf("events in %d != segments %d + dropped %d", s.EventsIn, s.SegmentsIn, s.QueueFullEvents)
	}
	if s.DamagedConns != 1 {
		t.Fatalf("damaged conns %d", s.DamagedConns)
	}
}

func TestDispatcherIdleWithoutTraffic(t *testing.T) {
	var rec recorder
	d := NewDispatcher(context.Background(), DispatchConfig{
		Shards: 2, TickInterval: 5 * time.Millisecond,
		Reassembly: Config{IdleTimeout: 30 * time.Millisecond},
	}, rec.factory)
	defer d.Close()
	feed(d, sg{dir: event.Request, seq: 1, data: "x", ts: 1})
	d.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c := rec.all(); len(c) == 1 && slices.Equal(c[0].reasons(), []CloseReason{CloseIdle}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection not closed idle by the ticker")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := d.Stats(); s.ConnsTracked != 0 || s.ClosedIdle != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDispatcherContextCancel(t *testing.T) {
	var rec recorder
	ctx, cancel := context.WithCancel(context.Background())
	d := NewDispatcher(ctx, DispatchConfig{Shards: 2}, rec.factory)
	feed(d, req(1, "a"), sg{dir: event.Request, seq: 1, data: "b", port: 9})
	d.Flush()
	cancel()
	// Segments after cancellation are counted, never block.
	for i := range 5000 {
		feed(d, sg{dir: event.Request, seq: uint32(i), data: "zzzz", port: 77})
	}
	d.Flush()
	done := make(chan struct{})
	go func() { d.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs after cancel")
	}
	for _, c := range rec.all() {
		if !slices.Equal(c.reasons(), []CloseReason{CloseShutdown}) {
			t.Errorf("conn %v reasons %v", c.key, c.reasons())
		}
	}
	s := d.Stats()
	if s.EventsIn != s.EventsAccounted() {
		t.Fatalf("events in %d != segments %d + dropped %d", s.EventsIn, s.SegmentsIn, s.QueueFullEvents)
	}
	checkIdentity(t, s)
}

// TestStalled checks what the systemd watchdog relies on: idle shards stay
// live (they tick), and a shard stuck in a handler is reported until it
// gets going again.
func TestStalled(t *testing.T) {
	var rec recorder
	entered, release := make(chan struct{}), make(chan struct{})
	factory := func(k Key, ts uint64, mid bool) Handler {
		c := rec.factory(k, ts, mid).(*recConn)
		return &blockingHandler{recConn: c, entered: entered, release: release}
	}
	const tick = 5 * time.Millisecond
	d := NewDispatcher(context.Background(), DispatchConfig{Shards: 2, TickInterval: tick}, factory)
	defer d.Close()
	time.Sleep(10 * tick)
	if i, age, stalled := d.Stalled(time.Now(), 40*tick); stalled {
		t.Fatalf("idle shard %d reported stalled (%v)", i, age)
	}
	feed(d, sg{dir: event.Request, seq: 1, data: "GET", port: 1})
	d.Flush()
	<-entered // the shard is now stuck in Data
	time.Sleep(60 * tick)
	want := d.shardOf(func() *event.Header { h := (sg{dir: event.Request, seq: 1, data: "GET", port: 1}).header(); return &h }())
	i, age, stalled := d.Stalled(time.Now(), 40*tick)
	if !stalled || i != want {
		t.Fatalf("Stalled = shard %d, %v, %v; want shard %d stalled", i, age, stalled, want)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, stalled := d.Stalled(time.Now(), 40*tick); !stalled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("shard still reported stalled after its handler returned")
		}
		time.Sleep(tick)
	}
}
