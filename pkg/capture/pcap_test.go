package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

type pcapFlow struct{ src, dst netip.AddrPort }

type pcapSeg struct {
	h       event.Header
	payload []byte
}

// pcapSink keeps a copy of every segment, by flow direction.
type pcapSink struct {
	segs    map[pcapFlow][]pcapSeg
	n       int
	flushes int
	lastNs  uint64
	backNs  bool // a timestamp went backwards
}

func newPcapSink() *pcapSink { return &pcapSink{segs: map[pcapFlow][]pcapSeg{}} }

func (s *pcapSink) Segment(h *event.Header, payload []byte) {
	k := pcapFlow{netip.AddrPortFrom(h.Src(), h.SrcPort), netip.AddrPortFrom(h.Dst(), h.DstPort)}
	s.segs[k] = append(s.segs[k], pcapSeg{h: *h, payload: bytes.Clone(payload)})
	s.n++
	if h.TimeNs < s.lastNs {
		s.backNs = true
	}
	s.lastNs = h.TimeNs
}

func (s *pcapSink) Flush() { s.flushes++ }

func (s *pcapSink) stream(src, dst netip.AddrPort) []byte {
	var b []byte
	for _, sg := range s.segs[pcapFlow{src, dst}] {
		b = append(b, sg.payload...)
	}
	return b
}

func pcapQuiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var pcapPorts = decap.Config{Ports: []uint16{8080}, VNIs: []uint32{42}}

// pcapGenFile writes a generator run to a capture file and returns the generator.
func pcapGenFile(t *testing.T, path string, cfg mirrorgen.Config, format mirrorgen.FileFormat, snap int) (*mirrorgen.Generator, mirrorgen.Summary) {
	t.Helper()
	g, err := mirrorgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fw, err := mirrorgen.NewFileWriter(f, format)
	if err != nil {
		t.Fatal(err)
	}
	fw.SnapLen = snap
	sum, err := g.Run(context.Background(), fw)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	return g, sum
}

func pcapRun(t *testing.T, cfg PcapConfig) (*Pcap, *pcapSink, error) {
	t.Helper()
	p, err := NewPcap(cfg, pcapQuiet())
	if err != nil {
		t.Fatal(err)
	}
	sink := newPcapSink()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p, sink, p.Run(ctx, sink)
}

func TestPcapGivesTheGeneratorsConversations(t *testing.T) {
	mix := mirrorgen.Mix{Small: 4, Large: 2, Head: 1, Post: 2, Pipelined: 1}
	tests := []struct {
		name   string
		format mirrorgen.FileFormat
		cfg    mirrorgen.Config
	}{
		{"pcap", mirrorgen.FormatPcap, mirrorgen.Config{Conns: 5, RequestsPerConn: 6, Mix: mix, LargeKiB: 20}},
		{"pcapng", mirrorgen.FormatPcapNG, mirrorgen.Config{Conns: 5, RequestsPerConn: 6, Mix: mix, LargeKiB: 20}},
		{"jumbo and v6", mirrorgen.FormatPcap, mirrorgen.Config{Conns: 4, TotalConns: 8, RequestsPerConn: 3, Mix: mix, MSS: mirrorgen.JumboMSS, IPv6Percent: 50, LargeKiB: 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mirror."+tc.name)
			cfg := tc.cfg
			cfg.Truth, cfg.VNI, cfg.Seed = true, 42, 7
			g, sum := pcapGenFile(t, path, cfg, tc.format, 0)
			p, sink, err := pcapRun(t, PcapConfig{File: path, Speed: "max", Decap: pcapPorts})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for _, conv := range g.Truth() {
				up, down := sink.stream(conv.Client, conv.Server), sink.stream(conv.Server, conv.Client)
				if !bytes.Equal(up, conv.ToServer) {
					t.Errorf("%v: request stream %d bytes, generator sent %d", conv.Client, len(up), len(conv.ToServer))
				}
				if !bytes.Equal(down, conv.ToClient) {
					t.Errorf("%v: response stream %d bytes, generator sent %d", conv.Client, len(down), len(conv.ToClient))
				}
				for _, sg := range sink.segs[pcapFlow{conv.Client, conv.Server}] {
					if sg.h.Direction != event.Request || sg.h.VNI != 42 || sg.h.Truncated() {
						t.Fatalf("%v: request segment header %+v", conv.Client, sg.h)
					}
				}
				for _, sg := range sink.segs[pcapFlow{conv.Server, conv.Client}] {
					if sg.h.Direction != event.Response || sg.h.Truncated() {
						t.Fatalf("%v: response segment header %+v", conv.Client, sg.h)
					}
				}
			}
			ctr, _ := p.Counters()
			st := p.Stats()
			if st.Frames != sum.Packets || ctr.Packets() != sum.Packets || ctr.Outcomes[event.Emit] != sum.Packets {
				t.Errorf("frames %d, outcomes %d, emit %d; generator wrote %d", st.Frames, ctr.Packets(), ctr.Outcomes[event.Emit], sum.Packets)
			}
			if uint64(sink.n) != sum.Packets || st.Unreadable != 0 || ctr.Truncated != 0 {
				t.Errorf("sink got %d segments, unreadable %d, truncated %d", sink.n, st.Unreadable, ctr.Truncated)
			}
			if sink.flushes == 0 || sink.backNs {
				t.Errorf("flushes %d, time went backwards %v", sink.flushes, sink.backNs)
			}
		})
	}
}

func TestPcapFiltersByDecapConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.pcap")
	_, sum := pcapGenFile(t, path, mirrorgen.Config{Conns: 2, RequestsPerConn: 2, VNI: 42}, mirrorgen.FormatPcap, 0)
	tests := []struct {
		name string
		dc   decap.Config
		want event.Outcome
	}{
		{"other vni", decap.Config{Ports: []uint16{8080}, VNIs: []uint32{7}}, event.PassVNI},
		{"other port", decap.Config{Ports: []uint16{80}}, event.DropPort},
		{"other source", decap.Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, event.PassSource},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, sink, err := pcapRun(t, PcapConfig{File: path, Decap: tc.dc})
			if err != nil {
				t.Fatal(err)
			}
			ctr, _ := p.Counters()
			if sink.n != 0 || ctr.Outcomes[tc.want] != sum.Packets {
				t.Errorf("%d segments emitted, %s = %d of %d", sink.n, tc.want, ctr.Outcomes[tc.want], sum.Packets)
			}
		})
	}
}

func TestPcapTruncatedRecordsAreFlagged(t *testing.T) {
	tests := []struct {
		name   string
		snap   int // capture file snap length
		pktLen int // mirror session PacketLength
	}{
		{"record caplen below len", 300, 0},
		{"mirror PacketLength", 0, 250},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cut.pcap")
			g, _ := pcapGenFile(t, path, mirrorgen.Config{Conns: 2, RequestsPerConn: 2, Mix: mirrorgen.Mix{Large: 1}, LargeKiB: 8,
				VNI: 42, Truth: true, PacketLength: tc.pktLen}, mirrorgen.FormatPcap, tc.snap)
			p, sink, err := pcapRun(t, PcapConfig{File: path, Decap: pcapPorts})
			if err != nil {
				t.Fatal(err)
			}
			ctr, _ := p.Counters()
			if ctr.Truncated == 0 {
				t.Fatal("no segment flagged truncated")
			}
			var flagged uint64
			for _, conv := range g.Truth() {
				pcapCheckCut(t, sink.segs[pcapFlow{conv.Server, conv.Client}], conv.ToClient, &flagged)
				pcapCheckCut(t, sink.segs[pcapFlow{conv.Client, conv.Server}], conv.ToServer, &flagged)
			}
			if flagged != ctr.Truncated {
				t.Errorf("%d segments flagged, counter says %d", flagged, ctr.Truncated)
			}
		})
	}
}

// pcapCheckCut checks that every segment either is whole or is flagged with
// CapLen < WireLen and carries a true prefix of what was sent.
func pcapCheckCut(t *testing.T, segs []pcapSeg, stream []byte, flagged *uint64) {
	t.Helper()
	if len(segs) == 0 {
		t.Fatal("no segments")
	}
	if segs[0].h.TCPFlags&event.TCPSyn == 0 {
		t.Fatal("first segment is not the SYN")
	}
	isn := segs[0].h.Seq
	for _, sg := range segs {
		h := sg.h
		if int(h.CapLen) != len(sg.payload) {
			t.Fatalf("CapLen %d but payload %d bytes", h.CapLen, len(sg.payload))
		}
		off := int(h.Seq - isn - 1)
		if h.WireLen == 0 {
			continue
		}
		if off < 0 || off+int(h.WireLen) > len(stream) {
			t.Fatalf("segment at offset %d of %d bytes outside the %d-byte stream", off, h.WireLen, len(stream))
		}
		if !bytes.Equal(sg.payload, stream[off:off+len(sg.payload)]) {
			t.Fatalf("segment at offset %d does not match what was sent", off)
		}
		switch {
		case h.CapLen < h.WireLen:
			if !h.Truncated() {
				t.Fatalf("segment cut (%d of %d) but not flagged", h.CapLen, h.WireLen)
			}
			*flagged++
		case h.Truncated():
			t.Fatalf("whole segment (%d bytes) flagged truncated", h.CapLen)
		}
	}
}

func TestPcapBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pcap")
	pcapGenFile(t, good, mirrorgen.Config{Conns: 2, RequestsPerConn: 2, VNI: 42}, mirrorgen.FormatPcap, 0)
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// The first record header starts after the 24-byte file header.
	hugeLen := bytes.Clone(goodBytes)
	binary.LittleEndian.PutUint32(hugeLen[24+8:], 0x7fffffff)
	capAboveLen := bytes.Clone(goodBytes)
	binary.LittleEndian.PutUint32(capAboveLen[24+12:], 1)
	raw := func(lt layers.LinkType) []byte {
		var b bytes.Buffer
		w := pcapgo.NewWriter(&b)
		_ = w.WriteFileHeader(65536, lt)
		return b.Bytes()
	}

	tests := []struct {
		name       string
		data       []byte
		newErr     string // NewPcap fails with this
		runErr     string // Run fails with this
		unreadable uint64
	}{
		{"empty", nil, "too short", "", 0},
		{"not a capture", []byte(strings.Repeat("GET / HTTP/1.1\r\n", 10)), "not a pcap or pcapng", "", 0},
		{"bad pcapng", []byte{0x0a, 0x0d, 0x0d, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8}, "bad pcapng", "", 0},
		{"unsupported link type", raw(layers.LinkTypeRaw), "not supported", "", 0},
		{"header only", raw(layers.LinkTypeEthernet), "", "", 0},
		{"huge record length", hugeLen, "", "record 1", 1},
		{"caplen above len", capAboveLen, "", "record 1", 1},
		{"cut mid-record", goodBytes[:len(goodBytes)-10], "", "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := NewPcap(PcapConfig{File: path, Decap: pcapPorts}, pcapQuiet())
			if tc.newErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.newErr) {
					t.Fatalf("NewPcap error %v, want one containing %q", err, tc.newErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewPcap: %v", err)
			}
			err = p.Run(context.Background(), newPcapSink())
			if tc.runErr == "" && err != nil || tc.runErr != "" && (err == nil || !strings.Contains(err.Error(), tc.runErr)) {
				t.Fatalf("Run error %v, want %q", err, tc.runErr)
			}
			if st := p.Stats(); st.Unreadable != tc.unreadable {
				t.Errorf("unreadable %d, want %d", st.Unreadable, tc.unreadable)
			}
		})
	}
	if _, err := NewPcap(PcapConfig{File: filepath.Join(dir, "missing")}, pcapQuiet()); err == nil {
		t.Error("missing file accepted")
	}
}

// TestPcapLinuxCooked rewrites a generator capture as tcpdump -i any would
// (Linux SLL and SLL2) and checks the same segments come out.
func TestPcapLinuxCooked(t *testing.T) {
	dir := t.TempDir()
	eth := filepath.Join(dir, "eth.pcap")
	pcapGenFile(t, eth, mirrorgen.Config{Conns: 3, RequestsPerConn: 3, Mix: mirrorgen.Mix{Small: 1, Large: 1}, LargeKiB: 8, VNI: 42}, mirrorgen.FormatPcap, 0)
	_, want, err := pcapRun(t, PcapConfig{File: eth, Decap: pcapPorts})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		lt   layers.LinkType
		hdr  func(etherType []byte) []byte
	}{
		{"sll", layers.LinkTypeLinuxSLL, func(et []byte) []byte {
			h := make([]byte, 16)
			binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
			binary.BigEndian.PutUint16(h[4:], 6)
			copy(h[14:], et)
			return h
		}},
		{"sll2", layers.LinkTypeLinuxSLL2, func(et []byte) []byte {
			h := make([]byte, 20)
			copy(h[0:], et)
			binary.BigEndian.PutUint32(h[4:], 2) // ifindex
			binary.BigEndian.PutUint16(h[8:], 1)
			h[11] = 6
			return h
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".pcap")
			pcapRewrite(t, eth, path, tc.lt, tc.hdr)
			_, got, err := pcapRun(t, PcapConfig{File: path, Decap: pcapPorts})
			if err != nil {
				t.Fatal(err)
			}
			if got.n != want.n || got.n == 0 {
				t.Fatalf("%d segments, Ethernet capture gave %d", got.n, want.n)
			}
			for k, segs := range want.segs {
				if !bytes.Equal(got.stream(k.src, k.dst), want.stream(k.src, k.dst)) || len(got.segs[k]) != len(segs) {
					t.Fatalf("%v -> %v: streams differ", k.src, k.dst)
				}
			}
		})
	}
}

func pcapRewrite(t *testing.T, from, to string, lt layers.LinkType, hdr func([]byte) []byte) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := pcapgo.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(65536, lt); err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rec := append(hdr(data[12:14]), data[14:]...)
		ci.CaptureLength, ci.Length = len(rec), len(rec)
		if err := w.WritePacket(ci, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(to, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPcapRecordedPace(t *testing.T) {
	// 301 frames at 1000/s span 300 ms of capture time.
	path := filepath.Join(t.TempDir(), "paced.pcap")
	_, sum := pcapGenFile(t, path, mirrorgen.Config{Packets: 301, Rate: 1000, Conns: 4, VNI: 42}, mirrorgen.FormatPcap, 0)
	tests := []struct {
		speed string
		min   time.Duration
	}{
		{"1x", 250 * time.Millisecond},
		{"2x", 125 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.speed, func(t *testing.T) {
			start := time.Now()
			_, sink, err := pcapRun(t, PcapConfig{File: path, Speed: tc.speed, Decap: pcapPorts})
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < tc.min {
				t.Errorf("%s replay of 300 ms took %v, want at least %v", tc.speed, took, tc.min)
			}
			if uint64(sink.n) != sum.Packets {
				t.Errorf("%d segments, want %d", sink.n, sum.Packets)
			}
			var first, last uint64
			for _, segs := range sink.segs {
				for _, sg := range segs {
					if first == 0 || sg.h.TimeNs < first {
						first = sg.h.TimeNs
					}
					last = max(last, sg.h.TimeNs)
				}
			}
			if span := time.Duration(last - first); span < 299*time.Millisecond || span > 301*time.Millisecond {
				t.Errorf("event times span %v, capture spans 300ms", span)
			}
		})
	}
}

func TestPcapCancel(t *testing.T) {
	// 100 frames at 10/s: ten seconds at 1x.
	path := filepath.Join(t.TempDir(), "slow.pcap")
	pcapGenFile(t, path, mirrorgen.Config{Packets: 100, Rate: 10, VNI: 42}, mirrorgen.FormatPcap, 0)
	p, err := NewPcap(PcapConfig{File: path, Speed: "1x", Decap: pcapPorts}, pcapQuiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Run(ctx, newPcapSink())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run returned %v, want the context's error", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("cancel took %v", took)
	}
}

func TestParseSpeed(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"max", 0, true}, {"", 0, true}, {"1x", 1, true}, {"0.5x", 0.5, true}, {"10x", 10, true},
		{"1", 0, false}, {"0x", 0, false}, {"-1x", 0, false}, {"fast", 0, false}, {"x", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSpeed(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSpeed(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func BenchmarkPcapMax(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.pcap")
	g, err := mirrorgen.New(mirrorgen.Config{Packets: 200000, Conns: 64, VNI: 42, Mix: mirrorgen.Mix{Small: 70, Large: 20, Post: 5, Head: 5}})
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	fw, err := mirrorgen.NewFileWriter(f, mirrorgen.FormatPcap)
	if err != nil {
		b.Fatal(err)
	}
	sum, err := g.Run(context.Background(), fw)
	if err != nil || fw.Flush() != nil || f.Close() != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p, err := NewPcap(PcapConfig{File: path, Decap: pcapPorts}, pcapQuiet())
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Run(context.Background(), pcapDiscard{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sum.Packets)*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

type pcapDiscard struct{}

func (pcapDiscard) Segment(*event.Header, []byte) {}
func (pcapDiscard) Flush()                        {}
