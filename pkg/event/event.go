// Package event defines what every capture source hands to the rest of the data
// path: one inner TCP segment of a mirrored flow, decoded from its VXLAN wrapper
// (by the XDP program in bpf/, or by the Go decoder in pkg/decap), with a fixed
// header and the captured payload. It also names the per-packet capture outcomes
// that the BPF program and the Go decoder both count.
//
// The binary layout of Header matches struct event_hdr in bpf/shadowtap.h byte
// for byte; Decode reads it without allocating.
package event

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// HeaderSize is the size in bytes of the fixed event header (struct event_hdr).
const HeaderSize = 64

// Address families, as in the header's Family field.
const (
	FamilyIPv4 uint8 = 4
	FamilyIPv6 uint8 = 6
)

// Direction of a segment relative to the mirrored service.
type Direction uint8

const (
	// Request: client to served port (destination port is in the service-port map).
	Request Direction = 0
	// Response: served port to client (source port is in the service-port map).
	Response Direction = 1
)

func (d Direction) String() string {
	if d == Response {
		return "response"
	}
	return "request"
}

// Header flag bits.
const (
	// FlagTruncated: the IP header says more bytes were sent than arrived; the
	// mirror cut the packet. Payload holds only CapLen bytes of WireLen.
	FlagTruncated uint8 = 1 << 0
)

// TCP flag bits, as in the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
)

// Header is the fixed part of an event. Addresses are 16 bytes; IPv4 addresses
// occupy the first 4 bytes and the rest is zero.
//
// Layout (little-endian host order, as written by the BPF program):
//
//	0  ts_ns    u64  monotonic capture time (bpf_ktime_get_ns or equivalent)
//	8  saddr    [16]u8
//	24 daddr    [16]u8
//	40 vni      u32
//	44 seq      u32
//	48 ack      u32
//	52 sport    u16 (host order)
//	54 dport    u16 (host order)
//	56 cap_len  u16  payload bytes that follow the header
//	58 wire_len u16  payload bytes the IP header says the segment carried
//	60 family   u8
//	61 tcp_flags u8
//	62 direction u8
//	63 flags    u8
type Header struct {
	TimeNs    uint64
	SrcAddr   [16]byte
	DstAddr   [16]byte
	VNI       uint32
	Seq       uint32
	Ack       uint32
	SrcPort   uint16
	DstPort   uint16
	CapLen    uint16
	WireLen   uint16
	Family    uint8
	TCPFlags  uint8
	Direction Direction
	Flags     uint8
}

// Truncated reports whether the mirror cut this segment.
func (h *Header) Truncated() bool { return h.Flags&FlagTruncated != 0 }

// Src returns the source address.
func (h *Header) Src() netip.Addr { return addr(h.Family, &h.SrcAddr) }

// Dst returns the destination address.
func (h *Header) Dst() netip.Addr { return addr(h.Family, &h.DstAddr) }

func addr(family uint8, a *[16]byte) netip.Addr {
	if family == FamilyIPv4 {
		return netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]})
	}
	return netip.AddrFrom16(*a)
}

// ErrShort is returned by Decode when the record is smaller than its header says.
var ErrShort = errors.New("event: record shorter than header or payload length")

// Decode parses a raw ring-buffer record into h and returns the payload, a
// sub-slice of rec (not copied). It does not allocate.
func Decode(rec []byte, h *Header) (payload []byte, err error) {
	if len(rec) < HeaderSize {
		return nil, ErrShort
	}
	le := binary.LittleEndian
	h.TimeNs = le.Uint64(rec[0:])
	copy(h.SrcAddr[:], rec[8:24])
	copy(h.DstAddr[:], rec[24:40])
	h.VNI = le.Uint32(rec[40:])
	h.Seq = le.Uint32(rec[44:])
	h.Ack = le.Uint32(rec[48:])
	h.SrcPort = le.Uint16(rec[52:])
	h.DstPort = le.Uint16(rec[54:])
	h.CapLen = le.Uint16(rec[56:])
	h.WireLen = le.Uint16(rec[58:])
	h.Family = rec[60]
	h.TCPFlags = rec[61]
	h.Direction = Direction(rec[62])
	h.Flags = rec[63]
	end := HeaderSize + int(h.CapLen)
	if len(rec) < end {
		return nil, ErrShort
	}
	return rec[HeaderSize:end], nil
}

// Encode appends the binary form of h followed by payload to dst. h.CapLen
// must equal len(payload). Used by the Go capture sources and tests so that
// every source produces the same records as the BPF program.
func Encode(dst []byte, h *Header, payload []byte) []byte {
	var b [HeaderSize]byte
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.TimeNs)
	copy(b[8:24], h.SrcAddr[:])
	copy(b[24:40], h.DstAddr[:])
	le.PutUint32(b[40:], h.VNI)
	le.PutUint32(b[44:], h.Seq)
	le.PutUint32(b[48:], h.Ack)
	le.PutUint16(b[52:], h.SrcPort)
	le.PutUint16(b[54:], h.DstPort)
	le.PutUint16(b[56:], h.CapLen)
	le.PutUint16(b[58:], h.WireLen)
	b[60] = h.Family
	b[61] = h.TCPFlags
	b[62] = uint8(h.Direction)
	b[63] = h.Flags
	dst = append(dst, b[:]...)
	return append(dst, payload...)
}

// Sink receives decoded segments from a capture source. The payload is only
// valid during the call: a Sink that keeps it must copy it. Segment must not
// block; a stage that cannot keep up drops and counts.
type Sink interface {
	Segment(h *Header, payload []byte)
}

// Batcher is a Sink that buffers: Flush hands on what is buffered. A source
// calls Flush when it has nothing more pending (the ring is empty, a socket
// read returned fewer messages than asked), so latency stays bounded at low
// rates while batches stay large at high rates.
type Batcher interface {
	Sink
	Flush()
}
