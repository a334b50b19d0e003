package xdp

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/frames"
)

// emptyXDP loads a program that only returns XDP_PASS, as an xdp.frags
// program so it takes the same multi-buffer frames.
func emptyXDP(b *testing.B) *ebpf.Program {
	b.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "empty_xdp",
		Type:         ebpf.XDP,
		License:      "GPL",
		Flags:        unix.BPF_F_XDP_HAS_FRAGS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, int32(frames.Pass)), asm.Return()},
	})
	if err != nil {
		b.Fatalf("load the empty XDP program: %v", err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// floorXDP loads the copy-only floor of an accepted segment: what any
// program that hands n payload bytes at offset off to user space through a
// ring buffer must do, and nothing else (no parsing, no counters, no
// clock): reserve a record for the header and the payload, copy the
// payload with bpf_xdp_load_bytes, submit without a wakeup (as shadowtap
// batches them). The ring is drained by a polling goroutine until cleanup.
func floorXDP(b *testing.B, off, n int) (*ebpf.Program, *ringbuf.Reader, *atomic.Int64) {
	b.Helper()
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Name: "floor_ring", Type: ebpf.RingBuf, MaxEntries: 16 << 20})
	if err != nil {
		b.Fatalf("floor ring: %v", err)
	}
	rec := int32(event.HeaderSize + n)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Imm(asm.R2, rec),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, int32(off)),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, int32(event.HeaderSize)),
		asm.Mov.Imm(asm.R4, int32(n)),
		asm.FnXdpLoadBytes.Call(),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Mov.Imm(asm.R2, 1), // BPF_RB_NO_WAKEUP: as shadowtap, no wakeup per record
		asm.FnRingbufSubmit.Call(),
		asm.Mov.Imm(asm.R0, int32(frames.Drop)).WithSymbol("out"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "floor_xdp", Type: ebpf.XDP, License: "GPL", Flags: unix.BPF_F_XDP_HAS_FRAGS, Instructions: insns,
	})
	if err != nil {
		ring.Close()
		b.Fatalf("load the copy-only floor program: %v", err)
	}
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	read := new(atomic.Int64)
	wg.Go(func() {
		// Without wakeups the reader polls, as shadowtap's does.
		var r ringbuf.Record
		for {
			rd.SetDeadline(time.Now().Add(PollInterval))
			err := rd.ReadInto(&r)
			switch {
			case err == nil:
				read.Add(1)
			case !errors.Is(err, os.ErrDeadlineExceeded):
				return
			}
		}
	})
	b.Cleanup(func() { rd.Close(); wg.Wait(); prog.Close(); ring.Close() })
	return prog, rd, read
}

// drained waits until the readers have emptied their rings.
func drained(rds ...*ringbuf.Reader) {
	for _, rd := range rds {
		for rd.AvailableBytes() > 0 {
			time.Sleep(PollInterval)
		}
	}
}

// settle waits until n stops growing (the floor's reader has drained its
// ring) and returns it.
func settle(n *atomic.Int64) int64 {
	last := n.Load()
	for {
		time.Sleep(5 * PollInterval)
		if v := n.Load(); v != last {
			last = v
			continue
		}
		return last
	}
}

// nopSink consumes events as fast as Run reads them.
type nopSink struct{ n int }

func (s *nopSink) Segment(*event.Header, []byte) { s.n++ }
func (s *nopSink) Flush()                        {}

// benchChunk is the largest Repeat per BPF_PROG_TEST_RUN call: the empty and
// shadowtap programs alternate by chunk, so machine noise hits both alike.
const benchChunk = 50_000

// BenchmarkXDP compares the per-packet cost of shadowtap's program with an
// empty XDP program and, for accepted segments, with the copy-only floor
// (floorXDP) on the same frames, through BPF_PROG_TEST_RUN with Repeat,
// while Run drains the ring on another goroutine. ns/op is shadowtap's ns
// per packet; empty-ns/pkt the empty program's and ratio the quotient;
// floor-ns/pkt the floor's and floor-ratio shadowtap over the floor (what
// parsing, allowlists, counters and the clock add to the unavoidable copy);
// lost/pkt the share of events the ring had no room for.
func BenchmarkXDP(b *testing.B) {
	testenv.RequireRoot(b)
	o := frames.Outer{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 51000, VNI: frames.VNI}
	accepted := func(n int) []byte {
		in := inner(frames.Pattern(n))
		in.TCPOptions = frames.TSOption(1, 2)
		f, _ := frames.VXLAN(o, in)
		return f
	}
	ssh, _ := frames.Ethernet(frames.Inner{
		Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.9.9"),
		SrcPort: 50022, DstPort: 22, Seq: 1, Ack: 1, Flags: event.TCPAck | event.TCPPsh,
		TCPOptions: frames.TSOption(1, 2), Payload: frames.Pattern(100),
	})
	cases := []struct {
		name    string
		frame   []byte
		payload int // accepted: bytes of TCP payload at the frame's end
		verdict frames.Verdict
	}{
		{"non-vxlan", ssh, 0, frames.Pass},
		{"accepted-64", accepted(64), 64, frames.Drop},
		{"accepted-1448", accepted(1448), 1448, frames.Drop},
		{"accepted-8948", accepted(8948), 8948, frames.Drop},
	}

	empty := emptyXDP(b)
	p := loadTest(b, tableConfig())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(ctx, &nopSink{}); err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	b.Cleanup(func() { cancel(); wg.Wait() })

	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var floor *ebpf.Program
			var floorRing *ringbuf.Reader
			var floorRead *atomic.Int64
			rings := []*ringbuf.Reader{p.reader}
			chunk := benchChunk
			if c.payload > 0 {
				floor, floorRing, floorRead = floorXDP(b, len(c.frame)-c.payload, c.payload)
				rings = append(rings, floorRing)
				// Chunks of half a ring, drained between them (outside
				// the timings): a reader cannot keep up with one core
				// looping the program, and a lost event costs almost
				// nothing, which would flatter both programs.
				chunk = min(chunk, floorRing.BufferSize()/(event.HeaderSize+c.payload)/2)
			}
			before := counters(b, p)
			var emptyT, progT, floorT time.Duration
			for left := b.N; left > 0; left -= chunk {
				n := min(left, chunk)
				drained(rings...)
				ret, d, err := empty.Benchmark(c.frame, n, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != uint32(frames.Pass) {
					b.Fatalf("empty program returned %d", ret)
				}
				emptyT += d * time.Duration(n)
				ret, d, err = p.Program().Benchmark(c.frame, n, nil)
				if err != nil {
					b.Fatal(err)
				}
				if frames.Verdict(ret) != c.verdict {
					b.Fatalf("verdict %v, want %v", frames.Verdict(ret), c.verdict)
				}
				progT += d * time.Duration(n)
				if floor != nil {
					if _, d, err = floor.Benchmark(c.frame, n, nil); err != nil {
						b.Fatal(err)
					}
					floorT += d * time.Duration(n)
				}
			}
			after := counters(b, p)
			progNs := float64(progT.Nanoseconds()) / float64(b.N)
			emptyNs := float64(emptyT.Nanoseconds()) / float64(b.N)
			b.ReportMetric(progNs, "ns/op")
			b.ReportMetric(emptyNs, "empty-ns/pkt")
			b.ReportMetric(progNs/emptyNs, "ratio")
			if floor != nil {
				floorNs := float64(floorT.Nanoseconds()) / float64(b.N)
				b.ReportMetric(floorNs, "floor-ns/pkt")
				b.ReportMetric(progNs/floorNs, "floor-ratio")
				b.ReportMetric(max(0, 1-float64(settle(floorRead))/float64(b.N)), "floor-lost/pkt")
			}
			b.ReportMetric(float64(after.Outcomes[event.LostRingbuf]-before.Outcomes[event.LostRingbuf])/float64(b.N), "lost/pkt")
		})
	}
}
