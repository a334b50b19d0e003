// Package decap is the Go twin of the XDP program's parser: it takes a mirror
// packet (a whole outer Ethernet frame from a pcap file, or the payload of a
// UDP datagram received on the VXLAN port), strips VXLAN, and decodes the
// inner TCP segment into an event.Header and its payload. It sits at the
// capture stage of the data path, in the socket and pcap sources
// (pkg/capture), before the reader hands segments to the flow shards.
//
// Its semantics are exactly those of bpf/ and are pinned down, step by step,
// in the package doc of testenv/frames; the table frames.Vectors is the test
// both implementations pass. Every call ends in one event.Outcome; Count adds
// it to an event.Counters with the same names the BPF program uses.
//
// A Decoder is immutable after New and safe for concurrent use; decoding
// allocates nothing.
package decap

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// Config selects the mirror packets to accept. Empty VNIs or Sources mean
// any; empty Ports means no port is served (every TCP segment is drop_port).
type Config struct {
	Ports     []uint16       // service ports: dst served = request, src served = response
	VNIs      []uint32       // VNI allowlist
	Sources   []netip.Prefix // outer source allowlist
	VXLANPort uint16         // 0 means 4789
}

// DefaultVXLANPort is the IANA VXLAN port AWS mirror sessions send to.
const DefaultVXLANPort = 4789

// Decoder decodes mirror packets. Create it with New.
type Decoder struct {
	ports     [65536 / 64]uint64
	vnis      map[uint32]struct{}
	sources   []netip.Prefix
	vxlanPort uint16
	unserved  [event.UnservedSlots]unservedSlot // ports of drop_port segments (see UnservedPorts)
}

// unservedSlot is one slot of the unserved-port sketch: the port packed in
// the high 16 bits of v, the count in the low 48, so one atomic word holds
// both and concurrent readers (socket) never tear them.
type unservedSlot struct{ v atomic.Uint64 }

// noteUnserved records the likely server port (the lower one) of a segment
// that matched no served port.
func (d *Decoder) noteUnserved(sport, dport uint16) {
	port := min(sport, dport)
	s := &d.unserved[int(port)%event.UnservedSlots]
	for {
		old := s.v.Load()
		nv := uint64(port)<<48 | 1
		if uint16(old>>48) == port && old&(1<<48-1) != 0 {
			nv = old + 1
		}
		if s.v.CompareAndSwap(old, nv) {
			return
		}
	}
}

// UnservedPorts returns the ports of segments dropped as drop_port, most
// seen first (a sketch: see event.UnservedPorter).
func (d *Decoder) UnservedPorts() ([]event.PortCount, error) {
	var out []event.PortCount
	for i := range d.unserved {
		v := d.unserved[i].v.Load()
		if n := v & (1<<48 - 1); n > 0 {
			out = append(out, event.PortCount{Port: uint16(v >> 48), Segments: n})
		}
	}
	event.SortPortCounts(out)
	return out, nil
}

// New returns a Decoder for cfg. Prefixes are masked; IPv4-mapped IPv6
// prefixes are not special (outer sources are compared unmapped).
func New(cfg Config) *Decoder {
	d := &Decoder{vxlanPort: cfg.VXLANPort}
	if d.vxlanPort == 0 {
		d.vxlanPort = DefaultVXLANPort
	}
	for _, p := range cfg.Ports {
		d.ports[p/64] |= 1 << (p % 64)
	}
	if len(cfg.VNIs) > 0 {
		d.vnis = make(map[uint32]struct{}, len(cfg.VNIs))
		for _, v := range cfg.VNIs {
			d.vnis[v&0xffffff] = struct{}{}
		}
	}
	for _, p := range cfg.Sources {
		if p.IsValid() {
			d.sources = append(d.sources, p.Masked())
		}
	}
	return d
}

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherVLAN = 0x8100
	etherQinQ = 0x88a8
	protoTCP  = 6
	protoUDP  = 17
	ethLen    = 14
	vxlanLen  = 8
	maxVLANs  = 2
	maxExt    = 4 // IPv6 extension headers skipped, as the BPF loop bound
)

func (d *Decoder) served(port uint16) bool { return d.ports[port/64]&(1<<(port%64)) != 0 }

func (d *Decoder) sourceAllowed(a netip.Addr) bool {
	if len(d.sources) == 0 {
		return true
	}
	for _, p := range d.sources {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ethernet skips the Ethernet header and up to two VLAN tags. It returns the
// EtherType and the offset of what follows; ok is false when cut short.
func ethernet(b []byte) (etherType uint16, off int, ok bool) {
	if len(b) < ethLen {
		return 0, 0, false
	}
	et := binary.BigEndian.Uint16(b[12:])
	off = ethLen
	for i := 0; i < maxVLANs && (et == etherVLAN || et == etherQinQ); i++ {
		if len(b) < off+4 {
			return 0, 0, false
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	return et, off, true
}

// Frame decodes a whole outer Ethernet frame. On Emit, h is filled (TimeNs is
// left as it was) and payload is a sub-slice of frame holding h.CapLen bytes.
func (d *Decoder) Frame(frame []byte, h *event.Header) (payload []byte, o event.Outcome) {
	et, off, ok := ethernet(frame)
	if !ok {
		return nil, event.PassNotVXLAN
	}
	var src netip.Addr
	b := frame[off:]
	switch et {
	case etherIPv4:
		if len(b) < 20 || b[0]>>4 != 4 {
			return nil, event.PassNotVXLAN
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl || b[9] != protoUDP {
			return nil, event.PassNotVXLAN
		}
		if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 { // MF or offset: outer fragment
			return nil, event.PassNotVXLAN
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		b = b[ihl:]
	case etherIPv6:
		if len(b) < 40 || b[0]>>4 != 6 || b[6] != protoUDP {
			return nil, event.PassNotVXLAN
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		b = b[40:]
	default:
		return nil, event.PassNotVXLAN
	}
	if len(b) < 8 || binary.BigEndian.Uint16(b[2:]) != d.vxlanPort {
		return nil, event.PassNotVXLAN
	}
	return d.VXLAN(src, b[8:], h)
}

// VXLAN decodes the payload of a UDP datagram received on the VXLAN port
// (VXLAN header onwards) sent by src, the outer source address the source
// allowlist is checked against (an IPv4-mapped IPv6 address counts as IPv4).
func (d *Decoder) VXLAN(src netip.Addr, b []byte, h *event.Header) (payload []byte, o event.Outcome) {
	if !d.sourceAllowed(src.Unmap()) {
		return nil, event.PassSource
	}
	if len(b) < vxlanLen || b[0]&0x08 == 0 {
		return nil, event.DropMalformed
	}
	vni := uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	if d.vnis != nil {
		if _, ok := d.vnis[vni]; !ok {
			return nil, event.PassVNI
		}
	}
	b = b[vxlanLen:]
	et, off, ok := ethernet(b)
	if !ok {
		return nil, event.DropMalformed
	}
	b = b[off:]

	var (
		family  uint8
		l4      []byte // from the TCP header to the end of the IP packet or frame
		ipLeft  int    // bytes the IP header says follow the L3 headers
		present int    // bytes present after the L3 headers
	)
	switch et {
	case etherIPv4:
		if len(b) < 20 || b[0]>>4 != 4 {
			return nil, event.DropMalformed
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return nil, event.DropMalformed
		}
		if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			return nil, event.DropFragment
		}
		if b[9] != protoTCP {
			return nil, event.DropNotTCP
		}
		family = event.FamilyIPv4
		clear(h.SrcAddr[4:])
		clear(h.DstAddr[4:])
		copy(h.SrcAddr[:4], b[12:16])
		copy(h.DstAddr[:4], b[16:20])
		ipLeft = int(binary.BigEndian.Uint16(b[2:])) - ihl
		l4 = b[ihl:]
	case etherIPv6:
		if len(b) < 40 || b[0]>>4 != 6 {
			return nil, event.DropMalformed
		}
		next := b[6]
		ipLeft = int(binary.BigEndian.Uint16(b[4:]))
		copy(h.SrcAddr[:], b[8:24])
		copy(h.DstAddr[:], b[24:40])
		off := 40
		for i := 0; ; i++ {
			if next == 44 {
				return nil, event.DropFragment
			}
			if next != 0 && next != 43 && next != 60 {
				break
			}
			if i == maxExt {
				return nil, event.DropMalformed
			}
			if len(b) < off+2 {
				return nil, event.DropMalformed
			}
			n := (int(b[off+1]) + 1) * 8
			if len(b) < off+n {
				return nil, event.DropMalformed
			}
			next = b[off]
			off += n
			ipLeft -= n
		}
		if next != protoTCP {
			return nil, event.DropNotTCP
		}
		family = event.FamilyIPv6
		l4 = b[off:]
	default:
		return nil, event.DropNotTCP
	}

	if len(l4) < 20 {
		return nil, event.DropMalformed
	}
	doff := int(l4[12]>>4) * 4
	if doff < 20 || len(l4) < doff || ipLeft < doff {
		return nil, event.DropMalformed
	}
	sport := binary.BigEndian.Uint16(l4[0:])
	dport := binary.BigEndian.Uint16(l4[2:])
	var dir event.Direction
	switch {
	case d.served(dport):
		dir = event.Request
	case d.served(sport):
		dir = event.Response
	default:
		d.noteUnserved(sport, dport)
		return nil, event.DropPort
	}
	wire := ipLeft - doff
	present = len(l4) - doff
	capLen := min(wire, present)

	h.Family = family
	h.VNI = vni
	h.SrcPort, h.DstPort = sport, dport
	h.Seq = binary.BigEndian.Uint32(l4[4:])
	h.Ack = binary.BigEndian.Uint32(l4[8:])
	h.TCPFlags = l4[13]
	h.Direction = dir
	h.CapLen = uint16(capLen)
	h.WireLen = uint16(wire)
	h.Flags = 0
	if capLen < wire {
		h.Flags = event.FlagTruncated
	}
	return l4[doff : doff+capLen], event.Emit
}

// Count adds one packet of n bytes with outcome o to c; an Emit whose header
// h is flagged truncated also counts in c.Truncated. It is how the Go sources
// keep the same counters as the BPF program.
func Count(c *event.Counters, o event.Outcome, h *event.Header, n int) {
	if o < event.NumOutcomes {
		c.Outcomes[o]++
	}
	c.Bytes += uint64(n)
	if o == event.Emit && h != nil && h.Truncated() {
		c.Truncated++
	}
}
