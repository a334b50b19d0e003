package mirrorgen

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
)

// TestSegmentFrame: a segment of any flow decodes, through the receiver's
// own decoder, to that flow, direction, sequence numbers, flags and payload.
func TestSegmentFrame(t *testing.T) {
	g, err := New(Config{VNI: 42, Source: netip.MustParseAddr("10.82.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	d := decap.New(decap.Config{Ports: []uint16{8080}, VNIs: []uint32{42}, Sources: []netip.Prefix{netip.MustParsePrefix("10.82.0.1/32")}})
	client, server := netip.MustParseAddrPort("198.18.3.4:1025"), netip.MustParseAddrPort("10.81.240.2:8080")
	tests := []struct {
		name    string
		seg     Segment
		dir     event.Direction
		payload string
	}{
		{"syn", Segment{Client: client, Server: server, FromClient: true, Flags: FlagSYN, Seq: 7}, event.Request, ""},
		{"request bytes", Segment{Client: client, Server: server, FromClient: true, Flags: FlagACK | FlagPSH, Seq: 8, Ack: 99, Payload: []byte("GET / HTTP/1.1\r\n")}, event.Request, "GET / HTTP/1.1\r\n"},
		{"response bytes", Segment{Client: client, Server: server, Flags: FlagACK, Seq: 99, Ack: 24, Payload: []byte("HTTP/1.1 200 OK\r\n")}, event.Response, "HTTP/1.1 200 OK\r\n"},
	}
	buf := make([]byte, 0, FrameCap)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := g.SegmentFrame(buf, tc.seg)
			if err != nil {
				t.Fatal(err)
			}
			var h event.Header
			p, o := d.Frame(f, &h)
			if o != event.Emit {
				t.Fatalf("outcome %v, want emit", o)
			}
			src, dst := tc.seg.Client, tc.seg.Server
			if !tc.seg.FromClient {
				src, dst = dst, src
			}
			if h.Src() != src.Addr() || h.Dst() != dst.Addr() || h.SrcPort != src.Port() || h.DstPort != dst.Port() {
				t.Errorf("flow %v:%d -> %v:%d, want %v -> %v", h.Src(), h.SrcPort, h.Dst(), h.DstPort, src, dst)
			}
			if h.Direction != tc.dir || h.Seq != tc.seg.Seq || h.Ack != tc.seg.Ack || h.TCPFlags != tc.seg.Flags || h.VNI != 42 {
				t.Errorf("header %+v", h)
			}
			if !bytes.Equal(p, []byte(tc.payload)) {
				t.Errorf("payload %q, want %q", p, tc.payload)
			}
		})
	}
	if _, err := g.SegmentFrame(buf, Segment{Client: netip.MustParseAddrPort("[fd00::1]:1"), Server: server}); err == nil {
		t.Error("an IPv6 flow was accepted")
	}
}
