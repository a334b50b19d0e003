// Package flow is the pipeline stage after capture: it spreads segments over
// shards by flow hash, tracks connections and reassembles each direction's
// byte stream (reordering, duplicates, overlaps, wraparound, gaps), and hands
// in-order bytes to a Handler per connection (pkg/httpx).
//
// A Dispatcher is the event.Batcher a capture source feeds: Segment copies
// each segment into the batch of its shard (a symmetric hash of the
// endpoints, so both directions of a connection meet in one shard) and never
// blocks; a batch that finds its shard's queue full is dropped and counted,
// and the connections in it are marked damaged so the shard gives them a
// Gap on both directions before it processes more of them.
//
// Each shard goroutine owns a Reassembler (no locks). In-order bytes are
// passed to Handler.Data without copying; out-of-order bytes are copied into
// pooled buffers and held up to Config.MaxHoldBytes per direction (and
// Config.MaxShardHoldBytes per shard); when a cap is reached, the connection
// is closed, or it is damaged, the reassembler stops waiting: it calls
// Handler.Gap and goes on with the held bytes. The first copy of a byte wins.
// A truncated segment delivers its captured bytes, then a Gap, and the
// stream continues after the bytes it should have carried. Handler.Data
// never receives a byte that was not sent at that place in the stream.
//
// Every segment ends in exactly one counted outcome (see Stats).
package flow
