package mirrorgen

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// collect is a Writer that keeps copies of the frames.
type collect struct{ frames [][]byte }

func (c *collect) WriteFrames(frames [][]byte) error {
	for _, f := range frames {
		c.frames = append(c.frames, bytes.Clone(f))
	}
	return nil
}

type flowKey struct{ src, dst netip.AddrPort }

type dirState struct {
	synSeen bool
	next    uint32 // next expected seq
	data    []byte
	fin     bool
}

func TestFramesDecodeAndCarryTheTruth(t *testing.T) {
	all := Mix{Small: 5, Large: 2, Head: 1, Post: 2, Pipelined: 1}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"v4 default", Config{Conns: 4, RequestsPerConn: 5, Mix: all, LargeKiB: 16, VNI: 42}},
		{"jumbo with v6", Config{Conns: 3, TotalConns: 6, RequestsPerConn: 4, Mix: all, MSS: JumboMSS, IPv6Percent: 50, VNI: 7, LargeKiB: 40}},
		{"tiny mss", Config{Conns: 2, RequestsPerConn: 6, Mix: Mix{Post: 1, Pipelined: 1}, MSS: 64, PostBody: 500, Seed: 3}},
		{"all v6", Config{Conns: 2, RequestsPerConn: 3, IPv6Percent: 100, Mix: Mix{Small: 1, Large: 1}}},
		{"pages, lean acks, 1 per conn", Config{Conns: 3, TotalConns: 9, RequestsPerConn: 1, Mix: Mix{Page: 1}, LeanAcks: true}},
		{"pages, lean acks, keep-alive, v6", Config{Conns: 2, RequestsPerConn: 10, Mix: Mix{Page: 1}, LeanAcks: true, IPv6Percent: 50}},
		{"every kind, lean acks", Config{Conns: 3, RequestsPerConn: 6, Mix: Mix{Small: 2, Large: 1, Head: 1, Post: 1, Pipelined: 1, Page: 2}, LargeKiB: 8, LeanAcks: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Truth = true
			cfg.Source = netip.MustParseAddr("192.0.2.9")
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var out collect
			sum, err := g.Run(context.Background(), &out)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Packets != uint64(len(out.frames)) {
				t.Fatalf("summary says %d packets, writer got %d", sum.Packets, len(out.frames))
			}
			truth := g.Truth()
			wantConns := cfg.TotalConns
			if wantConns == 0 {
				wantConns = cfg.Conns
			}
			if len(truth) != wantConns {
				t.Fatalf("truth has %d conversations, want %d", len(truth), wantConns)
			}
			streams := decodeAll(t, out.frames, g.Config())
			var reqs, resps uint64
			for _, conv := range truth {
				if !conv.Closed {
					t.Errorf("%v: not closed", conv.Client)
				}
				up := streams[flowKey{conv.Client, conv.Server}]
				down := streams[flowKey{conv.Server, conv.Client}]
				if up == nil || down == nil {
					t.Fatalf("%v: no frames in one direction", conv.Client)
				}
				if !up.fin || !down.fin {
					t.Errorf("%v: FIN missing", conv.Client)
				}
				if !bytes.Equal(up.data, conv.ToServer) || !bytes.Equal(down.data, conv.ToClient) {
					t.Fatalf("%v: payload streams differ from the truth (%d/%d vs %d/%d bytes)",
						conv.Client, len(up.data), len(down.data), len(conv.ToServer), len(conv.ToClient))
				}
				checkHTTP(t, conv, up.data, down.data)
				reqs += uint64(len(conv.Requests))
				resps += uint64(len(conv.Responses))
			}
			if reqs != sum.Requests || resps != sum.Responses || reqs != sum.RequestsSent || resps != sum.ResponsesSent {
				t.Errorf("summary %d/%d requests/responses, truth %d/%d", sum.Requests, sum.Responses, reqs, resps)
			}
		})
	}
}

// decodeAll checks every frame's headers and rebuilds the payload stream of
// each direction, checking seq and ack.
func decodeAll(t *testing.T, frames [][]byte, cfg Config) map[flowKey]*dirState {
	t.Helper()
	streams := map[flowKey]*dirState{}
	for i, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("frame %d: %v", i, el.Error())
		}
		ls := p.Layers()
		if len(ls) < 7 {
			t.Fatalf("frame %d: %d layers: %v", i, len(ls), ls)
		}
		oip, ok := ls[1].(*layers.IPv4)
		if !ok || oip.SrcIP.String() != cfg.Source.String() || oip.DstIP.String() != cfg.Receiver.String() {
			t.Fatalf("frame %d: outer IP %v", i, ls[1])
		}
		if fold(sum(f[14:34])) != 0 {
			t.Fatalf("frame %d: bad outer IP checksum", i)
		}
		udp := ls[2].(*layers.UDP)
		if udp.DstPort != 4789 || udp.SrcPort < 49152 || int(udp.Length) != len(f)-34 {
			t.Fatalf("frame %d: outer UDP %+v", i, udp)
		}
		vx, ok := ls[3].(*layers.VXLAN)
		if !ok || !vx.ValidIDFlag || vx.VNI != cfg.VNI {
			t.Fatalf("frame %d: VXLAN %+v", i, ls[3])
		}
		var src, dst netip.Addr
		var ipHdr []byte
		switch ip := ls[5].(type) {
		case *layers.IPv4:
			src, dst = netip.AddrFrom4([4]byte(ip.SrcIP.To4())), netip.AddrFrom4([4]byte(ip.DstIP.To4()))
			ipHdr = ip.Contents
			if fold(sum(ipHdr)) != 0 {
				t.Fatalf("frame %d: bad inner IP checksum", i)
			}
		case *layers.IPv6:
			src, dst = netip.AddrFrom16([16]byte(ip.SrcIP)), netip.AddrFrom16([16]byte(ip.DstIP))
		default:
			t.Fatalf("frame %d: inner %T", i, ls[5])
		}
		tcp := ls[6].(*layers.TCP)
		if err := checkTCPSum(src, dst, tcp); err != "" {
			t.Fatalf("frame %d: %s", i, err)
		}
		k := flowKey{netip.AddrPortFrom(src, uint16(tcp.SrcPort)), netip.AddrPortFrom(dst, uint16(tcp.DstPort))}
		rk := flowKey{k.dst, k.src}
		// Both directions share one outer source port.
		d := streams[k]
		if d == nil {
			d = &dirState{}
			streams[k] = d
		}
		if tcp.SYN {
			if d.synSeen {
				t.Fatalf("frame %d: second SYN", i)
			}
			d.synSeen = true
			d.next = tcp.Seq + 1
			if tcp.ACK && streams[rk].next != tcp.Ack {
				t.Fatalf("frame %d: SYN-ACK acks %d, want %d", i, tcp.Ack, streams[rk].next)
			}
			continue
		}
		if !d.synSeen {
			t.Fatalf("frame %d: data before SYN", i)
		}
		if tcp.Seq != d.next {
			t.Fatalf("frame %d: seq %d, want %d", i, tcp.Seq, d.next)
		}
		if !tcp.ACK || tcp.Ack != streams[rk].next {
			t.Fatalf("frame %d: ack %d, want %d", i, tcp.Ack, streams[rk].next)
		}
		if len(tcp.Payload) > cfg.MSS {
			t.Fatalf("frame %d: %d bytes above MSS %d", i, len(tcp.Payload), cfg.MSS)
		}
		d.data = append(d.data, tcp.Payload...)
		d.next += uint32(len(tcp.Payload))
		if tcp.FIN {
			d.fin = true
			d.next++
		}
	}
	return streams
}

func checkTCPSum(src, dst netip.Addr, tcp *layers.TCP) string {
	seg := append(bytes.Clone(tcp.Contents), tcp.Payload...)
	var ps uint64
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		ps = sum(s[:]) + sum(d[:])
	} else {
		s, d := src.As16(), dst.As16()
		ps = sum(s[:]) + sum(d[:])
	}
	ps += uint64(len(seg)) + 6
	if fold(ps+sum(seg)) != 0 {
		return "bad TCP checksum"
	}
	return ""
}

// checkHTTP parses both streams back and compares them with the truth.
func checkHTTP(t *testing.T, conv Conversation, up, down []byte) {
	t.Helper()
	rr := bufio.NewReader(bytes.NewReader(up))
	var methods []string
	for i, want := range conv.Requests {
		req, err := http.ReadRequest(rr)
		if err != nil {
			t.Fatalf("%v request %d: %v", conv.Client, i, err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("%v request %d body: %v", conv.Client, i, err)
		}
		if req.Method != want.Method || req.RequestURI != want.Target || len(body) != want.BodyLen {
			t.Fatalf("%v request %d: %s %s (%d bytes), want %+v", conv.Client, i, req.Method, req.RequestURI, len(body), want)
		}
		methods = append(methods, req.Method)
	}
	if _, err := rr.Peek(1); err != io.EOF {
		t.Fatalf("%v: bytes after the last request", conv.Client)
	}
	if len(conv.Responses) != len(conv.Requests) {
		t.Fatalf("%v: %d responses for %d requests", conv.Client, len(conv.Responses), len(conv.Requests))
	}
	br := bufio.NewReader(bytes.NewReader(down))
	for i, want := range conv.Responses {
		resp, err := http.ReadResponse(br, &http.Request{Method: methods[i]})
		if err != nil {
			t.Fatalf("%v response %d: %v", conv.Client, i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%v response %d body: %v", conv.Client, i, err)
		}
		if resp.StatusCode != want.Status || len(body) != want.BodyLen || int(resp.ContentLength) != want.ContentLength {
			t.Fatalf("%v response %d: %d, %d bytes, CL %d; want %+v", conv.Client, i, resp.StatusCode, len(body), resp.ContentLength, want)
		}
	}
	if _, err := br.Peek(1); err != io.EOF {
		t.Fatalf("%v: bytes after the last response", conv.Client)
	}
}

// TestShapes checks the two traffic shapes of the lab benchmark (issue 12)
// frame by frame: a page view is a ~400-byte GET answered in 4 segments,
// 10 frames with one exchange per connection and 55 with ten.
func TestShapes(t *testing.T) {
	tests := []struct {
		name          string
		perConn       int
		framesPerConn int
	}{
		{"1 request per connection", 1, 10},
		{"keep-alive, 10 per connection", 10, 55},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const conns = 20
			g, err := New(Config{Conns: 4, TotalConns: conns, RequestsPerConn: tc.perConn, Mix: Mix{Page: 1}, LeanAcks: true, Truth: true,
				Users: 10, UserBase: 70000})
			if err != nil {
				t.Fatal(err)
			}
			var out collect
			sum, err := g.Run(context.Background(), &out)
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(conns * tc.framesPerConn); sum.Packets != want {
				t.Errorf("%d frames, want %d (%d per connection)", sum.Packets, want, tc.framesPerConn)
			}
			if want := uint64(conns * tc.perConn); sum.RequestsSent != want || sum.ResponsesSent != want {
				t.Errorf("%d requests, %d responses sent, want %d", sum.RequestsSent, sum.ResponsesSent, want)
			}
			for _, conv := range g.Truth() {
				if !conv.Closed || len(conv.Requests) != tc.perConn {
					t.Fatalf("%v: closed %v, %d requests", conv.Client, conv.Closed, len(conv.Requests))
				}
				reqLen, respLen := len(conv.ToServer)/tc.perConn, len(conv.ToClient)/tc.perConn
				if reqLen < 350 || reqLen > 450 {
					t.Errorf("request of %d bytes, want about 400", reqLen)
				}
				if respLen != 4400 {
					t.Errorf("response of %d bytes, want 4400 (PageBytes)", respLen)
				}
				if want := PageResponse(0); !bytes.Equal(conv.ToClient[:respLen], want) {
					t.Errorf("PageResponse differs from the generated answer:\n%q\n%q", want[:120], conv.ToClient[:120])
				}
				for _, r := range conv.Requests {
					// Users 70000..70009: 100.(64+1).(17).(112..121).
					a, err := netip.ParseAddr(r.ForwardedFor)
					if err != nil || !bytes.Contains(conv.ToServer, []byte("X-Forwarded-For: "+r.ForwardedFor+"\r\n")) {
						t.Fatalf("X-Forwarded-For %q: %v", r.ForwardedFor, err)
					}
					if b := a.As4(); b[0] != 100 || b[1] != 65 || b[2] != 17 || b[3] < 112 || b[3] > 121 {
						t.Errorf("X-Forwarded-For %v outside users 70000..70009", a)
					}
				}
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	run := func(seed uint64) [][]byte {
		g, err := New(Config{Conns: 3, RequestsPerConn: 4, Mix: Mix{Small: 1, Large: 1, Post: 1}, Seed: seed, LargeKiB: 8})
		if err != nil {
			t.Fatal(err)
		}
		var out collect
		if _, err := g.Run(context.Background(), &out); err != nil {
			t.Fatal(err)
		}
		return out.frames
	}
	a, b, c := run(1), run(1), run(2)
	if len(a) != len(b) {
		t.Fatalf("same seed: %d vs %d frames", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("same seed: frame %d differs", i)
		}
	}
	same := len(a) == len(c)
	for i := 0; same && i < len(a); i++ {
		same = bytes.Equal(a[i], c[i])
	}
	if same {
		t.Fatal("different seeds gave the same frames")
	}
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, s Summary, elapsed time.Duration)
	}{
		{"packets", Config{Packets: 1000, Conns: 8, Mix: Mix{Large: 1}}, func(t *testing.T, s Summary, _ time.Duration) {
			if s.Packets != 1000 {
				t.Errorf("packets %d, want 1000", s.Packets)
			}
			if s.ResponsesSent >= s.Responses || s.RequestsSent > s.Requests {
				t.Errorf("cut run: %d/%d responses, %d/%d requests complete/started", s.ResponsesSent, s.Responses, s.RequestsSent, s.Requests)
			}
		}},
		{"total conns", Config{Conns: 4, TotalConns: 10, RequestsPerConn: 2}, func(t *testing.T, s Summary, _ time.Duration) {
			if s.Conns != 10 || s.Requests != 20 {
				t.Errorf("conns %d requests %d, want 10 and 20", s.Conns, s.Requests)
			}
		}},
		{"rate paces", Config{Packets: 2000, Rate: 10000, Conns: 8}, func(t *testing.T, s Summary, elapsed time.Duration) {
			if elapsed < 180*time.Millisecond {
				t.Errorf("2000 packets at 10000/s took %v, want at least ~200ms", elapsed)
			}
		}},
		{"duration", Config{Duration: 100 * time.Millisecond, Rate: 5000, Conns: 8}, func(t *testing.T, s Summary, elapsed time.Duration) {
			if elapsed < 100*time.Millisecond || elapsed > 2*time.Second || s.Packets < 100 || s.Packets > 1000 {
				t.Errorf("duration run: %v, %d packets", elapsed, s.Packets)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			s, err := g.Run(context.Background(), Discard{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s, time.Since(start))
		})
	}
}

func TestCancel(t *testing.T) {
	g, err := New(Config{Duration: time.Hour, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := g.Run(ctx, Discard{}); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("cancelled run returned nil")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{PageBytes: 64}); err == nil {
		t.Error("PageBytes 64 accepted")
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"mss too big", Config{MSS: 20000}},
		{"mss too small", Config{MSS: 10}},
		{"vni too big", Config{VNI: 1 << 24}},
		{"v6 outer", Config{Source: netip.MustParseAddr("fd00::1")}},
		{"v6 percent", Config{IPv6Percent: 101}},
		{"negative rate", Config{Rate: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in   string
		want Mix
		ok   bool
	}{
		{"small=70,large=20,post=5,head=5", Mix{Small: 70, Large: 20, Post: 5, Head: 5}, true},
		{"pipelined=1", Mix{Pipelined: 1}, true},
		{"page=3,small=1", Mix{Page: 3, Small: 1}, true},
		{"", Mix{Small: 1}, true},
		{"small=0", Mix{}, false},
		{"huge=1", Mix{}, false},
		{"small=-1", Mix{}, false},
		{"small", Mix{}, false},
	}
	for _, tc := range tests {
		got, err := ParseMix(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMix(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestPacketLengthTruncates(t *testing.T) {
	g, err := New(Config{Conns: 1, RequestsPerConn: 1, Mix: Mix{Large: 1}, LargeKiB: 4, PacketLength: 200})
	if err != nil {
		t.Fatal(err)
	}
	var out collect
	if _, err := g.Run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	cut := 0
	for _, f := range out.frames {
		if len(f) > innerStart+200 {
			t.Fatalf("frame of %d bytes above PacketLength", len(f))
		}
		ipTotal := int(f[innerStart+16])<<8 | int(f[innerStart+17])
		if ipTotal > len(f)-innerStart-14 {
			cut++
		}
	}
	if cut == 0 {
		t.Fatal("no frame was cut")
	}
}

func BenchmarkGenerate(b *testing.B) {
	for _, mss := range []int{DefaultMSS, JumboMSS} {
		b.Run("mss="+strconv.Itoa(mss), func(b *testing.B) {
			g, err := New(Config{Conns: 64, Packets: uint64(b.N), Mix: Mix{Small: 70, Large: 20, Post: 5, Head: 5}, MSS: mss})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			s, err := g.Run(context.Background(), Discard{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(s.Packets)/b.Elapsed().Seconds(), "pkts/s")
			b.ReportMetric(float64(s.Bytes)/float64(max(s.Packets, 1)), "bytes/pkt")
		})
	}
}
