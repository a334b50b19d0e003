package event

import "context"

// Source is a capture source: the XDP ring buffer (pkg/xdp), a UDP socket or
// a pcap file (pkg/capture). All feed the same pipeline.
type Source interface {
	// Run delivers segments to sink until ctx is done or the source ends (the
	// end of a pcap file), then returns. It returns an error only for a failure
	// the user must see.
	Run(ctx context.Context, sink Batcher) error
	// Counters returns the capture outcome counters so far.
	Counters() (Counters, error)
}
