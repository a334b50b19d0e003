// Package flow is the pipeline stage after capture: it spreads segments over
// shards by flow hash, tracks connections and reassembles each direction's
// byte stream (reordering, duplicates, overlaps, wraparound, gaps), and hands
// in-order bytes to a Handler per connection (pkg/httpx).
package flow
