package flow

import (
	"context"
	"encoding/binary"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// DispatchConfig configures a Dispatcher. Zero fields take their defaults.
type DispatchConfig struct {
	// Shards is the number of shard goroutines. Default runtime.GOMAXPROCS(0).
	Shards int
	// QueueLen is the number of batches a shard's queue holds. Default 64:
	// with 256 KiB batches that absorbs tens of milliseconds of a shard not
	// being scheduled at full line rate, at 16.5 MiB per shard.
	QueueLen int
	// BatchBytes is the payload arena of one batch. Default 256 KiB; at least 64 KiB
	// so that any segment fits.
	BatchBytes int
	// BatchEvents is the maximum events in one batch. Default 512.
	BatchEvents int
	// MaxDamaged is how many distinct damaged connections a shard remembers
	// between two delivered batches; beyond it every connection of the shard
	// is treated as damaged. Default 256.
	MaxDamaged int
	// TickInterval is the period of each shard's idle sweep. Default
	// IdleTimeout/8, at most 1 s.
	TickInterval time.Duration
	// Reassembly configures each shard's Reassembler (the caps are per shard).
	Reassembly Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c DispatchConfig) withDefaults() DispatchConfig {
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 64
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 256 << 10
	}
	c.BatchBytes = max(c.BatchBytes, 1<<16)
	if c.BatchEvents <= 0 {
		c.BatchEvents = 512
	}
	if c.MaxDamaged <= 0 {
		c.MaxDamaged = 256
	}
	c.Reassembly = c.Reassembly.withDefaults()
	if c.TickInterval <= 0 {
		c.TickInterval = min(c.Reassembly.IdleTimeout/8, time.Second)
		c.TickInterval = max(c.TickInterval, time.Millisecond)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// batch is a block of events for one shard: headers, their payloads packed
// in one arena, and the connections damaged by drops since the previous
// delivered batch.
type batch struct {
	hdrs      []event.Header
	ends      []int // end offset of each payload in data
	data      []byte
	damaged   []Key
	damageAll bool
}

func (b *batch) reset() {
	b.hdrs = b.hdrs[:0]
	b.ends = b.ends[:0]
	b.data = b.data[:0]
	b.damaged = b.damaged[:0]
	b.damageAll = false
}

type shard struct {
	r     *Reassembler
	queue chan *batch // to the shard goroutine
	free  chan *batch // recycled batches back to the dispatcher
	cur   *batch      // being filled (dispatcher side)
	// Connections damaged by dropped batches, to be carried by the next
	// delivered batch (dispatcher side).
	damaged   []Key
	damageAll bool
	// beat is when the shard goroutine last finished a batch or a tick
	// (unix ns): a shard stuck in a handler stops it (see Stalled).
	beat atomic.Int64
}

// Dispatcher is the event.Batcher that feeds the flow stage: it spreads
// segments over shards by a symmetric flow hash (both directions of a
// connection go to the same shard), copies them into per-shard batches and
// hands full batches to the shard goroutines, each owning a Reassembler.
//
// Segment and Flush must be called from one goroutine (the capture reader);
// they never block. When a shard's queue is full the batch is dropped and
// counted (QueueFullEvents, QueueFullBatches), and its connections are
// marked damaged: before processing the next batch it receives, the shard
// gives each of them a Gap on both directions. Close must be called after the
// last Segment or Flush.
type Dispatcher struct {
	cfg       DispatchConfig
	ctx       context.Context
	stats     Stats
	shards    []*shard
	wg        sync.WaitGroup
	closeOnce sync.Once
	log       *slog.Logger
}

// NewDispatcher starts cfg.Shards shard goroutines. They stop when ctx is
// cancelled (after draining their queues) or when Close is called; either
// way every connection is closed with CloseShutdown.
func NewDispatcher(ctx context.Context, cfg DispatchConfig, factory HandlerFactory) *Dispatcher {
	cfg = cfg.withDefaults()
	d := &Dispatcher{cfg: cfg, ctx: ctx, log: cfg.Logger}
	d.shards = make([]*shard, cfg.Shards)
	for i := range d.shards {
		s := &shard{
			r:     NewReassembler(cfg.Reassembly, factory),
			queue: make(chan *batch, cfg.QueueLen),
			free:  make(chan *batch, cfg.QueueLen+2),
		}
		// QueueLen queued + one in the shard's hands + one being filled.
		for range cfg.QueueLen + 2 {
			s.free <- &batch{
				hdrs: make([]event.Header, 0, cfg.BatchEvents),
				ends: make([]int, 0, cfg.BatchEvents),
				data: make([]byte, 0, cfg.BatchBytes),
			}
		}
		d.shards[i] = s
		d.wg.Add(1)
		go d.run(i, s)
	}
	return d
}

// Stats returns the dispatcher's counters summed with every shard's.
func (d *Dispatcher) Stats() StatsSnapshot {
	s := d.stats.Snapshot()
	for _, sh := range d.shards {
		s.Add(sh.r.Stats().Snapshot())
	}
	return s
}

// Stalled reports the first shard whose goroutine has not finished a batch
// or a tick for longer than maxAge at now (idle shards tick every
// TickInterval, so a healthy one is never older than that plus one batch);
// ok is false when every shard is live. The systemd watchdog uses it.
func (d *Dispatcher) Stalled(now time.Time, maxAge time.Duration) (shard int, age time.Duration, ok bool) {
	for i, sh := range d.shards {
		if a := now.Sub(time.Unix(0, sh.beat.Load())); a > maxAge {
			return i, a, true
		}
	}
	return 0, 0, false
}

// flowHash is a symmetric hash of the segment's endpoints and VNI: swapping
// source and destination gives the same value. It does not allocate.
func flowHash(h *event.Header) uint64 {
	le := binary.LittleEndian
	a := mix64(le.Uint64(h.SrcAddr[0:]) ^ mix64(le.Uint64(h.SrcAddr[8:])^uint64(h.SrcPort)<<1))
	b := mix64(le.Uint64(h.DstAddr[0:]) ^ mix64(le.Uint64(h.DstAddr[8:])^uint64(h.DstPort)<<1))
	return mix64(a + b + uint64(h.VNI)*0x9e3779b97f4a7c15)
}

func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (d *Dispatcher) shardOf(h *event.Header) int {
	return int(flowHash(h) % uint64(len(d.shards)))
}

// Segment copies one segment into its shard's batch. It never blocks.
func (d *Dispatcher) Segment(h *event.Header, payload []byte) {
	d.stats.EventsIn.Add(1)
	s := d.shards[d.shardOf(h)]
	b := s.cur
	if b != nil && (len(b.hdrs) == cap(b.hdrs) || len(b.data)+len(payload) > cap(b.data)) {
		d.send(s)
		b = s.cur
	}
	if b == nil {
		b = d.take(s)
		if b == nil {
			// No free batch (cannot happen while shards return them): drop.
			d.stats.QueueFullEvents.Add(1)
			d.markDamaged(s, KeyOf(h))
			return
		}
	}
	b.hdrs = append(b.hdrs, *h)
	b.data = append(b.data, payload...)
	b.ends = append(b.ends, len(b.data))
	b.hdrs[len(b.hdrs)-1].CapLen = uint16(len(payload))
}

// take gets a free batch for s and attaches the pending damage.
func (d *Dispatcher) take(s *shard) *batch {
	select {
	case b := <-s.free:
		b.reset()
		b.damaged = append(b.damaged, s.damaged...)
		b.damageAll = s.damageAll
		s.damaged = s.damaged[:0]
		s.damageAll = false
		s.cur = b
		return b
	default:
		return nil
	}
}

// send hands s's current batch to the shard without blocking; when the
// queue is full the batch is dropped, counted, and its connections (and the
// damage it carried) become pending damage for the next batch.
func (d *Dispatcher) send(s *shard) {
	b := s.cur
	s.cur = nil
	select {
	case s.queue <- b:
		d.stats.BatchesDispatched.Add(1)
		return
	default:
	}
	d.stats.QueueFullBatches.Add(1)
	d.stats.QueueFullEvents.Add(uint64(len(b.hdrs)))
	s.damageAll = s.damageAll || b.damageAll
	for _, k := range b.damaged {
		d.markDamaged(s, k)
	}
	for i := range b.hdrs {
		d.markDamaged(s, KeyOf(&b.hdrs[i]))
	}
	b.reset()
	s.free <- b // cannot block: it came from free
}

func (d *Dispatcher) markDamaged(s *shard, k Key) {
	if s.damageAll {
		return
	}
	// The most recent entries are the likeliest duplicates.
	for i := len(s.damaged) - 1; i >= 0 && i >= len(s.damaged)-8; i-- {
		if s.damaged[i] == k {
			return
		}
	}
	if len(s.damaged) >= d.cfg.MaxDamaged {
		s.damageAll = true
		s.damaged = s.damaged[:0]
		d.stats.DamageOverflow.Add(1)
		return
	}
	s.damaged = append(s.damaged, k)
}

// Flush hands on every partial batch (and pending damage). It never blocks.
func (d *Dispatcher) Flush() {
	for _, s := range d.shards {
		if s.cur == nil && (len(s.damaged) > 0 || s.damageAll) {
			d.take(s)
		}
		if s.cur != nil && (len(s.cur.hdrs) > 0 || len(s.cur.damaged) > 0 || s.cur.damageAll) {
			d.send(s)
		}
	}
}

// Close hands on the partial batches (waiting for queue room unless ctx is
// done), stops the shards after they drain their queues, closes every
// connection with CloseShutdown and waits for the shard goroutines.
func (d *Dispatcher) Close() error {
	d.closeOnce.Do(func() {
		for _, s := range d.shards {
			if s.cur == nil && (len(s.damaged) > 0 || s.damageAll) {
				d.take(s)
			}
			if b := s.cur; b != nil && (len(b.hdrs) > 0 || len(b.damaged) > 0 || b.damageAll) {
				s.cur = nil
				select {
				case s.queue <- b:
					d.stats.BatchesDispatched.Add(1)
				case <-d.ctx.Done():
					d.stats.QueueFullBatches.Add(1)
					d.stats.QueueFullEvents.Add(uint64(len(b.hdrs)))
				}
			}
			close(s.queue)
		}
		d.wg.Wait()
		// Batches queued after a shard stopped on ctx cancellation.
		for _, s := range d.shards {
			for b := range s.queue {
				d.stats.ShutdownEvents.Add(uint64(len(b.hdrs)))
			}
		}
	})
	return nil
}

// run is a shard goroutine.
func (d *Dispatcher) run(i int, s *shard) {
	defer d.wg.Done()
	tick := time.NewTicker(d.cfg.TickInterval)
	defer tick.Stop()
	r := s.r
	s.beat.Store(time.Now().UnixNano())
	for {
		select {
		case b, ok := <-s.queue:
			if !ok {
				d.shutdown(i, s)
				return
			}
			d.process(s, b)
			s.beat.Store(time.Now().UnixNano())
		case now := <-tick.C:
			r.Tick(now)
			s.beat.Store(time.Now().UnixNano())
		case <-d.ctx.Done():
		drain:
			for {
				select {
				case b, ok := <-s.queue:
					if !ok {
						break drain
					}
					d.process(s, b)
				default:
					break drain
				}
			}
			d.shutdown(i, s)
			return
		}
	}
}

func (d *Dispatcher) shutdown(i int, s *shard) {
	r := s.r
	n := r.Len()
	r.CloseAll(CloseShutdown, r.maxTs)
	d.log.Debug("flow shard stopped", "shard", i, "closed", n)
}

func (d *Dispatcher) process(s *shard, b *batch) {
	r := s.r
	if b.damageAll {
		r.DamageAll(r.maxTs)
	} else {
		for _, k := range b.damaged {
			r.Damage(k, r.maxTs)
		}
	}
	start := 0
	for i := range b.hdrs {
		end := b.ends[i]
		r.Segment(&b.hdrs[i], b.data[start:end:end])
		start = end
	}
	b.reset()
	s.free <- b // room: at most QueueLen+2 batches exist
}
