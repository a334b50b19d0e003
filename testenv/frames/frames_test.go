package frames

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// TestBuilderDecodes checks that gopacket reads back what the builder wrote,
// layer by layer, with the fields the vectors rely on.
func TestBuilderDecodes(t *testing.T) {
	tests := []struct {
		name  string
		outer Outer
		inner Inner
	}{
		{"v4-in-v4", outerV4(), request([]byte(httpGet))},
		{"v6-in-v6", outerV6(), request6([]byte(httpGet))},
		{"outer-vlan-2-options", Outer{VLANs: []uint16{10, 20}, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), IPv4Options: []byte{0x94, 4, 0, 0}, VNI: 0xabcdef}, request(Pattern(5))},
		{"inner-vlan-ext", outerV4(), func() Inner {
			in := request6(Pattern(10))
			in.VLANs = []uint16{7}
			in.Ext = []ExtHeader{{Type: HopByHop}, {Type: DestOptions, Len: 1}}
			return in
		}()},
		{"jumbo", outerV4(), request(Pattern(8948))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, l := VXLAN(tt.outer, tt.inner)
			if l.End != len(f) {
				t.Fatalf("layout end %d, frame %d", l.End, len(f))
			}
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("decode error: %v", el.Error())
			}
			vx, ok := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if !ok {
				t.Fatalf("no VXLAN layer in %v", p)
			}
			if !vx.ValidIDFlag || vx.VNI != tt.outer.VNI {
				t.Errorf("VXLAN flag %v VNI %d, want true %d", vx.ValidIDFlag, vx.VNI, tt.outer.VNI)
			}
			var tcp *layers.TCP
			for _, ly := range p.Layers() {
				if x, ok := ly.(*layers.TCP); ok {
					tcp = x
				}
			}
			if tcp == nil {
				t.Fatalf("no inner TCP in %v", p)
			}
			if uint16(tcp.SrcPort) != tt.inner.SrcPort || uint16(tcp.DstPort) != tt.inner.DstPort || tcp.Seq != tt.inner.Seq || tcp.Ack != tt.inner.Ack {
				t.Errorf("TCP %d->%d seq %d ack %d, want %+v", tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack, tt.inner)
			}
			if !bytes.Equal(tcp.Payload, tt.inner.Payload) {
				t.Errorf("payload %d bytes, want %d", len(tcp.Payload), len(tt.inner.Payload))
			}
			if !bytes.Equal(f[l.Payload:], tt.inner.Payload) {
				t.Errorf("Layout.Payload offset %d wrong", l.Payload)
			}
			if got := f[l.L4]; got != byte(tt.inner.SrcPort>>8) {
				t.Errorf("Layout.L4 offset %d wrong", l.L4)
			}
			if !bytes.Equal(UDPPayload(tt.outer, tt.inner), f[l.VXLAN:]) {
				t.Error("UDPPayload differs from the frame after the UDP header")
			}
		})
	}
}

func TestBuilderFragmentsAndTruncation(t *testing.T) {
	in := request(Pattern(100))
	in.Frag = &Fragment{Offset: 3, More: true, ID: 5}
	f, _ := Ethernet(in)
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.FragOffset != 3 || ip.Flags&layers.IPv4MoreFragments == 0 || ip.Id != 5 {
		t.Errorf("IPv4 fragment fields: off %d flags %v id %d", ip.FragOffset, ip.Flags, ip.Id)
	}

	in6 := request6(Pattern(100))
	in6.Frag = &Fragment{Offset: 7, ID: 6}
	f, _ = Ethernet(in6)
	p = gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	fr, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
	if !ok || fr.FragmentOffset != 7 || fr.MoreFragments || fr.Identification != 6 {
		t.Errorf("IPv6 fragment header: %+v", fr)
	}

	tr := request(Pattern(100))
	tr.ExtraIPLen = 50
	f, l := Ethernet(tr)
	if got := int(f[l.InnerIP+2])<<8 | int(f[l.InnerIP+3]); got != 20+32+150 {
		t.Errorf("truncated IPv4 total length %d, want %d", got, 20+32+150)
	}
	if len(f) != l.Payload+100 {
		t.Errorf("truncated frame holds %d payload bytes, want 100", len(f)-l.Payload)
	}
}

func TestCut(t *testing.T) {
	f := []byte{1, 2, 3, 4}
	for _, tt := range []struct{ n, want int }{{-1, 0}, {0, 0}, {2, 2}, {9, 4}} {
		c := Cut(f, tt.n)
		if len(c) != tt.want {
			t.Errorf("Cut(%d) len %d, want %d", tt.n, len(c), tt.want)
		}
		if len(c) > 0 {
			c[0] = 99
			if f[0] != 1 {
				t.Fatal("Cut aliases its input")
			}
		}
	}
}

// TestVectorsConsistent checks the table's own invariants, which consumers
// (the BPF test and the Go decoder test) rely on.
func TestVectorsConsistent(t *testing.T) {
	vs := Vectors()
	if len(vs) < 30 {
		t.Errorf("%d vectors, want at least 30", len(vs))
	}
	names := map[string]bool{}
	seen := map[event.Outcome]int{}
	for _, v := range vs {
		if names[v.Name] {
			t.Errorf("duplicate name %q", v.Name)
		}
		names[v.Name] = true
		seen[v.Outcome]++
		pass := v.Outcome == event.PassNotVXLAN || v.Outcome == event.PassVNI || v.Outcome == event.PassSource
		if pass != (v.Verdict == Pass) {
			t.Errorf("%s: verdict %v for outcome %v", v.Name, v.Verdict, v.Outcome)
		}
		if (v.Outcome == event.Emit) != (v.Event != nil) {
			t.Errorf("%s: outcome %v with event %v", v.Name, v.Outcome, v.Event)
		}
		if v.Event != nil {
			if int(v.Event.CapLen) != len(v.Payload) {
				t.Errorf("%s: cap_len %d, payload %d", v.Name, v.Event.CapLen, len(v.Payload))
			}
			if (v.Event.CapLen < v.Event.WireLen) != v.Event.Truncated() {
				t.Errorf("%s: cap %d wire %d truncated %v", v.Name, v.Event.CapLen, v.Event.WireLen, v.Event.Truncated())
			}
			if v.Event.CapLen > 0 && !bytes.HasSuffix(v.Frame, v.Payload) && !bytes.Contains(v.Frame, v.Payload) {
				t.Errorf("%s: payload not in frame", v.Name)
			}
		}
		if v.UDPPayload != nil && !bytes.HasSuffix(v.Frame, v.UDPPayload) {
			t.Errorf("%s: UDPPayload is not the tail of the frame", v.Name)
		}
		if v.UDPPayload != nil && !v.OuterSrc.IsValid() {
			t.Errorf("%s: UDPPayload without OuterSrc", v.Name)
		}
	}
	for o := event.Outcome(0); o < event.LostRingbuf; o++ {
		if seen[o] == 0 {
			t.Errorf("no vector with outcome %v", o)
		}
	}
	var maxLen int
	for _, v := range vs {
		maxLen = max(maxLen, len(v.Frame))
	}
	if maxLen < 9000 {
		t.Errorf("largest frame %d bytes, want a jumbo frame above 9000", maxLen)
	}
}
