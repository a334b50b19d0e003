package mirrorgen

import (
	"errors"
	"net/netip"
)

// FrameCap is the capacity a buffer needs for any frame SegmentFrame
// writes.
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
