package mirrorgen

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// FrameCap is the capacity a buffer needs for any frame SegmentFrame or
// RawFrame writes.
const FrameCap = frameCap

// TCP flags of a Segment.
const (
	FlagFIN = tcpFin
	FlagSYN = tcpSyn
	FlagPSH = tcpPsh
	FlagACK = tcpAck
)

// Segment is one TCP segment of any flow, for traffic the conversations do
// not make: floods of new flows, half-open connections, bodies that are
// never answered.
type Segment struct {
	Client, Server netip.AddrPort // inner IPv4 addresses
	FromClient     bool
	Flags          uint8
	Seq, Ack       uint32
	Payload        []byte // at most Config.MSS bytes
}

// SegmentFrame writes into buf[:0] (capacity FrameCap) the outer frame
// carrying s, with the generator's outer addresses and VNI and the outer
// UDP source port AWS would pick for the flow, and returns it. Run must
// not be running.
func (g *Generator) SegmentFrame(buf []byte, s Segment) ([]byte, error) {
	if !s.Client.Addr().Is4() || !s.Server.Addr().Is4() {
		return nil, errors.New("mirrorgen: SegmentFrame takes IPv4 flows")
	}
	if len(s.Payload) > g.cfg.MSS {
		return nil, errors.New("mirrorgen: segment payload beyond MSS")
	}
	c := conn{cport: s.Client.Port(), sport: s.Server.Port(), cts: s.Seq, sts: s.Ack}
	ca, sa := s.Client.Addr().As4(), s.Server.Addr().As4()
	copy(c.cip[:], ca[:])
	copy(c.sip[:], sa[:])
	c.udpSrc = flowPort(&c)
	return g.frame(buf[:0], &c, s.FromClient, s.Flags, s.Seq, s.Ack, s.Payload), nil
}

// RawFrame writes into buf[:0] (capacity FrameCap) an outer frame with the
// generator's outer addresses, VNI and the given UDP source port whose
// VXLAN payload is inner (up to Config.MSS+108 bytes), whatever it holds:
// hostile or random bytes from an allowed source.
func (g *Generator) RawFrame(buf []byte, udpSrc uint16, inner []byte) ([]byte, error) {
	if len(inner) > frameCap-innerStart {
		return nil, errors.New("mirrorgen: inner frame too long")
	}
	cfg := &g.cfg
	be := binary.BigEndian
	b := buf[:innerStart+len(inner)]
	copy(b[innerStart:], inner)
	copy(b[0:6], cfg.DstMAC)
	copy(b[6:12], cfg.SrcMAC)
	be.PutUint16(b[12:], 0x0800)
	oip := b[outerEth:]
	oip[0], oip[1] = 0x45, 0
	be.PutUint16(oip[2:], uint16(outerIP+outerUDP+vxlanLen+len(inner)))
	g.ipID++
	be.PutUint16(oip[4:], g.ipID)
	be.PutUint16(oip[6:], 0)
	oip[8], oip[9] = 64, 17
	oip[10], oip[11] = 0, 0
	src, dst := cfg.Source.As4(), cfg.Receiver.As4()
	copy(oip[12:16], src[:])
	copy(oip[16:20], dst[:])
	be.PutUint16(oip[10:], fold(sum(oip[:20])))
	u := oip[outerIP:]
	be.PutUint16(u[0:], udpSrc)
	be.PutUint16(u[2:], cfg.VXLANPort)
	be.PutUint16(u[4:], uint16(outerUDP+vxlanLen+len(inner)))
	u[6], u[7] = 0, 0
	v := u[outerUDP:]
	be.PutUint32(v[0:], 0x08000000)
	be.PutUint32(v[4:], cfg.VNI<<8)
	return b, nil
}
