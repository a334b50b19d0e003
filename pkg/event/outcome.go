package event

import (
	"cmp"
	"slices"
)

// Outcome is the one counted result of a mirror packet at the capture stage.
// Every packet that reaches a capture source ends in exactly one Outcome. The
// order matches the fields of struct stats in bpf/shadowtap.h, up to
// LostRingbuf; LostSocket is the socket source's own.
type Outcome uint8

const (
	PassNotVXLAN  Outcome = iota // not UDP to the VXLAN port: passed to the host untouched
	PassVNI                      // VXLAN with a VNI that is not allowed: passed
	PassSource                   // VXLAN from an outer source not allowed: passed
	DropMalformed                // a header cut short or invalid inside an accepted VXLAN packet
	DropNotTCP                   // inner packet is not TCP (ARP, UDP, ICMP…)
	DropFragment                 // inner IPv4/IPv6 fragment
	DropPort                     // TCP but neither port is served
	Emit                         // event handed on
	LostRingbuf                  // event could not be handed on (ring buffer or queue full)
	LostSocket                   // socket source: the kernel dropped the datagram, its socket buffer was full
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{
	"pass_not_vxlan", "pass_vni", "pass_source", "drop_malformed", "drop_not_tcp",
	"drop_fragment", "drop_port", "emit", "lost_ringbuf", "lost_socket",
}

// String returns the counter name, as bpftool prints it.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Counters mirrors struct stats in bpf/shadowtap.h: one counter per Outcome,
// plus Truncated (events flagged truncated) and Bytes (bytes of packets seen).
type Counters struct {
	Outcomes  [NumOutcomes]uint64
	Truncated uint64
	Bytes     uint64
}

// Packets is the sum over all outcomes: every packet that was seen.
func (c *Counters) Packets() uint64 {
	var n uint64
	for _, v := range c.Outcomes {
		n += v
	}
	return n
}

// Add adds o to c.
func (c *Counters) Add(o *Counters) {
	for i := range c.Outcomes {
		c.Outcomes[i] += o.Outcomes[i]
	}
	c.Truncated += o.Truncated
	c.Bytes += o.Bytes
}

// PortCount is a TCP port seen in mirrored segments that matched no served
// port (--ports), with how many segments carried it.
type PortCount struct {
	Port     uint16
	Segments uint64
}

// UnservedPorter is a capture source that keeps a small sketch of the ports
// of segments dropped as drop_port, most seen first: shadowtap names them
// when --ports matches nothing.
type UnservedPorter interface {
	UnservedPorts() ([]PortCount, error)
}

// UnservedSlots is the size of the sketch (UNSERVED_SLOTS in bpf/shadowtap.h):
// slot = port % UnservedSlots, the last port seen in a slot owns it.
const UnservedSlots = 64

// SortPortCounts sorts most seen first, then by port.
func SortPortCounts(p []PortCount) {
	slices.SortFunc(p, func(a, b PortCount) int {
		if a.Segments != b.Segments {
			return cmp.Compare(b.Segments, a.Segments)
		}
		return cmp.Compare(a.Port, b.Port)
	})
}
