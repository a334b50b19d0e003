package flow

import (
	"context"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// benchSegments prepares headers of keep-alive connections: each iteration
// sends the next 1448-byte segment of connection i%conns.
func benchHeaders(conns int) []event.Header {
	hs := make([]event.Header, conns)
	for i := range hs {
		hs[i] = sg{dir: event.Request, seq: uint32(i) * 7777777, port: uint16(10000 + i)}.header()
		hs[i].CapLen, hs[i].WireLen = 1448, 1448
		hs[i].Flags = 0
	}
	return hs
}

type nopFactoryHandler struct{ n int }

func (h *nopFactoryHandler) Data(_ event.Direction, b []byte, _ uint64) { h.n += len(b) }
func (*nopFactoryHandler) Gap(event.Direction, uint64)                  {}
func (*nopFactoryHandler) Close(CloseReason, uint64)                    {}

func nopFactory(Key, uint64, bool) Handler { return &nopFactoryHandler{} }

func BenchmarkReassemblyInOrder(b *testing.B) {
	const conns = 64
	payload := make([]byte, 1448)
	copy(payload, "GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n")

	b.Run("reassembler", func(b *testing.B) {
		r := NewReassembler(Config{}, nopFactory)
		hs := benchHeaders(conns)
		for i := range hs { // open the connections outside the timing
			r.Segment(&hs[i], payload)
			hs[i].Seq += 1448
		}
		b.SetBytes(1448)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			h := &hs[i%conns]
			h.TimeNs += 1000
			r.Segment(h, payload)
			h.Seq += 1448
		}
		el := time.Since(start)
		b.ReportMetric(float64(b.N)/el.Seconds(), "segments/s")
		if s := r.Stats().Snapshot(); s.SegInOrder != uint64(b.N+conns) {
			b.Fatalf("in order %d of %d", s.SegInOrder, b.N+conns)
		}
	})

	// One shard: the capture goroutine and the shard each have a core (the
	// host has 2). The producer never waits, so whatever the shard cannot
	// take is dropped and counted: delivered-segments/s is the end-to-end
	// rate, dropped/op the share lost.
	b.Run("dispatcher", func(b *testing.B) {
		d := NewDispatcher(context.Background(), DispatchConfig{Shards: 1, QueueLen: 64}, nopFactory)
		defer d.Close()
		hs := benchHeaders(conns)
		for i := range hs {
			d.Segment(&hs[i], payload)
			hs[i].Seq += 1448
		}
		d.Flush()
		b.SetBytes(1448)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			h := &hs[i%conns]
			h.TimeNs += 1000
			d.Segment(h, payload)
			h.Seq += 1448
			if i%256 == 255 {
				d.Flush()
			}
		}
		d.Flush()
		// Wait for the shards: the figure is end-to-end throughput.
		for {
			s := d.Stats()
			if s.SegmentsIn+s.QueueFullEvents == s.EventsIn {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		el := time.Since(start)
		b.StopTimer()
		s := d.Stats()
		b.ReportMetric(float64(s.SegmentsIn)/el.Seconds(), "delivered-segments/s")
		b.ReportMetric(float64(s.QueueFullEvents)/float64(b.N+conns), "dropped/op")
	})
}
