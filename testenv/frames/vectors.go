package frames

import (
	"net/netip"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// Verdict is what the XDP program returns for a frame. The values are the
// kernel's XDP action codes, so a BPF_PROG_TEST_RUN retval compares directly.
type Verdict uint32

const (
	// Drop (XDP_DROP): an accepted mirror packet, copied or counted, then dropped.
	Drop Verdict = 1
	// Pass (XDP_PASS): anything that is not an accepted mirror packet.
	Pass Verdict = 2
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "XDP_DROP"
	case Pass:
		return "XDP_PASS"
	}
	return "XDP_?"
}

// TableConfig is the receiver configuration Vectors assumes.
type TableConfig struct {
	Ports     []uint16       // service ports
	VNIs      []uint32       // VNI allowlist
	Sources   []netip.Prefix // outer-source allowlist
	VXLANPort uint16
}

// Config returns the configuration the vector table assumes.
func Config() TableConfig {
	return TableConfig{
		Ports:     []uint16{8080},
		VNIs:      []uint32{42, 43},
		Sources:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		VXLANPort: 4789,
	}
}

// Vector is one row of the shared test table: a whole outer frame and what
// every capture path must make of it.
type Vector struct {
	Name    string
	Frame   []byte
	Verdict Verdict
	Outcome event.Outcome
	// Event is the expected event header (TimeNs ignored); nil when the
	// outcome is not Emit.
	Event *event.Header
	// Payload is the expected event payload (len == Event.CapLen).
	Payload []byte

	// OuterSrc and UDPPayload are what a UDP socket on the VXLAN port would
	// see for this frame: the outer source address and the datagram's
	// payload (VXLAN header onwards). UDPPayload is nil when the frame would
	// not reach such a socket (not UDP to the VXLAN port, cut before the
	// UDP payload, an outer fragment), so socket-path tests skip those rows.
	OuterSrc   netip.Addr
	UDPPayload []byte
}

const (
	// VNI is the allowed VNI most rows use.
	VNI uint32 = 42
	// ClientPort and ServerPort are the inner TCP ports of the mirrored flow.
	ClientPort uint16 = 40000
	ServerPort uint16 = 8080
)

func outerV4() Outer {
	return Outer{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 51000, VNI: VNI}
}

func outerV6() Outer {
	return Outer{Src: netip.MustParseAddr("fd00::1:2:3"), Dst: netip.MustParseAddr("fd00::9:9:9"), SrcPort: 51001, VNI: VNI}
}

var (
	client4 = netip.MustParseAddr("192.168.1.10")
	server4 = netip.MustParseAddr("192.168.1.20")
	client6 = netip.MustParseAddr("2001:db8::10")
	server6 = netip.MustParseAddr("2001:db8::20")
)

const (
	httpGet  = "GET /index.html HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: t\r\n\r\n"
	httpResp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
)

// request returns an inner IPv4 request segment carrying payload.
func request(payload []byte) Inner {
	return Inner{
		Src: client4, Dst: server4, SrcPort: ClientPort, DstPort: ServerPort,
		Seq: 1000, Ack: 5000, Flags: event.TCPAck | event.TCPPsh,
		TCPOptions: TSOption(111, 222), Payload: payload,
	}
}

func request6(payload []byte) Inner {
	in := request(payload)
	in.Src, in.Dst = client6, server6
	return in
}

func response(payload []byte) Inner {
	return Inner{
		Src: server4, Dst: client4, SrcPort: ServerPort, DstPort: ClientPort,
		Seq: 0xfffffff0, Ack: 1000 + uint32(len(httpGet)), Flags: event.TCPAck | event.TCPPsh,
		TCPOptions: TSOption(333, 111), Payload: payload,
	}
}

// expect computes the event a receiver must emit for in inside o, from the
// builder's inputs (not by parsing the frame).
func expect(o Outer, in Inner, dir event.Direction) (*event.Header, []byte) {
	h := &event.Header{
		VNI: o.VNI, Seq: in.Seq, Ack: in.Ack, SrcPort: in.SrcPort, DstPort: in.DstPort,
		CapLen: uint16(len(in.Payload)), WireLen: uint16(len(in.Payload) + in.ExtraIPLen),
		TCPFlags: in.Flags, Direction: dir,
	}
	if in.Src.Is4() {
		h.Family = event.FamilyIPv4
		s, d := in.Src.As4(), in.Dst.As4()
		copy(h.SrcAddr[:], s[:])
		copy(h.DstAddr[:], d[:])
	} else {
		h.Family = event.FamilyIPv6
		h.SrcAddr, h.DstAddr = in.Src.As16(), in.Dst.As16()
	}
	if in.ExtraIPLen > 0 {
		h.Flags |= event.FlagTruncated
	}
	return h, append([]byte{}, in.Payload...)
}

func emit(name string, o Outer, in Inner, dir event.Direction) Vector {
	f, _ := VXLAN(o, in)
	h, p := expect(o, in, dir)
	return withSocket(Vector{Name: "emit/" + name, Frame: f, Verdict: Drop, Outcome: event.Emit, Event: h, Payload: p}, o, f)
}

// other builds a non-emit row for a mirror frame.
func other(name string, o Outer, in Inner, out event.Outcome) Vector {
	f, _ := VXLAN(o, in)
	if out == event.PassNotVXLAN { // the host stack would not deliver it to a VXLAN socket
		return noEvent(name, f, out)
	}
	return withSocket(noEvent(name, f, out), o, f)
}

func noEvent(name string, f []byte, out event.Outcome) Vector {
	v := Vector{Name: out.String() + "/" + name, Frame: f, Outcome: out, Verdict: Drop}
	if out == event.PassNotVXLAN || out == event.PassVNI || out == event.PassSource {
		v.Verdict = Pass
	}
	return v
}

// withSocket fills the socket-path fields when f is a whole outer frame of o
// (UDP to the VXLAN port, not an outer fragment) long enough to hold the UDP
// header.
func withSocket(v Vector, o Outer, f []byte) Vector {
	_, l := VXLANRaw(o, nil)
	if o.Frag != nil || (o.DstPort != 0 && o.DstPort != 4789) || len(f) < l.VXLAN {
		return v
	}
	v.OuterSrc = o.Src
	v.UDPPayload = f[l.VXLAN:]
	return v
}

// cut builds a row for frame f of o cut at n bytes.
func cut(name string, o Outer, f []byte, n int, out event.Outcome) Vector {
	c := Cut(f, n)
	v := noEvent(name, c, out)
	if out != event.PassNotVXLAN {
		v = withSocket(v, o, c)
	}
	return v
}

// Vectors returns the shared frame table. Each call builds fresh slices, so
// callers may modify what they get.
func Vectors() []Vector {
	get := []byte(httpGet)
	var v []Vector
	add := func(x ...Vector) { v = append(v, x...) }

	// Accepted segments.
	add(emit("request/ipv4", outerV4(), request(get), event.Request))
	add(emit("response/ipv4", outerV4(), response([]byte(httpResp)), event.Response))
	add(emit("request/inner-ipv6", outerV4(), request6(get), event.Request))
	{
		in := response([]byte(httpResp))
		in.Src, in.Dst = server6, client6
		add(emit("response/inner-ipv6", outerV4(), in, event.Response))
	}
	add(emit("outer-ipv6", outerV6(), request(get), event.Request))
	add(emit("outer-ipv6/inner-ipv6", outerV6(), request6(get), event.Request))
	{
		o := outerV4()
		o.VLANs = []uint16{100}
		add(emit("outer-vlan-1", o, request(get), event.Request))
		o.VLANs = []uint16{100, 200}
		add(emit("outer-vlan-2", o, request(get), event.Request))
	}
	{
		o := outerV4()
		o.IPv4Options = []byte{0x94, 0x04, 0, 0, 1, 1, 1, 0} // router alert, NOPs, EOL: IHL 7
		add(emit("outer-ipv4-options", o, request(get), event.Request))
	}
	{
		o := outerV4()
		o.VNI = 43
		add(emit("vni-43", o, request(get), event.Request))
	}
	{
		in := request(get)
		in.VLANs = []uint16{7}
		add(emit("inner-vlan", outerV4(), in, event.Request))
		in.VLANs = []uint16{7, 8}
		add(emit("inner-vlan-2", outerV4(), in, event.Request))
	}
	{
		in := request(get)
		in.IPv4Options = []byte{1, 1, 1, 0} // NOPs, EOL: IHL 6
		add(emit("inner-ipv4-options", outerV4(), in, event.Request))
	}
	{
		in := request6(get)
		in.Ext = []ExtHeader{{Type: HopByHop}, {Type: DestOptions, Len: 1}}
		add(emit("inner-ipv6-hbh-dstopts", outerV4(), in, event.Request))
		in.Ext = []ExtHeader{{Type: HopByHop}, {Type: DestOptions}, {Type: Routing, Len: 2}, {Type: DestOptions}}
		add(emit("inner-ipv6-4-ext-headers", outerV4(), in, event.Request))
	}
	{
		in := response([]byte(httpResp))
		in.TCPOptions = append(TSOption(444, 555), SACKOption([2]uint32{2000, 3000}, [2]uint32{4000, 5000})...)
		add(emit("tcp-ts-sack", outerV4(), in, event.Response))
	}
	{
		in := request(nil)
		in.Flags, in.Ack = event.TCPSyn, 0
		in.TCPOptions = append(MSSOption(8961), TSOption(1, 0)...)
		add(emit("syn", outerV4(), in, event.Request))
		sa := response(nil)
		sa.Flags = event.TCPSyn | event.TCPAck
		sa.TCPOptions = in.TCPOptions
		add(emit("syn-ack", outerV4(), sa, event.Response))
		fin := request(nil)
		fin.Flags = event.TCPFin | event.TCPAck
		add(emit("fin", outerV4(), fin, event.Request))
		rst := response(nil)
		rst.Flags, rst.TCPOptions = event.TCPRst, nil
		add(emit("rst", outerV4(), rst, event.Response))
		ack := request(nil)
		ack.Flags = event.TCPAck
		add(emit("pure-ack", outerV4(), ack, event.Request))
		// A 54-byte inner frame padded to the Ethernet minimum: the padding is not payload.
		pad := request(nil)
		pad.Flags, pad.TCPOptions, pad.Pad = event.TCPAck, nil, 6
		add(emit("inner-ethernet-padding", outerV4(), pad, event.Request))
	}
	add(emit("payload-1", outerV4(), request(Pattern(1)), event.Request))
	add(emit("payload-1448", outerV4(), request(Pattern(1448)), event.Request))
	add(emit("payload-8948-jumbo", outerV4(), request(Pattern(8948)), event.Request))
	add(emit("payload-8948-jumbo/ipv6", outerV6(), request6(Pattern(8928)), event.Request))
	{
		in := request(Pattern(200))
		in.ExtraIPLen = 1248 // 1448 sent, 200 arrived
		add(emit("truncated/ipv4", outerV4(), in, event.Request))
		in = request6(Pattern(200))
		in.ExtraIPLen = 8748
		add(emit("truncated/ipv6", outerV4(), in, event.Request))
		// Cut inside the payload: the same thing seen as a short frame.
		in = request(Pattern(300))
		f, l := VXLAN(outerV4(), in)
		c := Cut(f, l.Payload+120)
		in.Payload, in.ExtraIPLen = in.Payload[:120], 180
		h, p := expect(outerV4(), in, event.Request)
		add(withSocket(Vector{Name: "emit/truncated/cut-in-payload", Frame: c, Verdict: Drop, Outcome: event.Emit, Event: h, Payload: p}, outerV4(), c))
	}

	// Not mirror traffic: passed untouched.
	{
		ssh := Inner{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 50022, DstPort: 22, Seq: 1, Ack: 1, Flags: event.TCPAck | event.TCPPsh, Payload: []byte("SSH-2.0-OpenSSH_9.2\r\n")}
		f, _ := Ethernet(ssh)
		add(noEvent("ipv4-tcp-ssh", f, event.PassNotVXLAN))
		ssh.Src, ssh.Dst = netip.MustParseAddr("fd00::1:2:3"), netip.MustParseAddr("fd00::9:9:9")
		f, _ = Ethernet(ssh)
		add(noEvent("ipv6-tcp-ssh", f, event.PassNotVXLAN))
		f, _ = Ethernet(Inner{L4: ARP, Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), Pad: 18})
		add(noEvent("arp", f, event.PassNotVXLAN))
		hc := Inner{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 40000, DstPort: 4789, Flags: event.TCPSyn}
		f, _ = Ethernet(hc)
		add(noEvent("tcp-to-4789", f, event.PassNotVXLAN))
		hc.Src, hc.Dst = netip.MustParseAddr("fd00::1:2:3"), netip.MustParseAddr("fd00::9:9:9")
		hc.L4, hc.DstPort = ICMPv6, 0
		f, _ = Ethernet(hc)
		add(noEvent("ipv6-icmp", f, event.PassNotVXLAN))
	}
	{
		o := outerV4()
		o.DstPort = 8472 // Linux's old VXLAN port: another tunnel on this host
		add(other("udp-other-port", o, request(get), event.PassNotVXLAN))
		o = outerV6()
		o.DstPort = 53
		add(other("udp-other-port/ipv6", o, request(get), event.PassNotVXLAN))
		o = outerV4()
		o.VLANs = []uint16{1, 2, 3}
		add(other("outer-3-vlan-tags", o, request(get), event.PassNotVXLAN))
		o = outerV4()
		o.Frag = &Fragment{More: true, ID: 9}
		add(other("outer-ipv4-fragment-first", o, request(Pattern(1448)), event.PassNotVXLAN))
		o.Frag = &Fragment{Offset: 185, ID: 9}
		add(other("outer-ipv4-fragment-later", o, request(Pattern(64)), event.PassNotVXLAN))
	}
	{
		o := outerV4()
		o.VNI = 7
		add(other("vni-not-allowed", o, request(get), event.PassVNI))
		o = outerV4()
		o.Src = netip.MustParseAddr("192.0.2.1")
		add(other("source-not-allowed/ipv4", o, request(get), event.PassSource))
		o = outerV6()
		o.Src = netip.MustParseAddr("2001:db8:ff::1")
		add(other("source-not-allowed/ipv6", o, request(get), event.PassSource))
		// A source not allowed wins over a broken VXLAN header: passed untouched.
		o = outerV4()
		o.Src, o.NoIFlag = netip.MustParseAddr("192.0.2.1"), true
		add(other("source-not-allowed/no-i-flag", o, request(get), event.PassSource))
	}

	// Mirror traffic that is not a served TCP segment: dropped and counted.
	{
		o := outerV4()
		o.NoIFlag = true
		add(other("vxlan-no-i-flag", o, request(get), event.DropMalformed))
		in := request(Pattern(32))
		in.L4 = UDP
		add(other("inner-udp", outerV4(), in, event.DropNotTCP))
		add(other("inner-arp", outerV4(), Inner{L4: ARP, Src: client4, Dst: server4}, event.DropNotTCP))
		in = request6(nil)
		in.L4 = ICMPv6
		add(other("inner-icmpv6", outerV4(), in, event.DropNotTCP))
		in = request(Pattern(8))
		in.VLANs = []uint16{1, 2, 3}
		add(other("inner-3-vlan-tags", outerV4(), in, event.DropNotTCP))
		in = request(Pattern(1000))
		in.Frag = &Fragment{More: true, ID: 77}
		add(other("inner-ipv4-fragment-mf", outerV4(), in, event.DropFragment))
		in = request(Pattern(1000))
		in.Frag = &Fragment{Offset: 125, ID: 77}
		add(other("inner-ipv4-fragment-offset", outerV4(), in, event.DropFragment))
		in = request6(Pattern(1000))
		in.Frag = &Fragment{Offset: 0, More: true, ID: 78}
		add(other("inner-ipv6-fragment-header", outerV4(), in, event.DropFragment))
		in.Ext = []ExtHeader{{Type: HopByHop}}
		in.Frag = &Fragment{Offset: 100, ID: 78}
		add(other("inner-ipv6-hbh-fragment-header", outerV4(), in, event.DropFragment))
		in = request(get)
		in.DstPort = 9090
		add(other("port-not-served", outerV4(), in, event.DropPort))
		in = request6(get)
		in.DstPort = 9090
		add(other("port-not-served/ipv6", outerV4(), in, event.DropPort))
		in = request6(get)
		in.Ext = []ExtHeader{{Type: HopByHop}, {Type: DestOptions}, {Type: Routing}, {Type: DestOptions}, {Type: DestOptions}}
		add(other("inner-ipv6-5-ext-headers", outerV4(), in, event.DropMalformed))
		in = request(nil)
		in.Flags, in.ExtraIPLen = event.TCPAck, -4 // IP total length shorter than IP+TCP headers
		add(other("inner-ipv4-length-too-small", outerV4(), in, event.DropMalformed))
	}

	// Frames cut short inside each header.
	{
		o := outerV4()
		f, l := VXLAN(o, request(get))
		add(cut("cut/outer-ethernet", o, f, 10, event.PassNotVXLAN))
		add(cut("cut/outer-ipv4", o, f, l.OuterIP+12, event.PassNotVXLAN))
		add(cut("cut/udp", o, f, l.UDP+4, event.PassNotVXLAN))
		add(cut("cut/vxlan", o, f, l.VXLAN+4, event.DropMalformed))
		add(cut("cut/vxlan-no-inner", o, f, l.VXLAN+8, event.DropMalformed))
		add(cut("cut/inner-ethernet", o, f, l.InnerEth+9, event.DropMalformed))
		add(cut("cut/inner-ipv4", o, f, l.InnerIP+15, event.DropMalformed))
		add(cut("cut/tcp", o, f, l.L4+10, event.DropMalformed))
		add(cut("cut/tcp-options", o, f, l.L4+26, event.DropMalformed))

		o.VLANs = []uint16{100, 200}
		f, l = VXLAN(o, request(get))
		add(cut("cut/outer-vlan", o, f, 16, event.PassNotVXLAN))
		o = outerV4()
		o.IPv4Options = []byte{0x94, 0x04, 0, 0}
		f, l = VXLAN(o, request(get))
		add(cut("cut/outer-ipv4-options", o, f, l.OuterIP+22, event.PassNotVXLAN))
		o = outerV6()
		f, l = VXLAN(o, request6(get))
		add(cut("cut/outer-ipv6", o, f, l.OuterIP+30, event.PassNotVXLAN))

		o = outerV4()
		in := request(get)
		in.VLANs = []uint16{7}
		f, l = VXLAN(o, in)
		add(cut("cut/inner-vlan", o, f, l.InnerEth+15, event.DropMalformed))
		in = request6(get)
		f, l = VXLAN(o, in)
		add(cut("cut/inner-ipv6", o, f, l.InnerIP+30, event.DropMalformed))
		in.Ext = []ExtHeader{{Type: HopByHop}, {Type: DestOptions, Len: 1}}
		f, l = VXLAN(o, in)
		add(cut("cut/inner-ipv6-ext-header", o, f, l.InnerIP+40+8+4, event.DropMalformed))
		add(cut("cut/inner-ipv6-ext-header-start", o, f, l.InnerIP+40+8+1, event.DropMalformed))
		in = request(get)
		in.IPv4Options = []byte{1, 1, 1, 0}
		f, l = VXLAN(o, in)
		add(cut("cut/inner-ipv4-options", o, f, l.InnerIP+22, event.DropMalformed))
	}
	return v
}
