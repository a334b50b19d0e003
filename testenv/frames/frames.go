package frames

import (
	"encoding/binary"
	"net/netip"
)

// EtherType values used by the builder.
const (
	EtherTypeIPv4   uint16 = 0x0800
	EtherTypeARP    uint16 = 0x0806
	EtherTypeVLAN   uint16 = 0x8100
	EtherTypeQinQ   uint16 = 0x88a8
	EtherTypeIPv6   uint16 = 0x86dd
	vxlanHdrLen            = 8
	udpHdrLen              = 8
	ethHdrLen              = 14
	vlanTagLen             = 4
	ipv4HdrLen             = 20
	ipv6HdrLen             = 40
	tcpHdrLen              = 20
	protoTCP        uint8  = 6
	protoUDP        uint8  = 17
	protoICMPv6     uint8  = 58
	ipv6HopByHop    uint8  = 0
	ipv6Routing     uint8  = 43
	ipv6Fragment    uint8  = 44
	ipv6DestOpts    uint8  = 60
	defaultTTL      uint8  = 64
	defaultWindow          = 65535
	vxlanFlagI      uint8  = 0x08
	defaultVXLANSrc        = 49152
)

// IPv6 extension header types accepted by ExtHeader.Type.
const (
	HopByHop    = ipv6HopByHop
	Routing     = ipv6Routing
	DestOptions = ipv6DestOpts
)

// Default MAC addresses (locally administered).
var (
	macA = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
)

// L4 selects what the inner IP packet carries.
type L4 uint8

const (
	// TCP: a TCP segment (the default).
	TCP L4 = iota
	// UDP: a UDP datagram (SrcPort/DstPort from TCP fields, Payload as data).
	UDP
	// ARP: no IP at all; the inner Ethernet frame carries an ARP request.
	ARP
	// ICMPv6: an IPv6 packet with next header 58 (only with an IPv6 Src).
	ICMPv6
)

// ExtHeader is one IPv6 extension header. Type is HopByHop, Routing or
// DestOptions. Len is the header's length in 8-byte units minus one (the
// wire Hdr Ext Len field); the body is zero-filled PadN-style options, except
// a routing header gets a type-0-free segment list of zeros.
type ExtHeader struct {
	Type uint8
	Len  uint8
}

// Fragment describes an IPv4 fragment (flags/offset field) or an IPv6
// fragment extension header.
type Fragment struct {
	Offset uint16 // in 8-byte units
	More   bool   // MF flag
	ID     uint32
}

// Inner describes the inner Ethernet frame of a mirror packet (or, built
// with Ethernet, a plain frame on the wire).
type Inner struct {
	VLANs    []uint16   // 802.1Q tags, outermost first (at most what the test wants)
	Src, Dst netip.Addr // IPv4 or IPv6 (both the same family); unused for ARP
	L4       L4
	// Ext lists IPv6 extension headers in order, before any fragment header.
	Ext []ExtHeader
	// Frag makes the packet a fragment: IPv4 flags/offset, or an IPv6 fragment
	// header placed after Ext.
	Frag *Fragment
	// IPv4Options are raw IPv4 options, zero-padded to a multiple of 4.
	IPv4Options []byte

	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8  // TCP flags (event.TCPSyn …)
	Window           uint16 // 0 means 65535
	TCPOptions       []byte // raw TCP options (see TSOption, SACKOption), zero-padded to 4

	Payload []byte

	// ExtraIPLen is added to the IP length field (IPv4 total length or IPv6
	// payload length) beyond the bytes actually built: the mirror truncated
	// the packet.
	ExtraIPLen int
	// Pad appends this many zero bytes after the IP packet (Ethernet padding
	// that the IP length does not cover).
	Pad int
}

// Outer describes the VXLAN encapsulation of a mirror packet.
type Outer struct {
	VLANs    []uint16   // 0–2 tags (more builds, for negative tests)
	Src, Dst netip.Addr // IPv4 or IPv6: the mirror source ENI and the target
	// IPv4Options are raw outer IPv4 options (IHL>5), zero-padded to 4.
	IPv4Options []byte
	// Frag makes the outer IPv4 packet a fragment.
	Frag    *Fragment
	SrcPort uint16 // 0 means 49152
	DstPort uint16 // 0 means 4789
	VNI     uint32
	// NoIFlag clears the VXLAN I flag (invalid VXLAN).
	NoIFlag bool
}

// Layout gives the byte offsets of each header in a built frame, so tests can
// cut a frame inside a given header. An offset is -1 when the header is absent.
type Layout struct {
	OuterIP, UDP, VXLAN   int // outer headers (-1 for a plain frame)
	InnerEth, InnerIP, L4 int
	Payload               int // first payload byte
	End                   int // len(frame)
}

// TSOption returns the TCP timestamp option, NOP-NOP aligned (12 bytes).
func TSOption(val, ecr uint32) []byte {
	b := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	return b
}

// SACKOption returns a NOP-NOP aligned SACK option with the given
// (left, right) edge pairs.
func SACKOption(blocks ...[2]uint32) []byte {
	b := []byte{1, 1, 5, byte(2 + 8*len(blocks))}
	for _, bl := range blocks {
		b = binary.BigEndian.AppendUint32(b, bl[0])
		b = binary.BigEndian.AppendUint32(b, bl[1])
	}
	return b
}

// MSSOption returns the TCP MSS option (4 bytes).
func MSSOption(mss uint16) []byte {
	return []byte{2, 4, byte(mss >> 8), byte(mss)}
}

// Pattern returns n deterministic payload bytes (printable, so a failing
// test shows something readable).
func Pattern(n int) []byte {
	b := make([]byte, n)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return b
}

// Cut returns a copy of the first n bytes of frame: a frame cut short at
// offset n (n larger than the frame returns a copy of it whole).
func Cut(frame []byte, n int) []byte {
	if n > len(frame) {
		n = len(frame)
	}
	if n < 0 {
		n = 0
	}
	return append([]byte(nil), frame[:n]...)
}

func pad4(b []byte) []byte {
	out := append([]byte(nil), b...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

func appendEth(b []byte, vlans []uint16, etherType uint16) []byte {
	b = append(b, macB[:]...)
	b = append(b, macA[:]...)
	for i, v := range vlans {
		tpid := EtherTypeVLAN
		if i == 0 && len(vlans) > 1 {
			tpid = EtherTypeQinQ
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v&0x0fff)
	}
	return binary.BigEndian.AppendUint16(b, etherType)
}

// Ethernet builds a plain Ethernet frame carrying in (no VXLAN): the frame as
// the inner part of a mirror packet, or a non-mirror frame on the wire.
func Ethernet(in Inner) ([]byte, Layout) {
	b, l := in.build(nil)
	l.OuterIP, l.UDP, l.VXLAN = -1, -1, -1
	l.End = len(b)
	return b, l
}

// VXLAN builds an outer Ethernet/IP/UDP/VXLAN frame around the inner frame in.
func VXLAN(o Outer, in Inner) ([]byte, Layout) {
	inner, il := in.build(nil)
	b, l := o.wrap(inner)
	base := l.VXLAN + vxlanHdrLen
	l.InnerEth = base
	l.InnerIP = shift(il.InnerIP, base)
	l.L4 = shift(il.L4, base)
	l.Payload = shift(il.Payload, base)
	l.End = len(b)
	return b, l
}

// VXLANRaw wraps an arbitrary inner byte string (possibly empty or cut) in
// outer headers.
func VXLANRaw(o Outer, inner []byte) ([]byte, Layout) {
	b, l := o.wrap(inner)
	l.InnerEth, l.InnerIP, l.L4, l.Payload = l.VXLAN+vxlanHdrLen, -1, -1, -1
	l.End = len(b)
	return b, l
}

// UDPPayload returns the VXLAN header followed by the inner frame: what a UDP
// socket bound to the VXLAN port receives for o and in.
func UDPPayload(o Outer, in Inner) []byte {
	b, l := VXLAN(o, in)
	return b[l.UDP+udpHdrLen:]
}

func shift(off, base int) int {
	if off < 0 {
		return -1
	}
	return off + base
}

func (o Outer) wrap(inner []byte) ([]byte, Layout) {
	l := Layout{InnerIP: -1, L4: -1, Payload: -1}
	v4 := o.Src.Is4()
	et := EtherTypeIPv6
	if v4 {
		et = EtherTypeIPv4
	}
	b := appendEth(make([]byte, 0, 128+len(inner)), o.VLANs, et)
	l.OuterIP = len(b)
	udpLen := udpHdrLen + vxlanHdrLen + len(inner)
	if v4 {
		b = appendIPv4(b, o.Src, o.Dst, protoUDP, pad4(o.IPv4Options), o.Frag, udpLen)
	} else {
		b = appendIPv6Fixed(b, o.Src, o.Dst, protoUDP, udpLen)
	}
	l.UDP = len(b)
	sp, dp := o.SrcPort, o.DstPort
	if sp == 0 {
		sp = defaultVXLANSrc
	}
	if dp == 0 {
		dp = 4789
	}
	b = binary.BigEndian.AppendUint16(b, sp)
	b = binary.BigEndian.AppendUint16(b, dp)
	b = binary.BigEndian.AppendUint16(b, uint16(udpLen))
	b = append(b, 0, 0) // checksum 0: allowed for UDP over IPv4, and ignored by the receiver
	l.VXLAN = len(b)
	flags := vxlanFlagI
	if o.NoIFlag {
		flags = 0
	}
	b = append(b, flags, 0, 0, 0, byte(o.VNI>>16), byte(o.VNI>>8), byte(o.VNI), 0)
	b = append(b, inner...)
	return b, l
}

func appendIPv4(b []byte, src, dst netip.Addr, proto uint8, opts []byte, frag *Fragment, l4Len int) []byte {
	ihl := ipv4HdrLen + len(opts)
	start := len(b)
	b = append(b, byte(0x40|ihl/4), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ihl+l4Len))
	var id, ff uint16
	if frag != nil {
		id = uint16(frag.ID)
		ff = frag.Offset & 0x1fff
		if frag.More {
			ff |= 0x2000
		}
	} else {
		ff = 0x4000 // DF
	}
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, ff)
	b = append(b, defaultTTL, proto, 0, 0)
	s, d := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = append(b, opts...)
	binary.BigEndian.PutUint16(b[start+10:], checksum(b[start:start+ihl]))
	return b
}

func appendIPv6Fixed(b []byte, src, dst netip.Addr, next uint8, payloadLen int) []byte {
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(payloadLen))
	b = append(b, next, defaultTTL)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	return append(b, d[:]...)
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// build appends the inner Ethernet frame to b; offsets are relative to the
// start of the inner frame.
func (in Inner) build(b []byte) ([]byte, Layout) {
	l := Layout{OuterIP: -1, UDP: -1, VXLAN: -1, InnerIP: -1, L4: -1, Payload: -1}
	if in.L4 == ARP {
		b = appendEth(b, in.VLANs, EtherTypeARP)
		l.L4 = len(b)
		// ARP request, Ethernet/IPv4: who has Dst? tell Src.
		b = append(b, 0, 1, 8, 0, 6, 4, 0, 1)
		b = append(b, macA[:]...)
		s, d := addr4(in.Src, 10, 0, 0, 1), addr4(in.Dst, 10, 0, 0, 2)
		b = append(b, s[:]...)
		b = append(b, 0, 0, 0, 0, 0, 0)
		b = append(b, d[:]...)
		l.Payload = len(b)
		return append(b, make([]byte, in.Pad)...), l
	}
	v4 := in.Src.Is4()
	et := EtherTypeIPv6
	if v4 {
		et = EtherTypeIPv4
	}
	b = appendEth(b, in.VLANs, et)
	l.InnerIP = len(b)

	// L4 header and payload first, so IP lengths are known.
	var l4 []byte
	var proto uint8
	switch in.L4 {
	case UDP:
		proto = protoUDP
		l4 = binary.BigEndian.AppendUint16(l4, in.SrcPort)
		l4 = binary.BigEndian.AppendUint16(l4, in.DstPort)
		l4 = binary.BigEndian.AppendUint16(l4, uint16(udpHdrLen+len(in.Payload)))
		l4 = append(l4, 0, 0)
	case ICMPv6:
		proto = protoICMPv6
		l4 = append(l4, 128, 0, 0, 0, 0, 1, 0, 1) // echo request
	default:
		proto = protoTCP
		opts := pad4(in.TCPOptions)
		l4 = binary.BigEndian.AppendUint16(l4, in.SrcPort)
		l4 = binary.BigEndian.AppendUint16(l4, in.DstPort)
		l4 = binary.BigEndian.AppendUint32(l4, in.Seq)
		l4 = binary.BigEndian.AppendUint32(l4, in.Ack)
		l4 = append(l4, byte((tcpHdrLen+len(opts))/4)<<4, in.Flags)
		w := in.Window
		if w == 0 {
			w = defaultWindow
		}
		l4 = binary.BigEndian.AppendUint16(l4, w)
		l4 = append(l4, 0, 0, 0, 0) // checksum, urgent
		l4 = append(l4, opts...)
	}
	l4HdrLen := len(l4)
	l4 = append(l4, in.Payload...)

	if v4 {
		opts := pad4(in.IPv4Options)
		b = appendIPv4(b, in.Src, in.Dst, proto, opts, in.Frag, len(l4)+in.ExtraIPLen)
	} else {
		var ext []byte
		next := proto
		if in.Frag != nil {
			f := []byte{next, 0, 0, 0, 0, 0, 0, 0}
			off := in.Frag.Offset << 3
			if in.Frag.More {
				off |= 1
			}
			binary.BigEndian.PutUint16(f[2:], off)
			binary.BigEndian.PutUint32(f[4:], in.Frag.ID)
			ext = f
			next = ipv6Fragment
		}
		for i := len(in.Ext) - 1; i >= 0; i-- {
			e := in.Ext[i]
			h := make([]byte, (int(e.Len)+1)*8)
			h[0], h[1] = next, e.Len
			if e.Type == ipv6Routing {
				h[2] = 4 // segment routing type; segments left 0 = skip it
			} else {
				h[2], h[3] = 1, byte(len(h)-4) // PadN filling the header
			}
			ext = append(h, ext...)
			next = e.Type
		}
		b = appendIPv6Fixed(b, in.Src, in.Dst, next, len(ext)+len(l4)+in.ExtraIPLen)
		b = append(b, ext...)
	}
	l.L4 = len(b)
	l.Payload = len(b) + l4HdrLen
	b = append(b, l4...)
	return append(b, make([]byte, in.Pad)...), l
}

func addr4(a netip.Addr, d0, d1, d2, d3 byte) [4]byte {
	if a.Is4() {
		return a.As4()
	}
	return [4]byte{d0, d1, d2, d3}
}
