package flow

import (
	"net/netip"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// Key identifies one mirrored TCP connection. Client is the side whose
// destination port is served (the request direction), Server the served side.
// Key is comparable and used as a map key.
type Key struct {
	VNI    uint32
	Client netip.AddrPort
	Server netip.AddrPort
}

// KeyOf returns the connection key of a segment, oriented by its direction.
func KeyOf(h *event.Header) Key {
	src := netip.AddrPortFrom(h.Src(), h.SrcPort)
	dst := netip.AddrPortFrom(h.Dst(), h.DstPort)
	if h.Direction == event.Response {
		return Key{VNI: h.VNI, Client: dst, Server: src}
	}
	return Key{VNI: h.VNI, Client: src, Server: dst}
}

// CloseReason says why a connection's handler was closed.
type CloseReason uint8

const (
	CloseFIN      CloseReason = iota // both directions finished, or one side FIN and the other idle
	CloseRST                         // a reset was seen
	CloseIdle                        // no segment for the idle timeout
	CloseEvicted                     // evicted to make room (connection-count cap, LRU)
	CloseShutdown                    // the pipeline is stopping
)

func (r CloseReason) String() string {
	switch r {
	case CloseFIN:
		return "fin"
	case CloseRST:
		return "rst"
	case CloseIdle:
		return "idle"
	case CloseEvicted:
		return "evicted"
	default:
		return "shutdown"
	}
}

// Handler consumes the reassembled byte streams of one connection. The
// reassembler calls it from one goroutine (the connection's shard), in order.
type Handler interface {
	// Data delivers the next in-order bytes of one direction. b is only valid
	// during the call. tsNs is the capture time of the segment that carried them.
	Data(dir event.Direction, b []byte, tsNs uint64)
	// Gap says bytes are missing in dir before the next Data: lost by the
	// mirror, truncated, or dropped by a full queue. The handler must drop the
	// message that spans the gap and resynchronise.
	Gap(dir event.Direction, tsNs uint64)
	// Close ends the connection; no call follows.
	Close(reason CloseReason, tsNs uint64)
}

// HandlerFactory makes the handler of a newly tracked connection. midStream
// is true when the connection was joined without seeing its SYN.
type HandlerFactory func(key Key, tsNs uint64, midStream bool) Handler
