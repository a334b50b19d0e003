package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/capture"
	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// Issue 2: real HTTP conversations through the mirror lab come out of the XDP
// ring as events whose payloads, per connection and direction, are exactly
// the bytes the client sent and the server answered; and the counters add up.
func TestLabXDPEventsCarryConversationBytes(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), labDeadline)
	defer cancel()
	srv := startProdServer(t, ctx, lab)
	probe := attachXDP(t, lab)
	rec := &recorder{}
	stop := runSource(t, probe, rec)

	base := settledOffset(t, ctx, lab, probe)
	rx0, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
	if err != nil {
		t.Fatal(err)
	}
	convs := labConversations()
	got := runConversations(t, ctx, lab, convs)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// Every packet that arrived on the mirror interface ended in exactly one
	// outcome: the offset between the two counts has not moved.
	if end := settledOffset(t, ctx, lab, probe); end != base {
		t.Errorf("rx_packets - sum(outcomes) moved from %d to %d: %d packets arrived on %s without exactly one outcome",
			base, end, end-base, lab.RecvIface)
	}
	c := waitDrained(t, probe, rec)
	stop()
	rx1, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
	if err != nil {
		t.Fatalf("reading %s's counters after the run: %v", lab.RecvIface, err)
	}
	if rx1.RxPackets-rx0.RxPackets < c.Outcomes[event.Emit] {
		t.Errorf("%d packets arrived on %s during the test, yet %d were emitted", rx1.RxPackets-rx0.RxPackets, lab.RecvIface, c.Outcomes[event.Emit])
	}
	if c.Outcomes[event.Emit] == 0 {
		t.Fatalf("nothing emitted: %+v", c.Outcomes)
	}
	t.Logf("rx_packets - outcomes offset %d; outcomes %v, truncated %d, bytes %d", base, c.Outcomes, c.Truncated, c.Bytes)
	if c.Truncated != 0 {
		t.Errorf("truncated = %d: the lab's mirror carries whole 9001-MTU frames", c.Truncated)
	}

	segs := rec.Segments()
	for _, conv := range convs {
		t.Run(conv.name, func(t *testing.T) {
			cv := got[conv.name]
			for _, d := range []struct {
				name     string
				src, dst netip.AddrPort
				dir      event.Direction
				want     []byte
			}{
				{name: "request", src: cv.Local, dst: cv.Remote, dir: event.Request, want: cv.Sent},
				{name: "response", src: cv.Remote, dst: cv.Local, dir: event.Response, want: cv.Received},
			} {
				b, maxSeg, err := directionBytes(segs, d.src, d.dst, d.dir)
				if err != nil {
					t.Errorf("%s direction: %v", d.name, err)
					continue
				}
				if !bytes.Equal(b, d.want) {
					t.Errorf("%s direction: the events' payloads differ from what went over the connection: %s", d.name, firstDiff(b, d.want))
				}
				if conv.jumbo && d.dir == event.Response && maxSeg < lab.ClientMTU-100 {
					t.Errorf("largest response segment %d bytes: want full jumbo segments (MTU %d) delivered whole", maxSeg, lab.ClientMTU)
				}
			}
		})
	}
}

// Issues 3 and 5: the kernel's conversations, captured by XDP or by the
// socket source, go through the flow and HTTP stages and come out as exactly
// the requests and responses the production server logged; and both sources
// give the same requests.
func TestLabExchangesMatchServer(t *testing.T) {
	testenv.RequireRoot(t)
	results := make(map[string]map[string][]exchangeView)
	for _, kind := range []string{CaptureXDP, CaptureSocket} {
		t.Run(kind, func(t *testing.T) {
			lab := testenv.NewLab(t, testenv.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), labDeadline)
			defer cancel()
			srv := startProdServer(t, ctx, lab)
			src := newLabSource(t, lab, kind)
			rig := newHTTPRig(t)
			rec := &recorder{next: rig.disp}
			stop := runSource(t, src, rec)

			convs := runConversations(t, ctx, lab, labConversations())
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			logged := srv.Exchanges()
			waitUntil(t, "every logged exchange to be rebuilt", time.Minute, func() (bool, string) {
				n := rig.log.Done()
				return n >= len(logged), fmt.Sprintf("%d of %d", n, len(logged))
			})
			waitDrained(t, src, rec)
			stop()
			rig.close()
			rig.log.check(t)
			rig.checkClean(t)
			results[kind] = compareWithServer(t, rig.log.Exchanges(), logged, convs)
		})
	}
	x, s := results[CaptureXDP], results[CaptureSocket]
	if x == nil || s == nil {
		t.Fatal("a source failed; not comparing them")
	}
	for _, conv := range labConversations() {
		a, b := x[conv.name], s[conv.name]
		if len(a) != len(b) {
			t.Errorf("%s: %d exchanges through XDP, %d through the socket source", conv.name, len(a), len(b))
			continue
		}
		for i := range a {
			for _, d := range diffView(b[i], a[i]) {
				t.Errorf("%s exchange %d: socket source vs XDP: %s", conv.name, i, d)
			}
		}
	}
}

// labGenConfig is generated mirror traffic addressed like the lab's mirror
// session (outer source prod mir0, destination recv mir0, the lab's VNI),
// with every kind of exchange and some IPv6 connections.
func labGenConfig(lab *testenv.Lab, srcMAC, dstMAC []byte) mirrorgen.Config {
	return mirrorgen.Config{
		Conns: 4, TotalConns: 10, RequestsPerConn: 4,
		Mix:         mirrorgen.Mix{Small: 4, Large: 1, Head: 1, Post: 2, Pipelined: 1},
		LargeKiB:    48,
		IPv6Percent: 30,
		VNI:         lab.VNI, VXLANPort: lab.VXLANPort,
		Source: lab.MirrorSource4, Receiver: lab.RecvAddr4,
		SrcMAC: srcMAC, DstMAC: dstMAC,
		Server:   netip.AddrPortFrom(netip.MustParseAddr("10.1.0.10"), labPort),
		ServerV6: netip.AddrPortFrom(netip.MustParseAddr("fd00:1::10"), labPort),
		Seed:     42,
		Rate:     5000, // paced so the veth's 256-frame NAPI ring never fills
		Batch:    16,
		Truth:    true,
	}
}

// Issue 5, shared check: the same mirror frames, sent to the receiver once
// with XDP attached and once with the socket source, give the same emit
// count, the same events, and the generator's conversations.
func TestLabSocketAndXDPAgree(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	if lab.OuterIPv6 {
		t.Fatal("mirrorgen sends an IPv4 outer header; the lab must mirror over IPv4")
	}
	srcMAC := interfaceMAC(t, lab, lab.ProdNS, testenv.ProdMirrorIface)
	dstMAC := interfaceMAC(t, lab, lab.RecvNS, lab.RecvIface)

	type result struct {
		counters event.Counters
		events   []segment
		frames   uint64
	}
	results := make(map[string]result)
	for _, kind := range []string{CaptureXDP, CaptureSocket} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), labDeadline)
			defer cancel()
			src := newLabSource(t, lab, kind)
			rig := newHTTPRig(t)
			rec := &recorder{next: rig.disp}
			stop := runSource(t, src, rec)

			gen, err := mirrorgen.New(labGenConfig(lab, srcMAC, dstMAC))
			if err != nil {
				t.Fatal(err)
			}
			var w *mirrorgen.PacketWriter
			if err := lab.Do(lab.ProdNS, func() error {
				var err error
				w, err = mirrorgen.NewPacketWriter(testenv.ProdMirrorIface)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			sum, err := gen.Run(ctx, w)
			dropped := w.Dropped()
			w.Close()
			if err != nil {
				t.Fatalf("generating: %v", err)
			}
			if dropped != 0 {
				t.Fatalf("the raw socket refused %d of %d frames", dropped, sum.Packets)
			}
			// Every generated frame is a TCP segment of the served port.
			waitUntil(t, "every frame to be emitted", time.Minute, func() (bool, string) {
				c, _ := src.Counters()
				return c.Outcomes[event.Emit] >= sum.Packets, fmt.Sprintf("outcomes %v, %d frames sent", c.Outcomes, sum.Packets)
			})
			c := waitDrained(t, src, rec)
			stop()
			rig.close()
			if c.Outcomes[event.Emit] != sum.Packets {
				t.Errorf("emit = %d, want the %d frames sent", c.Outcomes[event.Emit], sum.Packets)
			}
			rig.log.check(t)
			rig.checkClean(t)
			compareWithTruth(t, rig.log.Exchanges(), gen.Truth())
			results[kind] = result{counters: c, events: canonicalEvents(rec.Segments()), frames: sum.Packets}
		})
	}
	x, s := results[CaptureXDP], results[CaptureSocket]
	if x.frames == 0 || s.frames == 0 {
		t.Fatal("a source failed; not comparing them")
	}
	if x.frames != s.frames {
		t.Fatalf("the generator sent %d frames, then %d: same seed, same traffic expected", x.frames, s.frames)
	}
	if xe, se := x.counters.Outcomes[event.Emit], s.counters.Outcomes[event.Emit]; xe != se {
		t.Errorf("emit: XDP %d, socket %d", xe, se)
	}
	if x.counters.Truncated != s.counters.Truncated {
		t.Errorf("truncated: XDP %d, socket %d", x.counters.Truncated, s.counters.Truncated)
	}
	if len(x.events) != len(s.events) {
		t.Fatalf("%d events through XDP, %d through the socket source", len(x.events), len(s.events))
	}
	for i := range x.events {
		a, b := x.events[i], s.events[i]
		if a.h != b.h || !bytes.Equal(a.payload, b.payload) {
			t.Fatalf("event %d differs:\nXDP    %+v (%d bytes)\nsocket %+v (%d bytes)", i, a.h, len(a.payload), b.h, len(b.payload))
		}
	}
}

// Issue 5: a capture file written by the project's generator, read back
// through the pcap source, the flow stage and the HTTP parser, gives exactly
// the generator's conversations. No lab and no privilege needed.
func TestPcapGivesGeneratedConversations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format mirrorgen.FileFormat
		mss    int
		v6     int
		mix    mirrorgen.Mix
	}{
		{name: "pcap", format: mirrorgen.FormatPcap, mss: mirrorgen.DefaultMSS,
			mix: mirrorgen.Mix{Small: 5, Large: 1, Head: 1, Post: 2, Pipelined: 2}},
		{name: "pcapng-jumbo-ipv6", format: mirrorgen.FormatPcapNG, mss: mirrorgen.JumboMSS, v6: 50,
			mix: mirrorgen.Mix{Small: 3, Large: 2, Head: 1, Post: 2, Pipelined: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen, err := mirrorgen.New(mirrorgen.Config{
				Conns: 6, TotalConns: 12, RequestsPerConn: 5,
				Mix: tc.mix, MSS: tc.mss, IPv6Percent: tc.v6, LargeKiB: 64,
				VNI: 7, Seed: 1, Truth: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "mirror."+tc.name)
			f, err := os.Create(file)
			if err != nil {
				t.Fatal(err)
			}
			fw, err := mirrorgen.NewFileWriter(f, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := gen.Run(context.Background(), fw)
			if err != nil {
				t.Fatal(err)
			}
			if err := fw.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if sum.Requests != sum.RequestsSent || sum.Responses != sum.ResponsesSent {
				t.Fatalf("generator cut short: %v", sum)
			}

			src, err := capture.NewPcap(capture.PcapConfig{File: file, Speed: "max", Decap: decap.Config{
				Ports: []uint16{labPort}, VNIs: []uint32{7},
			}}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			rig := newHTTPRig(t)
			rec := &recorder{next: rig.disp}
			ctx, cancel := context.WithTimeout(context.Background(), labDeadline)
			defer cancel()
			if err := src.Run(ctx, rec); err != nil {
				t.Fatalf("reading %s: %v", file, err)
			}
			rig.close()

			c, _ := src.Counters()
			st := src.Stats()
			if st.Frames != sum.Packets || st.Unreadable != 0 {
				t.Errorf("pcap source read %d frames (%d unreadable), the file holds %d", st.Frames, st.Unreadable, sum.Packets)
			}
			if c.Packets() != st.Frames || c.Outcomes[event.Emit] != sum.Packets || rec.Count() != sum.Packets {
				t.Errorf("outcomes %v (sum %d), events received %d: want every one of the %d frames emitted and received",
					c.Outcomes, c.Packets(), rec.Count(), sum.Packets)
			}
			rig.log.check(t)
			rig.checkClean(t)
			got := rig.log.Exchanges()
			compareWithTruth(t, got, gen.Truth())
			n := 0
			for _, v := range got {
				n += len(v)
			}
			if uint64(n) != sum.Requests {
				t.Errorf("rebuilt %d exchanges, generated %d", n, sum.Requests)
			}
			methods := map[string]bool{}
			for _, conv := range gen.Truth() {
				for _, r := range conv.Requests {
					methods[r.Method] = true
				}
			}
			if ms := slices.Sorted(maps.Keys(methods)); !slices.Equal(ms, []string{"GET", "HEAD", "POST"}) {
				t.Errorf("the generated file has methods %v; the test wants GET, HEAD and POST", ms)
			}
		})
	}
}
