package xdp

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/frames"
)

// minTestRunFrame is the smallest input BPF_PROG_TEST_RUN accepts for XDP
// (an Ethernet header).
const minTestRunFrame = 14

// tableConfig is the receiver configuration the shared vector table assumes.
func tableConfig() Config {
	tc := frames.Config()
	return Config{Ports: tc.Ports, VNIs: tc.VNIs, Sources: tc.Sources, VXLANPort: tc.VXLANPort}
}

// loadTest loads the program with cfg (root only) and closes it at the end.
func loadTest(tb testing.TB, cfg Config) *Probe {
	tb.Helper()
	testenv.RequireRoot(tb)
	p, err := Load(cfg, nil)
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// record is one decoded event read from the ring.
type record struct {
	hdr     event.Header
	payload []byte
}

// drain reads every record in the ring without waiting.
func drain(tb testing.TB, p *Probe) []record {
	tb.Helper()
	var out []record
	var rec ringbuf.Record
	p.reader.SetDeadline(time.Now())
	for {
		err := p.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			tb.Fatalf("read ring: %v", err)
		}
		var r record
		pl, err := event.Decode(rec.RawSample, &r.hdr)
		if err != nil {
			tb.Fatalf("decode a %d-byte record: %v", len(rec.RawSample), err)
		}
		r.payload = append([]byte(nil), pl...)
		out = append(out, r)
	}
}

func counters(tb testing.TB, p *Probe) event.Counters {
	tb.Helper()
	c, err := p.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// runFrame runs frame once through the program and returns the verdict.
func runFrame(tb testing.TB, p *Probe, frame []byte) frames.Verdict {
	tb.Helper()
	ret, err := p.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("BPF_PROG_TEST_RUN on a %d-byte frame: %v", len(frame), err)
	}
	return frames.Verdict(ret)
}

// checkOne runs frame and checks that exactly one outcome counted it, with
// the verdict, bytes, truncated count and event (nil: no event) expected.
func checkOne(t *testing.T, p *Probe, frame []byte, verdict frames.Verdict, outcome event.Outcome, want *event.Header, wantPayload []byte) {
	t.Helper()
	before := counters(t, p)
	got := runFrame(t, p, frame)
	after := counters(t, p)
	recs := drain(t, p)

	if got != verdict {
		t.Errorf("verdict %v, want %v", got, verdict)
	}
	for o := event.Outcome(0); o < event.NumOutcomes; o++ {
		d := after.Outcomes[o] - before.Outcomes[o]
		wantD := uint64(0)
		if o == outcome {
			wantD = 1
		}
		if d != wantD {
			t.Errorf("counter %s grew by %d, want %d", o, d, wantD)
		}
	}
	if d := after.Bytes - before.Bytes; d != uint64(len(frame)) {
		t.Errorf("bytes grew by %d, want the frame length %d", d, len(frame))
	}
	wantTrunc := uint64(0)
	if want != nil && want.Truncated() {
		wantTrunc = 1
	}
	if d := after.Truncated - before.Truncated; d != wantTrunc {
		t.Errorf("truncated grew by %d, want %d", d, wantTrunc)
	}

	if want == nil {
		if len(recs) != 0 {
			t.Errorf("%d events, want none (first: %+v)", len(recs), recs[0].hdr)
		}
		return
	}
	if len(recs) != 1 {
		t.Fatalf("%d events, want 1", len(recs))
	}
	h := recs[0].hdr
	if h.TimeNs == 0 {
		t.Errorf("event TimeNs is 0, want the capture time")
	}
	h.TimeNs = 0
	if h != *want {
		t.Errorf("event header\n got %+v\nwant %+v", h, *want)
	}
	if !bytes.Equal(recs[0].payload, wantPayload) {
		t.Errorf("payload: got %d bytes %.40q…, want %d bytes %.40q…", len(recs[0].payload), recs[0].payload, len(wantPayload), wantPayload)
	}
}

// TestVectors runs every row of the shared frame table (testenv/frames)
// through the program: the same table the Go decoder (pkg/decap) passes.
func TestVectors(t *testing.T) {
	p := loadTest(t, tableConfig())
	vecs := frames.Vectors()
	if len(vecs) < 25 {
		t.Fatalf("the shared table has %d rows, want at least 25", len(vecs))
	}
	var ran int
	var bytesRun uint64
	start := counters(t, p)
	for _, v := range vecs {
		t.Run(v.Name, func(t *testing.T) {
			if len(v.Frame) < minTestRunFrame {
				t.Skipf("BPF_PROG_TEST_RUN needs at least %d bytes; frame has %d", minTestRunFrame, len(v.Frame))
			}
			ran++
			bytesRun += uint64(len(v.Frame))
			checkOne(t, p, v.Frame, v.Verdict, v.Outcome, v.Event, v.Payload)
		})
	}
	// Every frame run ended in exactly one outcome: the sums add up.
	end := counters(t, p)
	if got := end.Packets() - start.Packets(); got != uint64(ran) {
		t.Errorf("outcome counters add up to %d packets, ran %d", got, ran)
	}
	if got := end.Bytes - start.Bytes; got != bytesRun {
		t.Errorf("bytes counter %d, frames run total %d", got, bytesRun)
	}
}

// outer and inner build the frames of the tests below.
func outer() frames.Outer {
	return frames.Outer{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 51000, VNI: frames.VNI}
}

func inner(payload []byte) frames.Inner {
	return frames.Inner{
		Src: netip.MustParseAddr("192.168.1.10"), Dst: netip.MustParseAddr("192.168.1.20"),
		SrcPort: frames.ClientPort, DstPort: frames.ServerPort, Seq: 7, Ack: 9,
		Flags: event.TCPAck | event.TCPPsh, Payload: payload,
	}
}

// TestConfig checks what each configuration setting does to the program:
// empty allowlists accept anything, and the VXLAN port and service ports
// are the configured ones.
func TestConfig(t *testing.T) {
	req := func(o frames.Outer, in frames.Inner) []byte { f, _ := frames.VXLAN(o, in); return f }
	withVNI := func(v uint32) frames.Outer { o := outer(); o.VNI = v; return o }
	withSrc := func(a string) frames.Outer { o := outer(); o.Src = netip.MustParseAddr(a); return o }
	withPort := func(port uint16) frames.Outer { o := outer(); o.DstPort = port; return o }
	v6 := func(a string) frames.Outer {
		return frames.Outer{Src: netip.MustParseAddr(a), Dst: netip.MustParseAddr("fd00::9"), VNI: frames.VNI}
	}
	// Longer allowlists than the program compares inline (VNI_INLINE,
	// SOURCE_INLINE) are looked up in the maps instead.
	manyVNIs := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 0xabcdef}
	var manySources []netip.Prefix
	for i := range 9 {
		manySources = append(manySources, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32))
	}
	manySources = append(manySources, netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("fd00:1::/32"))
	toPort := func(port uint16) frames.Inner { in := inner([]byte("x")); in.DstPort = port; return in }
	ok := inner([]byte("GET / HTTP/1.1\r\n\r\n"))

	tests := []struct {
		name    string
		cfg     Config
		frame   []byte
		outcome event.Outcome
	}{
		{"no VNI allowlist accepts any VNI", Config{Ports: []uint16{8080}}, req(withVNI(0xabcdef), ok), event.Emit},
		{"VNI allowlist refuses others", Config{Ports: []uint16{8080}, VNIs: []uint32{1}}, req(withVNI(2), ok), event.PassVNI},
		{"VNI allowlist accepts its VNI", Config{Ports: []uint16{8080}, VNIs: []uint32{1, 0xffffff}}, req(withVNI(0xffffff), ok), event.Emit},
		{"no source allowlist accepts any source", Config{Ports: []uint16{8080}}, req(withSrc("203.0.113.7"), ok), event.Emit},
		{"IPv4 /32 source", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}}, req(withSrc("203.0.113.7"), ok), event.Emit},
		{"IPv4 /32 source, next address", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}}, req(withSrc("203.0.113.8"), ok), event.PassSource},
		{"IPv4 prefix not masked", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("203.0.113.77/24")}}, req(withSrc("203.0.113.1"), ok), event.Emit},
		{"IPv6 allowlist does not admit IPv4", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("::/0")}}, req(withSrc("10.1.2.3"), ok), event.PassSource},
		{"IPv4 0/0 does not admit IPv6", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, req(v6("fd00::1"), ok), event.PassSource},
		{"IPv6 prefix", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("fd00:1::/32")}}, req(v6("fd00:1::5"), ok), event.Emit},
		{"IPv6 /128 source", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("fd00::1/128")}}, req(v6("fd00::1"), ok), event.Emit},
		{"IPv6 /128 source, next address", Config{Ports: []uint16{8080}, Sources: []netip.Prefix{netip.MustParsePrefix("fd00::1/128")}}, req(v6("fd00::2"), ok), event.PassSource},
		{"long VNI allowlist accepts its VNI", Config{Ports: []uint16{8080}, VNIs: manyVNIs}, req(withVNI(0xabcdef), ok), event.Emit},
		{"long VNI allowlist refuses others", Config{Ports: []uint16{8080}, VNIs: manyVNIs}, req(withVNI(10), ok), event.PassVNI},
		{"long source allowlist, IPv4", Config{Ports: []uint16{8080}, Sources: manySources}, req(withSrc("203.0.113.7"), ok), event.Emit},
		{"long source allowlist, IPv6", Config{Ports: []uint16{8080}, Sources: manySources}, req(v6("fd00:1::5"), ok), event.Emit},
		{"long source allowlist, not listed", Config{Ports: []uint16{8080}, Sources: manySources}, req(withSrc("192.0.2.9"), ok), event.PassSource},
		{"custom VXLAN port", Config{Ports: []uint16{8080}, VXLANPort: 8472}, req(withPort(8472), ok), event.Emit},
		{"custom VXLAN port: 4789 is not VXLAN", Config{Ports: []uint16{8080}, VXLANPort: 8472}, req(withPort(4789), ok), event.PassNotVXLAN},
		{"second served port", Config{Ports: []uint16{8080, 80}}, req(outer(), toPort(80)), event.Emit},
		{"port not served", Config{Ports: []uint16{8080}}, req(outer(), toPort(80)), event.DropPort},
		{"port 65535 served", Config{Ports: []uint16{65535}}, req(outer(), toPort(65535)), event.Emit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadTest(t, tt.cfg)
			before := counters(t, p)
			runFrame(t, p, tt.frame)
			after := counters(t, p)
			for o := event.Outcome(0); o < event.NumOutcomes; o++ {
				if d := after.Outcomes[o] - before.Outcomes[o]; d != 0 && o != tt.outcome {
					t.Errorf("counted as %s, want %s", o, tt.outcome)
				}
			}
			if after.Outcomes[tt.outcome]-before.Outcomes[tt.outcome] != 1 {
				t.Errorf("%s did not count the packet", tt.outcome)
			}
			if n := len(drain(t, p)); (tt.outcome == event.Emit) != (n == 1) {
				t.Errorf("%d events for outcome %s", n, tt.outcome)
			}
		})
	}
}

// TestRingFull checks that events the ring has no room for are counted in
// lost_ringbuf, still dropped, and that the ones that fit arrive whole.
func TestRingFull(t *testing.T) {
	cfg := tableConfig()
	cfg.RingSize = pageSize // room for two 1448-byte events
	p := loadTest(t, cfg)
	payload := frames.Pattern(1448)
	f, _ := frames.VXLAN(outer(), inner(payload))
	const runs = 10
	ret, err := p.Program().Run(&ebpf.RunOptions{Data: f, Repeat: runs})
	if err != nil {
		t.Fatal(err)
	}
	if frames.Verdict(ret) != frames.Drop {
		t.Errorf("verdict %v, want XDP_DROP", frames.Verdict(ret))
	}
	c := counters(t, p)
	emit, lost := c.Outcomes[event.Emit], c.Outcomes[event.LostRingbuf]
	if emit+lost != runs || c.Packets() != runs {
		t.Errorf("emit %d + lost_ringbuf %d, packets %d; want %d", emit, lost, c.Packets(), runs)
	}
	if lost == 0 || emit == 0 {
		t.Errorf("emit %d, lost_ringbuf %d: want both > 0 with a one-page ring", emit, lost)
	}
	recs := drain(t, p)
	if uint64(len(recs)) != emit {
		t.Errorf("%d events in the ring, emit counted %d", len(recs), emit)
	}
	for _, r := range recs {
		if !bytes.Equal(r.payload, payload) {
			t.Errorf("event payload %d bytes, want the 1448 sent", len(r.payload))
		}
	}
	// Once drained, the ring takes events again.
	runFrame(t, p, f)
	if n := len(drain(t, p)); n != 1 {
		t.Errorf("%d events after draining, want 1", n)
	}
}

// batchSink collects what Run hands on.
type batchSink struct {
	segs    []record
	flushes int
	pending int
	onSeg   func(n int)
}

func (s *batchSink) Segment(h *event.Header, payload []byte) {
	s.segs = append(s.segs, record{hdr: *h, payload: append([]byte(nil), payload...)})
	s.pending++
	if s.onSeg != nil {
		s.onSeg(len(s.segs))
	}
}

func (s *batchSink) Flush() {
	if s.pending > 0 {
		s.flushes++
	}
	s.pending = 0
}

// TestRun checks the event.Source side: Run delivers every event in order
// with its payload, flushes once the ring is drained, and returns when ctx is
// done even though the program never woke it (events below the wakeup
// threshold reach Run through the poll timer).
func TestRun(t *testing.T) {
	p := loadTest(t, tableConfig())
	sizes := []int{0, 1, 100, 1448, 3000, 8948}
	for i, n := range sizes {
		in := inner(frames.Pattern(n))
		in.Seq = uint32(i)
		f, _ := frames.VXLAN(outer(), in)
		if v := runFrame(t, p, f); v != frames.Drop {
			t.Fatalf("frame %d: verdict %v", i, v)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sink := &batchSink{onSeg: func(n int) {
		if n == len(sizes) {
			cancel()
		}
	}}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sink) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not deliver the events and return after ctx was cancelled")
	}
	if len(sink.segs) != len(sizes) {
		t.Fatalf("Run delivered %d segments, want %d", len(sink.segs), len(sizes))
	}
	for i, s := range sink.segs {
		if s.hdr.Seq != uint32(i) || !bytes.Equal(s.payload, frames.Pattern(sizes[i])) {
			t.Errorf("segment %d: seq %d, %d payload bytes; want seq %d, %d bytes", i, s.hdr.Seq, len(s.payload), i, sizes[i])
		}
	}
	if sink.flushes == 0 || sink.pending != 0 {
		t.Errorf("Run flushed %d times, %d segments left unflushed; want the batch flushed", sink.flushes, sink.pending)
	}
}

// countSink counts segments and cancels when it has seen want.
type countSink struct {
	n, want int
	cancel  context.CancelFunc
}

func (s *countSink) Segment(*event.Header, []byte) {
	s.n++
	if s.n == s.want {
		s.cancel()
	}
}
func (s *countSink) Flush() {}

// TestRunNoAllocPerEvent checks the reader's promise: no heap allocation per
// event.
func TestRunNoAllocPerEvent(t *testing.T) {
	p := loadTest(t, tableConfig())
	f, _ := frames.VXLAN(outer(), inner(frames.Pattern(1448)))
	const events = 2000
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := p.Program().Run(&ebpf.RunOptions{Data: f, Repeat: events}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := p.Run(ctx, &countSink{want: events, cancel: cancel}); err != nil {
			t.Fatal(err)
		}
	})
	// A few allocations per call (the context, the test run) are fine; one
	// per event is not.
	if allocs > events/20 {
		t.Errorf("%.0f allocations to read %d events: the reader allocates per event", allocs, events)
	}
	c := counters(t, p)
	if c.Outcomes[event.LostRingbuf] != 0 {
		t.Errorf("lost_ringbuf %d: the 16 MiB ring should hold %d events", c.Outcomes[event.LostRingbuf], events)
	}
}

// TestMapNamesSayWhose checks that every map the program loads carries the
// shadowtap_ prefix, so `bpftool map list` on a busy host says whose it is.
func TestMapNamesSayWhose(t *testing.T) {
	p := loadTest(t, Config{Ports: []uint16{8080}})
	for name, m := range map[string]*ebpf.Map{
		"stats": p.objs.ShadowtapStats, "vnis": p.objs.ShadowtapVnis, "sources": p.objs.ShadowtapSrcs,
		"ports": p.objs.ShadowtapPorts, "wake": p.objs.ShadowtapWake, "ring": p.objs.ShadowtapRing,
	} {
		info, err := m.Info()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.HasPrefix(info.Name, "shadowtap_") {
			t.Errorf("the %s map is named %q in the kernel, want a shadowtap_ prefix", name, info.Name)
		}
	}
}

// TestUnservedPorts checks the sketch that names the ports the mirror
// carries when --ports matches nothing.
func TestUnservedPorts(t *testing.T) {
	p := loadTest(t, Config{Ports: []uint16{8080}})
	send := func(port uint16, n int) {
		in := inner([]byte("x"))
		in.DstPort = port
		f, _ := frames.VXLAN(outer(), in)
		for range n {
			runFrame(t, p, f)
		}
	}
	send(443, 3)
	send(9443, 1)
	send(8080, 2) // served: not in the sketch
	got, err := p.UnservedPorts()
	if err != nil {
		t.Fatal(err)
	}
	want := []event.PortCount{{Port: 443, Segments: 3}, {Port: 9443, Segments: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("UnservedPorts = %v, want %v", got, want)
	}
}
