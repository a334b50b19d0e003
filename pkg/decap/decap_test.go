package decap_test

import (
	"bytes"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv/frames"
)

func tableDecoder() *decap.Decoder {
	c := frames.Config()
	return decap.New(decap.Config{Ports: c.Ports, VNIs: c.VNIs, Sources: c.Sources, VXLANPort: c.VXLANPort})
}

func checkVector(t *testing.T, v frames.Vector, p []byte, o event.Outcome, h *event.Header) {
	t.Helper()
	if o != v.Outcome {
		t.Fatalf("outcome %v, want %v", o, v.Outcome)
	}
	if v.Event == nil {
		if p != nil {
			t.Errorf("payload %d bytes for a non-emit outcome", len(p))
		}
		return
	}
	got, want := *h, *v.Event
	got.TimeNs, want.TimeNs = 0, 0
	if got != want {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
	if !bytes.Equal(p, v.Payload) {
		t.Errorf("payload %d bytes %.40q, want %d bytes %.40q", len(p), p, len(v.Payload), v.Payload)
	}
}

// TestVectorsFrame runs the shared table through the whole-frame decoder:
// the same outcomes, events and payloads as the XDP program.
func TestVectorsFrame(t *testing.T) {
	d := tableDecoder()
	for _, v := range frames.Vectors() {
		t.Run(v.Name, func(t *testing.T) {
			// Poison the header: the decoder must set every field of an event.
			h := event.Header{SrcAddr: [16]byte{15: 0xff}, DstAddr: [16]byte{15: 0xff}, Flags: 0xff, TCPFlags: 0xff}
			p, o := d.Frame(v.Frame, &h)
			checkVector(t, v, p, o, &h)
		})
	}
}

// TestVectorsVXLAN runs the rows a UDP socket would receive through the
// socket-path entry point.
func TestVectorsVXLAN(t *testing.T) {
	d := tableDecoder()
	n := 0
	for _, v := range frames.Vectors() {
		if v.UDPPayload == nil {
			continue
		}
		n++
		t.Run(v.Name, func(t *testing.T) {
			var h event.Header
			p, o := d.VXLAN(v.OuterSrc, v.UDPPayload, &h)
			checkVector(t, v, p, o, &h)
		})
	}
	if n < 30 {
		t.Errorf("only %d socket-path rows", n)
	}
}

func TestConfigVariants(t *testing.T) {
	o := frames.Outer{Src: netip.MustParseAddr("192.0.2.7"), Dst: netip.MustParseAddr("192.0.2.8"), VNI: 999}
	in := frames.Inner{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 80, DstPort: 80, Flags: event.TCPAck, Payload: []byte("x")}
	f, _ := frames.VXLAN(o, in)
	mapped := netip.AddrFrom16(netip.MustParseAddr("192.0.2.7").As16())
	tests := []struct {
		name string
		cfg  decap.Config
		src  netip.Addr // for the VXLAN entry point
		want event.Outcome
	}{
		{"empty allowlists accept any VNI and source", decap.Config{Ports: []uint16{80}}, o.Src, event.Emit},
		{"no ports: nothing served", decap.Config{}, o.Src, event.DropPort},
		{"both ports served: request", decap.Config{Ports: []uint16{80, 81}}, o.Src, event.Emit},
		{"other VXLAN port", decap.Config{Ports: []uint16{80}, VXLANPort: 4790}, o.Src, event.PassNotVXLAN},
		{"source /32", decap.Config{Ports: []uint16{80}, Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}}, mapped, event.Emit},
		{"source unmasked prefix", decap.Config{Ports: []uint16{80}, Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.99/24")}}, o.Src, event.Emit},
		{"source other", decap.Config{Ports: []uint16{80}, Sources: []netip.Prefix{netip.MustParsePrefix("192.0.3.0/24")}}, o.Src, event.PassSource},
		{"vni listed", decap.Config{Ports: []uint16{80}, VNIs: []uint32{999}}, o.Src, event.Emit},
		{"vni not listed", decap.Config{Ports: []uint16{80}, VNIs: []uint32{1}}, o.Src, event.PassVNI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decap.New(tt.cfg)
			var h event.Header
			_, got := d.Frame(f, &h)
			if tt.cfg.VXLANPort == 0 || tt.cfg.VXLANPort == 4789 {
				_, got2 := d.VXLAN(tt.src, frames.UDPPayload(o, in), &h)
				if got2 != tt.want {
					t.Errorf("VXLAN: %v, want %v", got2, tt.want)
				}
			}
			if got != tt.want {
				t.Errorf("Frame: %v, want %v", got, tt.want)
			}
			if got == event.Emit && h.Direction != event.Request {
				t.Errorf("direction %v, want request", h.Direction)
			}
		})
	}
}

func TestCount(t *testing.T) {
	d := tableDecoder()
	var c event.Counters
	var want [event.NumOutcomes]uint64
	var bytesIn, trunc uint64
	vs := frames.Vectors()
	for _, v := range vs {
		var h event.Header
		_, o := d.Frame(v.Frame, &h)
		decap.Count(&c, o, &h, len(v.Frame))
		want[v.Outcome]++
		bytesIn += uint64(len(v.Frame))
		if v.Event != nil && v.Event.Truncated() {
			trunc++
		}
	}
	if c.Outcomes != want || c.Bytes != bytesIn || c.Truncated != trunc || c.Packets() != uint64(len(vs)) {
		t.Errorf("counters %+v, want outcomes %v bytes %d truncated %d", c, want, bytesIn, trunc)
	}
}

func TestNoAllocs(t *testing.T) {
	d := tableDecoder()
	vs := frames.Vectors()
	var h event.Header
	allocs := testing.AllocsPerRun(10, func() {
		for _, v := range vs {
			d.Frame(v.Frame, &h)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per table run, want 0", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range frames.Vectors() {
		f.Add(v.Frame)
	}
	d := decap.New(decap.Config{Ports: []uint16{8080, 80}})
	dt := tableDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range []*decap.Decoder{d, dt} {
			for _, entry := range []func(*event.Header) ([]byte, event.Outcome){
				func(h *event.Header) ([]byte, event.Outcome) { return d.Frame(b, h) },
				func(h *event.Header) ([]byte, event.Outcome) {
					return d.VXLAN(netip.MustParseAddr("10.0.0.1"), b, h)
				},
			} {
				var h event.Header
				p, o := entry(&h)
				if o >= event.LostRingbuf {
					t.Fatalf("outcome %v", o)
				}
				if o != event.Emit {
					if p != nil {
						t.Fatalf("payload for %v", o)
					}
					continue
				}
				if int(h.CapLen) != len(p) || h.CapLen > h.WireLen || h.Truncated() != (h.CapLen < h.WireLen) {
					t.Fatalf("cap %d wire %d payload %d flags %x", h.CapLen, h.WireLen, len(p), h.Flags)
				}
				if len(p) > 0 && !within(p, b) {
					t.Fatal("payload is not a sub-slice of the input")
				}
			}
		}
	})
}

func within(p, b []byte) bool {
	ps, bs := uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return ps >= bs && ps+uintptr(len(p)) <= bs+uintptr(len(b))
}

func BenchmarkFrame(b *testing.B) {
	d := tableDecoder()
	byName := map[string][]byte{}
	for _, v := range frames.Vectors() {
		byName[v.Name] = v.Frame
	}
	for _, name := range []string{"pass_not_vxlan/ipv4-tcp-ssh", "emit/payload-1", "emit/payload-1448", "emit/payload-8948-jumbo", "emit/inner-ipv6-hbh-dstopts", "drop_port/port-not-served"} {
		f := byName[name]
		if f == nil {
			b.Fatalf("no vector %q", name)
		}
		b.Run(name, func(b *testing.B) {
			var h event.Header
			var c event.Counters
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			for b.Loop() {
				_, o := d.Frame(f, &h)
				decap.Count(&c, o, &h, len(f))
			}
		})
	}
}

// TestUnservedPorts checks the sketch of ports that matched no served port,
// the same as the XDP program's (pkg/xdp TestUnservedPorts), also with
// several goroutines decoding at once as the socket source's readers do.
func TestUnservedPorts(t *testing.T) {
	d := decap.New(decap.Config{Ports: []uint16{8080}})
	frame := func(port uint16) []byte {
		f, _ := frames.VXLAN(
			frames.Outer{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 51000, VNI: 1},
			frames.Inner{Src: netip.MustParseAddr("192.168.1.10"), Dst: netip.MustParseAddr("192.168.1.20"),
				SrcPort: 40000, DstPort: port, Seq: 7, Ack: 9, Flags: event.TCPAck, Payload: []byte("x")})
		return f
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var h event.Header
			for range 250 {
				d.Frame(frame(443), &h)
			}
			d.Frame(frame(9443), &h)
			d.Frame(frame(8080), &h) // served: not in the sketch
		})
	}
	wg.Wait()
	got, err := d.UnservedPorts()
	if err != nil {
		t.Fatal(err)
	}
	want := []event.PortCount{{Port: 443, Segments: 1000}, {Port: 9443, Segments: 4}}
	if !slices.Equal(got, want) {
		t.Errorf("UnservedPorts = %v, want %v", got, want)
	}
}
