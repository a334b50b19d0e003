package mirrorgen

import "encoding/binary"

// TCP flags.
const (
	tcpFin uint8 = 0x01
	tcpSyn uint8 = 0x02
	tcpPsh uint8 = 0x08
	tcpAck uint8 = 0x10
)

// Offsets in an outer frame.
const (
	outerEth   = 14
	outerIP    = 20
	outerUDP   = 8
	vxlanLen   = 8
	innerStart = outerEth + outerIP + outerUDP + vxlanLen // 50
	// OuterHeaderLen is the outer Ethernet + IPv4 + UDP headers that the
	// kernel adds when the VXLAN payload is sent through a UDP socket.
	OuterHeaderLen = outerEth + outerIP + outerUDP
)

// frame writes one outer frame carrying a TCP segment of c into buf[:0] and
// returns it.
func (g *Generator) frame(buf []byte, c *conn, fromClient bool, flags uint8, seq, ack uint32, payload []byte) []byte {
	cfg := &g.cfg
	be := binary.BigEndian
	ipLen := 20
	if c.v6 {
		ipLen = 40
	}
	tcpLen := 32 // with timestamps
	if flags&tcpSyn != 0 {
		tcpLen = 40 // MSS, SACK permitted, timestamps, window scale
	}
	innerLen := 14 + ipLen + tcpLen + len(payload)
	b := buf[:innerStart+innerLen]

	// Inner Ethernet.
	in := b[innerStart:]
	srcIP, dstIP := &c.cip, &c.sip
	srcPort, dstPort := c.cport, c.sport
	tsval, tsecr := &c.cts, c.sts
	if fromClient {
		copy(in[0:6], serverMAC[:])
		copy(in[6:12], clientMAC[:])
	} else {
		copy(in[0:6], clientMAC[:])
		copy(in[6:12], serverMAC[:])
		srcIP, dstIP = dstIP, srcIP
		srcPort, dstPort = dstPort, srcPort
		tsval, tsecr = &c.sts, c.cts
	}
	*tsval++

	// Inner IP.
	ip := in[14:]
	l4len := tcpLen + len(payload)
	var pseudo uint64
	if c.v6 {
		be.PutUint16(in[12:], 0x86DD)
		be.PutUint32(ip[0:], 6<<28)
		be.PutUint16(ip[4:], uint16(l4len))
		ip[6] = 6 // TCP
		ip[7] = 64
		copy(ip[8:24], srcIP[:])
		copy(ip[24:40], dstIP[:])
		pseudo = sum(ip[8:40]) + uint64(l4len) + 6
	} else {
		be.PutUint16(in[12:], 0x0800)
		ip[0] = 0x45
		ip[1] = 0
		be.PutUint16(ip[2:], uint16(20+l4len))
		c.ipID++
		be.PutUint16(ip[4:], c.ipID)
		be.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = 6
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], srcIP[:4])
		copy(ip[16:20], dstIP[:4])
		be.PutUint16(ip[10:], fold(sum(ip[:20])))
		pseudo = sum(ip[12:20]) + uint64(l4len) + 6
	}

	// TCP.
	t := ip[ipLen:]
	be.PutUint16(t[0:], srcPort)
	be.PutUint16(t[2:], dstPort)
	be.PutUint32(t[4:], seq)
	be.PutUint32(t[8:], ack)
	t[12] = uint8(tcpLen/4) << 4
	t[13] = flags
	t[16], t[17] = 0, 0 // checksum
	t[18], t[19] = 0, 0 // urgent
	o := t[20:tcpLen]
	if flags&tcpSyn != 0 {
		be.PutUint16(t[14:], 65535)
		o[0], o[1] = 2, 4 // MSS
		be.PutUint16(o[2:], uint16(cfg.MSS))
		o[4], o[5] = 4, 2 // SACK permitted
		o[6], o[7] = 8, 10
		be.PutUint32(o[8:], *tsval)
		be.PutUint32(o[12:], tsecr)
		o[16] = 1           // NOP
		o[17], o[18] = 3, 3 // window scale
		o[19] = 7
	} else {
		be.PutUint16(t[14:], 502)
		o[0], o[1] = 1, 1 // NOP NOP
		o[2], o[3] = 8, 10
		be.PutUint32(o[4:], *tsval)
		be.PutUint32(o[8:], tsecr)
	}
	copy(t[tcpLen:], payload)
	be.PutUint16(t[16:], fold(pseudo+sum(t[:l4len])))

	// A mirror session's PacketLength cuts the inner frame; the inner IP
	// header still says how long the packet was.
	if cfg.PacketLength > 0 && innerLen > cfg.PacketLength {
		innerLen = cfg.PacketLength
		b = b[:innerStart+innerLen]
	}

	// Outer Ethernet.
	copy(b[0:6], cfg.DstMAC)
	copy(b[6:12], cfg.SrcMAC)
	be.PutUint16(b[12:], 0x0800)
	// Outer IPv4.
	oip := b[outerEth:]
	oip[0] = 0x45
	oip[1] = 0
	be.PutUint16(oip[2:], uint16(outerIP+outerUDP+vxlanLen+innerLen))
	g.ipID++
	be.PutUint16(oip[4:], g.ipID)
	be.PutUint16(oip[6:], 0)
	oip[8] = 64
	oip[9] = 17 // UDP
	oip[10], oip[11] = 0, 0
	src, dst := cfg.Source.As4(), cfg.Receiver.As4()
	copy(oip[12:16], src[:])
	copy(oip[16:20], dst[:])
	be.PutUint16(oip[10:], fold(sum(oip[:20])))
	// Outer UDP, checksum 0 as RFC 7348 recommends.
	u := oip[outerIP:]
	be.PutUint16(u[0:], c.udpSrc)
	be.PutUint16(u[2:], cfg.VXLANPort)
	be.PutUint16(u[4:], uint16(outerUDP+vxlanLen+innerLen))
	u[6], u[7] = 0, 0
	// VXLAN: I flag, VNI.
	v := u[outerUDP:]
	be.PutUint32(v[0:], 0x08000000)
	be.PutUint32(v[4:], cfg.VNI<<8)
	return b
}

// sum adds b as big-endian 16-bit words (a trailing odd byte padded with
// zero) without folding.
func sum(b []byte) uint64 {
	var s uint64
	for len(b) >= 8 {
		x := binary.BigEndian.Uint64(b)
		s += x>>48 + (x>>32)&0xffff + (x>>16)&0xffff + x&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// fold reduces s to the one's-complement checksum.
func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
