package flow

import (
	"bytes"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// Config bounds a Reassembler. Zero fields take their defaults.
type Config struct {
	// MaxConns caps tracked connections; beyond it the least recently used
	// unconfirmed connection is evicted (CloseEvicted), or, when every
	// connection is confirmed, the least recently used one. Default 65536.
	MaxConns int
	// MaxUnconfirmed caps the unconfirmed connections (see Reassembler):
	// a new connection beyond it evicts the least recently used unconfirmed
	// one, never a confirmed one. Default MaxConns/8 (at least 1); never
	// more than MaxConns.
	MaxUnconfirmed int
	// MaxHoldBytes caps the out-of-order bytes held per connection direction.
	// When a segment would exceed it, the reassembler stops waiting for the
	// missing bytes: it declares a Gap and skips to the held data. Default 256 KiB.
	MaxHoldBytes int
	// MaxHoldSegments caps the held segments per connection direction (so a
	// flood of tiny segments cannot make insertion quadratic). Default 512.
	MaxHoldSegments int
	// MaxShardHoldBytes caps the bytes held by the whole Reassembler (data
	// plus a fixed overhead per held segment). Default 64 MiB.
	MaxShardHoldBytes int
	// IdleTimeout closes a connection with no segment for this long, measured
	// on the capture clock (event TimeNs) and, when no traffic arrives, by
	// extrapolating it with the wall clock in Tick. Default 2 minutes.
	IdleTimeout time.Duration
}

// Defaults.
const (
	DefaultMaxConns          = 65536
	DefaultMaxHoldBytes      = 256 << 10
	DefaultMaxHoldSegments   = 512
	DefaultMaxShardHoldBytes = 64 << 20
	DefaultIdleTimeout       = 2 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxUnconfirmed <= 0 {
		c.MaxUnconfirmed = max(c.MaxConns/8, 1)
	}
	c.MaxUnconfirmed = min(c.MaxUnconfirmed, c.MaxConns)
	if c.MaxHoldBytes <= 0 {
		c.MaxHoldBytes = DefaultMaxHoldBytes
	}
	if c.MaxHoldSegments <= 0 {
		c.MaxHoldSegments = DefaultMaxHoldSegments
	}
	if c.MaxShardHoldBytes <= 0 {
		c.MaxShardHoldBytes = DefaultMaxShardHoldBytes
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c
}

// half is the state of one direction of a connection.
type half struct {
	init      bool   // next is known
	next      uint32 // next expected sequence number
	synSeen   bool
	isn       uint32 // sequence number of the SYN, when synSeen
	fin       bool   // a FIN was seen
	finSeq    uint32 // sequence number of the FIN (end of data)
	done      bool   // all bytes up to the FIN delivered
	lastGap   bool   // the last call to the handler for this direction was Gap
	data      bool   // payload bytes of this direction were delivered
	resync    bool   // after damage: accept the next segment ahead as the new start
	held      *seg   // sorted, non-overlapping, all seq > next
	heldBytes int
	heldSegs  int
}

type conn struct {
	key        Key
	h          Handler
	prev, next *conn // LRU list (confirmed or unconfirmed); also the free list (next)
	lastTs     uint64
	confirmed  bool // payload delivered in both directions: in lru, else in ulru
	closing    bool // in close: held bytes flushed now do not confirm it
	half       [2]half
}

// Reassembler tracks connections and reassembles both directions of each. It
// is owned by one goroutine (a shard) and is not safe for concurrent use;
// only its Stats may be read concurrently.
//
// Connections live in two LRU tables. A connection is unconfirmed from its
// first segment until payload bytes have been delivered in both directions
// (a request byte and a response byte reached the Handler in order); then
// it is confirmed, for the rest of its life. SYNs, SYN-ACKs, bare ACKs,
// held (out-of-order) bytes and data in one direction only do not confirm
// it. Unconfirmed connections are at most Config.MaxUnconfirmed and are
// evicted first, so a flood of new flows (spoofed SYNs, scans, one segment
// per flow) evicts only other unconfirmed flows: a confirmed connection is
// evicted only when the whole table holds confirmed connections. A receiver
// that sees only one direction of its connections never confirms them: they
// all share the unconfirmed table.
type Reassembler struct {
	cfg       Config
	factory   HandlerFactory
	stats     Stats
	conns     map[Key]*conn
	lru       conn // sentinel of the confirmed: lru.next is the most recently used
	ulru      conn // sentinel of the unconfirmed, likewise
	nUnconf   int  // connections in ulru
	freeConns *conn
	freeSegs  *seg
	nFreeSegs int
	bufs      bufPool
	heldTotal int // data + segOverhead per held segment

	idleNs     uint64
	sweepEvery uint64
	maxTs      uint64 // largest capture time seen
	lastSweep  uint64
	anchorTs   uint64 // capture time at anchorWall (Tick)
	anchorWall time.Time
}

// NewReassembler returns a Reassembler that makes a Handler per connection
// with factory. factory must not return nil.
func NewReassembler(cfg Config, factory HandlerFactory) *Reassembler {
	cfg = cfg.withDefaults()
	r := &Reassembler{
		cfg:     cfg,
		factory: factory,
		conns:   make(map[Key]*conn, min(cfg.MaxConns, 4096)),
		idleNs:  uint64(cfg.IdleTimeout),
	}
	r.sweepEvery = max(r.idleNs/16, 1)
	r.bufs.maxFree = min(cfg.MaxShardHoldBytes, 4<<20)
	r.lru.next, r.lru.prev = &r.lru, &r.lru
	r.ulru.next, r.ulru.prev = &r.ulru, &r.ulru
	return r
}

// Stats returns the Reassembler's counters.
func (r *Reassembler) Stats() *Stats { return &r.stats }

// Len returns the number of tracked connections.
func (r *Reassembler) Len() int { return len(r.conns) }

// Config returns the configuration in effect (defaults applied).
func (r *Reassembler) Config() Config { return r.cfg }

// Segment processes one captured segment. payload is only read during the
// call; in-order bytes are passed to the Handler without copying.
//
// The wire length is max(h.WireLen, len(payload)); when fewer bytes were
// captured than sent, or the event is flagged truncated, the captured bytes
// are delivered, then a Gap, and the expected sequence advances past the
// whole segment so the stream resynchronises.
func (r *Reassembler) Segment(h *event.Header, payload []byte) {
	st := &r.stats
	st.SegmentsIn.Add(1)
	if h.Direction > event.Response {
		st.SegMalformed.Add(1)
		return
	}
	ts := h.TimeNs
	if ts > r.maxTs {
		r.maxTs = ts
		if ts-r.lastSweep >= r.sweepEvery {
			r.lastSweep = ts
			r.Expire(ts)
		}
	}
	wire := int(h.WireLen)
	if wire < len(payload) {
		wire = len(payload)
	}
	if h.Truncated() || wire > len(payload) {
		st.SegTruncated.Add(1)
	}
	// Flagged truncated although all the bytes the header counts arrived:
	// the real end is unknown, so a Gap follows the segment.
	gapAfter := h.Truncated() && wire == len(payload)
	flags := h.TCPFlags
	syn := flags&event.TCPSyn != 0
	rst := flags&event.TCPRst != 0
	dir := h.Direction
	seq := h.Seq
	if syn {
		seq++ // the SYN occupies one sequence number
	}

	key := KeyOf(h)
	c := r.conns[key]
	if c == nil {
		if rst || (!syn && wire == 0) {
			st.SegNoConn.Add(1)
			return
		}
		c = r.open(key, ts, !syn)
	} else {
		if syn && flags&event.TCPAck == 0 && r.reused(&c.half[dir], seq) {
			st.ReusedConns.Add(1)
			reason := CloseIdle
			if c.half[0].fin || c.half[1].fin {
				reason = CloseFIN
			}
			r.close(c, reason, ts)
			c = r.open(key, ts, false)
		}
		r.touch(c)
	}
	if ts > c.lastTs {
		c.lastTs = ts
	}
	hf := &c.half[dir]
	if syn {
		if !hf.init {
			hf.init, hf.next = true, seq
		}
		if !hf.synSeen {
			hf.synSeen, hf.isn = true, seq-1
		}
		if flags&event.TCPAck != 0 {
			// SYN-ACK: its ack is the peer's ISN+1.
			if o := &c.half[1-dir]; !o.init {
				o.init, o.next = true, h.Ack
			}
		}
	}
	if rst {
		st.SegEmpty.Add(1)
		r.close(c, CloseRST, ts)
		return
	}
	if !hf.init {
		hf.init, hf.next = true, seq // joined mid-stream
	}
	end := seq + uint32(wire)
	if flags&event.TCPFin != 0 && !hf.fin {
		hf.fin, hf.finSeq = true, end
	}
	if hf.fin && seqLT(hf.finSeq, end) {
		keep := 0
		if seqLT(seq, hf.finSeq) {
			keep = int(hf.finSeq - seq)
		}
		st.BeyondFINBytes.Add(uint64(wire - keep))
		wire, end = keep, hf.finSeq
		if len(payload) > keep {
			payload = payload[:keep]
		}
	}
	if wire == 0 {
		st.SegEmpty.Add(1)
	} else {
		r.add(c, dir, seq, end, payload, ts, gapAfter)
	}
	r.checkFIN(c, ts)
}

// reused reports whether a client SYN at data sequence seq starts a new
// connection on a tracked key (port reuse after a close we did not see).
func (r *Reassembler) reused(hf *half, seq uint32) bool {
	if !hf.init {
		return false
	}
	if hf.synSeen {
		return seq-1 != hf.isn
	}
	// Joined mid-stream: a SYN just behind the stream is a stale copy.
	return !(seqLE(seq, hf.next) && hf.next-seq < 1<<20)
}

// add handles payload bytes [s, e) of direction dir; d holds the captured
// prefix (len(d) ≤ e-s).
func (r *Reassembler) add(c *conn, dir event.Direction, s, e uint32, d []byte, ts uint64, gapAfter bool) {
	st := &r.stats
	hf := &c.half[dir]
	if hf.resync {
		hf.resync = false
		if seqLT(hf.next, s) && hf.held == nil {
			hf.next = s // after damage the gap was already declared
		}
	}
	for {
		if seqLE(e, hf.next) {
			st.SegDuplicate.Add(1)
			return
		}
		if seqLT(s, hf.next) {
			st.SegOverlap.Add(1)
			k := int(hf.next - s)
			if k >= len(d) {
				d = nil
			} else {
				d = d[k:]
			}
			s = hf.next
		}
		if s == hf.next {
			st.SegInOrder.Add(1)
			r.deliver(c, dir, s, e, d, ts, gapAfter)
			return
		}
		// Ahead of the expected sequence: hold a copy of the new bytes.
		n, pieces := holdCost(hf.held, s, e, d)
		if pieces == 0 {
			r.insert(c, dir, s, e, d, ts, false) // only compares the overlaps
			st.SegDuplicate.Add(1)
			return
		}
		if hf.heldBytes+n <= r.cfg.MaxHoldBytes &&
			hf.heldSegs+pieces <= r.cfg.MaxHoldSegments &&
			r.heldTotal+n+pieces*segOverhead <= r.cfg.MaxShardHoldBytes {
			r.insert(c, dir, s, e, d, ts, gapAfter)
			st.SegHeld.Add(1)
			return
		}
		// A cap is reached: stop waiting for the missing bytes.
		st.HoldCapGaps.Add(1)
		r.gap(c, dir, ts)
		if hf.held == nil {
			hf.next = s
		} else {
			hf.next = hf.held.seq
			r.drain(c, dir)
		}
	}
}

// holdCost returns the captured bytes and the number of pieces of [s, e)
// not already covered by held segments.
func holdCost(held *seg, s, e uint32, d []byte) (n, pieces int) {
	cur := s
	for h := held; h != nil && seqLT(cur, e); h = h.next {
		if seqLE(h.end, cur) {
			continue
		}
		if seqLE(e, h.seq) {
			break
		}
		if seqLT(cur, h.seq) {
			part, _ := capturedIn(d, s, cur, h.seq)
			n += len(part)
			pieces++
		}
		cur = h.end
	}
	if seqLT(cur, e) {
		part, _ := capturedIn(d, s, cur, e)
		n += len(part)
		pieces++
	}
	return n, pieces
}

// insert adds the parts of [s, e) not covered by held segments to the held
// list, comparing the covered parts with what is held (the first copy wins).
func (r *Reassembler) insert(c *conn, dir event.Direction, s, e uint32, d []byte, ts uint64, gapAfter bool) {
	hf := &c.half[dir]
	var prev *seg
	h := hf.held
	cur := s
	conflict := 0
	for seqLT(cur, e) {
		for h != nil && seqLE(h.end, cur) {
			prev, h = h, h.next
		}
		if h == nil || seqLE(e, h.seq) {
			n := r.newSeg(d, s, cur, e, ts)
			n.gapAfter = gapAfter
			r.link(c, dir, prev, n)
			break
		}
		if seqLT(cur, h.seq) {
			n := r.newSeg(d, s, cur, h.seq, ts)
			r.link(c, dir, prev, n)
			prev = n
			cur = h.seq
		}
		oe := seqMin(e, h.end)
		conflict += differing(d, s, h, cur, oe)
		cur = oe
		prev, h = h, h.next
	}
	r.countConflict(conflict)
}

func (r *Reassembler) countConflict(n int) {
	if n > 0 {
		r.stats.OverlapConflict.Add(1)
		r.stats.ConflictBytes.Add(uint64(n))
	}
}

// differing counts the bytes in [a, b) captured both in d (at base) and in h
// that differ.
func differing(d []byte, base uint32, h *seg, a, b uint32) int {
	x, _ := capturedIn(d, base, a, b)
	y, _ := capturedIn(h.data, h.seq, a, b)
	k := min(len(x), len(y))
	x, y = x[:k], y[:k]
	if bytes.Equal(x, y) {
		return 0
	}
	n := 0
	for i := range x {
		if x[i] != y[i] {
			n++
		}
	}
	return n
}

func (r *Reassembler) newSeg(d []byte, base, a, b uint32, ts uint64) *seg {
	n := r.freeSegs
	if n != nil {
		r.freeSegs = n.next
		r.nFreeSegs--
		n.next = nil
	} else {
		n = new(seg)
	}
	n.seq, n.end, n.ts, n.gapAfter = a, b, ts, false
	if part, _ := capturedIn(d, base, a, b); len(part) > 0 {
		n.data = r.bufs.get(len(part))
		copy(n.data, part)
	}
	return n
}

func (r *Reassembler) link(c *conn, dir event.Direction, prev, n *seg) {
	hf := &c.half[dir]
	if prev == nil {
		n.next = hf.held
		hf.held = n
	} else {
		n.next = prev.next
		prev.next = n
	}
	hf.heldBytes += len(n.data)
	hf.heldSegs++
	r.heldTotal += len(n.data) + segOverhead
	r.stats.BytesHeld.Add(int64(len(n.data)))
}

// unlinkHead removes and returns the first held segment of hf.
func (r *Reassembler) unlinkHead(hf *half) *seg {
	n := hf.held
	hf.held = n.next
	n.next = nil
	hf.heldBytes -= len(n.data)
	hf.heldSegs--
	r.heldTotal -= len(n.data) + segOverhead
	r.stats.BytesHeld.Add(-int64(len(n.data)))
	return n
}

func (r *Reassembler) freeSeg(n *seg) {
	r.bufs.put(n.data)
	n.data = nil
	if r.nFreeSegs < maxFreeSegs {
		n.next = r.freeSegs
		r.freeSegs = n
		r.nFreeSegs++
	}
}

// deliver hands [s, e) (s == next) to the handler, interleaving held
// segments that start inside the range (the held copy came first and wins),
// then drains held segments that became contiguous.
func (r *Reassembler) deliver(c *conn, dir event.Direction, s, e uint32, d []byte, ts uint64, gapAfter bool) {
	hf := &c.half[dir]
	base := s
	for {
		lim := e
		h := hf.held
		if h != nil && seqLT(h.seq, e) {
			lim = h.seq
		}
		r.emit(c, dir, d, base, s, lim, ts)
		if lim == e {
			if gapAfter {
				r.stats.TruncationGaps.Add(1)
				r.gap(c, dir, ts)
			}
			break
		}
		r.countConflict(differing(d, base, h, h.seq, seqMin(e, h.end)))
		n := r.unlinkHead(hf)
		r.emitHeld(c, dir, n, n.seq)
		if seqLE(e, hf.next) {
			break
		}
		s = hf.next
	}
	r.drain(c, dir)
}

// emit delivers the captured bytes of d (at base) in [a, b), a Gap if the
// range runs past them, and sets next to b.
func (r *Reassembler) emit(c *conn, dir event.Direction, d []byte, base, a, b uint32, ts uint64) {
	part, short := capturedIn(d, base, a, b)
	r.data(c, dir, part, ts)
	if short {
		r.stats.TruncationGaps.Add(1)
		r.gap(c, dir, ts)
	}
	c.half[dir].next = b
}

// emitHeld delivers the held segment n from sequence a and frees it.
func (r *Reassembler) emitHeld(c *conn, dir event.Direction, n *seg, a uint32) {
	r.emit(c, dir, n.data, n.seq, a, n.end, n.ts)
	if n.gapAfter {
		r.stats.TruncationGaps.Add(1)
		r.gap(c, dir, n.ts)
	}
	r.freeSeg(n)
}

// drain delivers held segments that are now contiguous with next.
func (r *Reassembler) drain(c *conn, dir event.Direction) {
	hf := &c.half[dir]
	for hf.held != nil && seqLE(hf.held.seq, hf.next) {
		n := r.unlinkHead(hf)
		if seqLT(hf.next, n.end) {
			r.emitHeld(c, dir, n, hf.next)
		} else {
			r.freeSeg(n)
		}
	}
}

// flushHeld gives up on every hole of dir: Gap, then the held data, until
// nothing is held.
func (r *Reassembler) flushHeld(c *conn, dir event.Direction, ts uint64) {
	hf := &c.half[dir]
	for hf.held != nil {
		r.stats.FlushGaps.Add(1)
		r.gap(c, dir, ts)
		hf.next = hf.held.seq
		r.drain(c, dir)
	}
}

func (r *Reassembler) data(c *conn, dir event.Direction, b []byte, ts uint64) {
	if len(b) == 0 {
		return
	}
	hf := &c.half[dir]
	hf.lastGap = false
	if !hf.data {
		hf.data = true
		if !c.confirmed && !c.closing && c.half[1-dir].data {
			r.confirm(c)
		}
	}
	r.stats.BytesDelivered.Add(uint64(len(b)))
	c.h.Data(dir, b, ts)
}

// confirm moves c from the unconfirmed table to the confirmed one.
func (r *Reassembler) confirm(c *conn) {
	c.prev.next, c.next.prev = c.next, c.prev
	c.confirmed = true
	r.nUnconf--
	r.link2(&r.lru, c)
	r.stats.ConnsConfirmed.Add(1)
	r.stats.ConnsUnconfirmedTracked.Add(-1)
}

// link2 puts c at the front (most recently used) of the list of sentinel l.
func (r *Reassembler) link2(l, c *conn) {
	c.prev, c.next = l, l.next
	l.next.prev = c
	l.next = c
}

// list returns the sentinel of c's table.
func (r *Reassembler) list(c *conn) *conn {
	if c.confirmed {
		return &r.lru
	}
	return &r.ulru
}

// gap calls Handler.Gap unless the last call for dir already was a Gap.
func (r *Reassembler) gap(c *conn, dir event.Direction, ts uint64) {
	hf := &c.half[dir]
	if hf.lastGap {
		return
	}
	hf.lastGap = true
	r.stats.Gaps.Add(1)
	c.h.Gap(dir, ts)
}

func (r *Reassembler) checkFIN(c *conn, ts uint64) {
	for i := range c.half {
		hf := &c.half[i]
		if hf.fin && !hf.done && seqLE(hf.finSeq, hf.next) {
			hf.done = true
		}
	}
	if c.half[0].done && c.half[1].done {
		r.close(c, CloseFIN, ts)
	}
}

// Damage marks a tracked connection damaged (segments of it were dropped
// before reaching the reassembler): each direction gives up its holes, gets
// a Gap, and resynchronises on its next segment.
func (r *Reassembler) Damage(key Key, tsNs uint64) {
	c := r.conns[key]
	if c == nil {
		return
	}
	r.damage(c, tsNs)
}

func (r *Reassembler) damage(c *conn, ts uint64) {
	r.stats.DamagedConns.Add(1)
	for dir := event.Request; dir <= event.Response; dir++ {
		r.flushHeld(c, dir, ts)
		r.gap(c, dir, ts)
		c.half[dir].resync = true
	}
}

// DamageAll marks every tracked connection damaged.
func (r *Reassembler) DamageAll(tsNs uint64) {
	// The confirmed first: damaging an unconfirmed connection may deliver
	// held bytes that confirm it, moving it to the front of lru.
	for c := r.lru.next; c != &r.lru; c = c.next {
		r.damage(c, tsNs)
	}
	var next *conn
	for c := r.ulru.next; c != &r.ulru; c = next {
		next = c.next
		r.damage(c, tsNs)
	}
}

// Expire closes connections idle since before nowNs-IdleTimeout (capture
// clock), with CloseIdle, or CloseFIN when a FIN was seen.
func (r *Reassembler) Expire(nowNs uint64) {
	for _, l := range [...]*conn{&r.ulru, &r.lru} {
		for c := l.prev; c != l; c = l.prev {
			if c.lastTs > nowNs || nowNs-c.lastTs < r.idleNs {
				break
			}
			reason := CloseIdle
			if c.half[0].fin || c.half[1].fin {
				reason = CloseFIN
			}
			r.close(c, reason, nowNs)
		}
	}
}

// Tick runs the idle sweep at wall time now. While segments arrive the
// capture clock is used; when none has arrived since the previous Tick, the
// capture clock is extrapolated by the wall time elapsed since it last moved.
func (r *Reassembler) Tick(now time.Time) {
	est := r.maxTs
	if r.anchorWall.IsZero() || r.maxTs != r.anchorTs {
		r.anchorTs, r.anchorWall = r.maxTs, now
	} else if el := now.Sub(r.anchorWall); el > 0 {
		est = r.anchorTs + uint64(el)
	}
	r.Expire(est)
}

// CloseAll closes every tracked connection with reason (held data is
// flushed after a Gap first).
func (r *Reassembler) CloseAll(reason CloseReason, tsNs uint64) {
	for _, l := range [...]*conn{&r.ulru, &r.lru} {
		for c := l.next; c != l; c = l.next {
			r.close(c, reason, tsNs)
		}
	}
}

func (r *Reassembler) open(key Key, ts uint64, midStream bool) *conn {
	switch {
	case r.nUnconf > 0 && (r.nUnconf >= r.cfg.MaxUnconfirmed || len(r.conns) >= r.cfg.MaxConns):
		r.stats.EvictedUnconfirmed.Add(1)
		r.close(r.ulru.prev, CloseEvicted, ts)
	case len(r.conns) >= r.cfg.MaxConns:
		r.close(r.lru.prev, CloseEvicted, ts)
	}
	c := r.freeConns
	if c != nil {
		r.freeConns = c.next
		*c = conn{}
	} else {
		c = new(conn)
	}
	c.key = key
	c.lastTs = ts
	c.h = r.factory(key, ts, midStream)
	if c.h == nil {
		c.h = nopHandler{}
	}
	r.conns[key] = c
	r.link2(&r.ulru, c)
	r.nUnconf++
	r.stats.ConnsOpened.Add(1)
	r.stats.ConnsTracked.Add(1)
	r.stats.ConnsUnconfirmedTracked.Add(1)
	if midStream {
		r.stats.ConnsMidStream.Add(1)
	}
	return c
}

func (r *Reassembler) touch(c *conn) {
	l := r.list(c)
	if l.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	r.link2(l, c)
}

func (r *Reassembler) close(c *conn, reason CloseReason, ts uint64) {
	c.closing = true
	r.flushHeld(c, event.Request, ts)
	r.flushHeld(c, event.Response, ts)
	c.h.Close(reason, ts)
	st := &r.stats
	switch reason {
	case CloseFIN:
		st.ClosedFIN.Add(1)
	case CloseRST:
		st.ClosedRST.Add(1)
	case CloseIdle:
		st.ClosedIdle.Add(1)
	case CloseEvicted:
		st.ClosedEvicted.Add(1)
	default:
		st.ClosedShutdown.Add(1)
	}
	st.ConnsTracked.Add(-1)
	if !c.confirmed {
		r.nUnconf--
		st.ConnsUnconfirmedTracked.Add(-1)
	}
	delete(r.conns, c.key)
	c.prev.next, c.next.prev = c.next, c.prev
	*c = conn{next: r.freeConns}
	r.freeConns = c
}

type nopHandler struct{}

func (nopHandler) Data(event.Direction, []byte, uint64) {}
func (nopHandler) Gap(event.Direction, uint64)          {}
func (nopHandler) Close(CloseReason, uint64)            {}
