package flow

import "sync/atomic"

// Stats are the counters of the flow stage. A Reassembler owns one (written by
// its shard goroutine only); the Dispatcher owns one for its own drops and sums
// them all in Dispatcher.Stats. All fields may be read from any goroutine.
//
// Every segment handed to a Reassembler ends in exactly one of SegInOrder,
// SegHeld, SegDuplicate, SegEmpty, SegNoConn or SegMalformed, so
//
//	SegmentsIn == SegInOrder + SegHeld + SegDuplicate + SegEmpty + SegNoConn + SegMalformed
//
// (see StatsSnapshot.SegmentsAccounted). Every event handed to a Dispatcher
// either reaches a shard's Reassembler or is counted in QueueFullEvents or
// ShutdownEvents, so after Close
//
//	EventsIn == SegmentsIn + QueueFullEvents + ShutdownEvents
//
// (see StatsSnapshot.EventsAccounted).
//
// For connections, ConnsTracked == ConnsOpened - (sum of Closed*).
type Stats struct {
	// Dispatcher.
	EventsIn          atomic.Uint64 // events passed to Dispatcher.Segment
	QueueFullEvents   atomic.Uint64 // events dropped because a shard queue was full
	QueueFullBatches  atomic.Uint64 // batches dropped because a shard queue was full
	DamageOverflow    atomic.Uint64 // a shard's damaged-flow list overflowed: all its connections got a Gap
	BatchesDispatched atomic.Uint64 // batches handed to shards
	ShutdownEvents    atomic.Uint64 // events queued to a shard that had stopped (ctx cancelled)

	// Segment outcomes (exactly one per segment).
	SegmentsIn   atomic.Uint64
	SegInOrder   atomic.Uint64 // carried new bytes at the expected seq: delivered without copying
	SegHeld      atomic.Uint64 // carried new bytes ahead of the expected seq: copied and held
	SegDuplicate atomic.Uint64 // carried no new bytes (all delivered or held already)
	SegEmpty     atomic.Uint64 // no payload (ACK, SYN, FIN, RST) on a tracked connection
	SegNoConn    atomic.Uint64 // no payload and no SYN for an untracked connection: ignored
	SegMalformed atomic.Uint64 // invalid header (direction out of range)

	// Segment properties (not exclusive).
	SegOverlap      atomic.Uint64 // partly new, partly already seen: trimmed
	SegTruncated    atomic.Uint64 // flagged truncated, or captured fewer bytes than sent
	OverlapConflict atomic.Uint64 // segments whose overlapping bytes differed from the first copy
	ConflictBytes   atomic.Uint64 // overlapping bytes that differed (the first copy was kept)

	// Bytes and gaps.
	BytesDelivered atomic.Uint64 // bytes passed to Handler.Data
	BytesHeld      atomic.Int64  // gauge: out-of-order bytes held now
	Gaps           atomic.Uint64 // Handler.Gap calls
	HoldCapGaps    atomic.Uint64 // gave up waiting for missing bytes: a hold cap was reached
	FlushGaps      atomic.Uint64 // held data flushed after a gap at close or damage
	TruncationGaps atomic.Uint64 // gaps declared for truncated segments
	DamagedConns   atomic.Uint64 // tracked connections marked damaged by a queue-full drop
	BeyondFINBytes atomic.Uint64 // payload bytes after a direction's FIN: discarded
	ReusedConns    atomic.Uint64 // a SYN with a new ISN replaced a tracked connection

	// Connections.
	ConnsTracked   atomic.Int64 // gauge
	ConnsOpened    atomic.Uint64
	ConnsMidStream atomic.Uint64 // opened without a SYN
	ClosedFIN      atomic.Uint64
	ClosedRST      atomic.Uint64
	ClosedIdle     atomic.Uint64
	ClosedEvicted  atomic.Uint64 // evicted by the MaxConns or MaxUnconfirmed cap (LRU)
	ClosedShutdown atomic.Uint64

	// Unconfirmed connections (see Reassembler): ConnsOpened counts them
	// all as they open unconfirmed.
	ConnsUnconfirmedTracked atomic.Int64  // gauge: tracked connections not yet confirmed
	ConnsConfirmed          atomic.Uint64 // connections confirmed: payload delivered both ways
	EvictedUnconfirmed      atomic.Uint64 // of ClosedEvicted, unconfirmed connections (the rest were confirmed)
}

// StatsSnapshot is a plain copy of Stats.
type StatsSnapshot struct {
	EventsIn, QueueFullEvents, QueueFullBatches, DamageOverflow, BatchesDispatched, ShutdownEvents uint64

	SegmentsIn, SegInOrder, SegHeld, SegDuplicate, SegEmpty, SegNoConn, SegMalformed uint64

	SegOverlap, SegTruncated, OverlapConflict, ConflictBytes uint64

	BytesDelivered                                                                          uint64
	BytesHeld                                                                               int64
	Gaps, HoldCapGaps, FlushGaps, TruncationGaps, DamagedConns, BeyondFINBytes, ReusedConns uint64

	ConnsTracked                                                    int64
	ConnsOpened, ConnsMidStream                                     uint64
	ClosedFIN, ClosedRST, ClosedIdle, ClosedEvicted, ClosedShutdown uint64

	ConnsUnconfirmedTracked            int64
	ConnsConfirmed, EvictedUnconfirmed uint64
}

// Snapshot returns the current values.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		EventsIn: s.EventsIn.Load(), QueueFullEvents: s.QueueFullEvents.Load(),
		QueueFullBatches: s.QueueFullBatches.Load(), DamageOverflow: s.DamageOverflow.Load(),
		BatchesDispatched: s.BatchesDispatched.Load(), ShutdownEvents: s.ShutdownEvents.Load(),

		SegmentsIn: s.SegmentsIn.Load(), SegInOrder: s.SegInOrder.Load(), SegHeld: s.SegHeld.Load(),
		SegDuplicate: s.SegDuplicate.Load(), SegEmpty: s.SegEmpty.Load(), SegNoConn: s.SegNoConn.Load(),
		SegMalformed: s.SegMalformed.Load(),

		SegOverlap: s.SegOverlap.Load(), SegTruncated: s.SegTruncated.Load(),
		OverlapConflict: s.OverlapConflict.Load(), ConflictBytes: s.ConflictBytes.Load(),

		BytesDelivered: s.BytesDelivered.Load(), BytesHeld: s.BytesHeld.Load(),
		Gaps: s.Gaps.Load(), HoldCapGaps: s.HoldCapGaps.Load(), FlushGaps: s.FlushGaps.Load(),
		TruncationGaps: s.TruncationGaps.Load(), DamagedConns: s.DamagedConns.Load(),
		BeyondFINBytes: s.BeyondFINBytes.Load(), ReusedConns: s.ReusedConns.Load(),

		ConnsTracked: s.ConnsTracked.Load(), ConnsOpened: s.ConnsOpened.Load(),
		ConnsMidStream: s.ConnsMidStream.Load(),
		ClosedFIN:      s.ClosedFIN.Load(), ClosedRST: s.ClosedRST.Load(), ClosedIdle: s.ClosedIdle.Load(),
		ClosedEvicted: s.ClosedEvicted.Load(), ClosedShutdown: s.ClosedShutdown.Load(),

		ConnsUnconfirmedTracked: s.ConnsUnconfirmedTracked.Load(), ConnsConfirmed: s.ConnsConfirmed.Load(),
		EvictedUnconfirmed: s.EvictedUnconfirmed.Load(),
	}
}

// Add adds o to s field by field (gauges too: the sum over shards).
func (s *StatsSnapshot) Add(o StatsSnapshot) {
	s.EventsIn += o.EventsIn
	s.QueueFullEvents += o.QueueFullEvents
	s.QueueFullBatches += o.QueueFullBatches
	s.DamageOverflow += o.DamageOverflow
	s.BatchesDispatched += o.BatchesDispatched
	s.ShutdownEvents += o.ShutdownEvents
	s.SegmentsIn += o.SegmentsIn
	s.SegInOrder += o.SegInOrder
	s.SegHeld += o.SegHeld
	s.SegDuplicate += o.SegDuplicate
	s.SegEmpty += o.SegEmpty
	s.SegNoConn += o.SegNoConn
	s.SegMalformed += o.SegMalformed
	s.SegOverlap += o.SegOverlap
	s.SegTruncated += o.SegTruncated
	s.OverlapConflict += o.OverlapConflict
	s.ConflictBytes += o.ConflictBytes
	s.BytesDelivered += o.BytesDelivered
	s.BytesHeld += o.BytesHeld
	s.Gaps += o.Gaps
	s.HoldCapGaps += o.HoldCapGaps
	s.FlushGaps += o.FlushGaps
	s.TruncationGaps += o.TruncationGaps
	s.DamagedConns += o.DamagedConns
	s.BeyondFINBytes += o.BeyondFINBytes
	s.ReusedConns += o.ReusedConns
	s.ConnsTracked += o.ConnsTracked
	s.ConnsOpened += o.ConnsOpened
	s.ConnsMidStream += o.ConnsMidStream
	s.ClosedFIN += o.ClosedFIN
	s.ClosedRST += o.ClosedRST
	s.ClosedIdle += o.ClosedIdle
	s.ClosedEvicted += o.ClosedEvicted
	s.ClosedShutdown += o.ClosedShutdown
	s.ConnsUnconfirmedTracked += o.ConnsUnconfirmedTracked
	s.ConnsConfirmed += o.ConnsConfirmed
	s.EvictedUnconfirmed += o.EvictedUnconfirmed
}

// SegmentsAccounted is the sum of the exclusive segment outcomes; it equals
// SegmentsIn.
func (s *StatsSnapshot) SegmentsAccounted() uint64 {
	return s.SegInOrder + s.SegHeld + s.SegDuplicate + s.SegEmpty + s.SegNoConn + s.SegMalformed
}

// EventsAccounted is what became of the Dispatcher's events; after Close it
// equals EventsIn.
func (s *StatsSnapshot) EventsAccounted() uint64 {
	return s.SegmentsIn + s.QueueFullEvents + s.ShutdownEvents
}

// Closed is the number of connections closed for any reason.
func (s *StatsSnapshot) Closed() uint64 {
	return s.ClosedFIN + s.ClosedRST + s.ClosedIdle + s.ClosedEvicted + s.ClosedShutdown
}
