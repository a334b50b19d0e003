package xdp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
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

// nopSink consumes events as fast as Run reads them.
type nopSink struct{ n int }

func (s *nopSink) Segment(*event.Header, []byte) { s.n++ }
func (s *nopSink) Flush()                        {}

// benchChunk is the largest Repeat per BPF_PROG_TEST_RUN call: the empty and
// shadowtap programs alternate by chunk, so machine noise hits both alike.
const benchChunk = 50_000

// BenchmarkXDP compares the per-packet cost of shadowtap's program with an
// empty XDP program on the same frames, through BPF_PROG_TEST_RUN with
// Repeat, while Run drains the ring on another goroutine. ns/op is
// shadowtap's ns per packet; empty-ns/pkt the empty program's; ratio the
// quotient (targets: non-vxlan ≤ 1.1, accepted-1448 ≤ 2); lost/pkt the share
// of events the ring had no room for (should be 0: the reader kept up).
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
		verdict frames.Verdict
	}{
		{"non-vxlan", ssh, frames.Pass},
		{"accepted-64", accepted(64), frames.Drop},
		{"accepted-1448", accepted(1448), frames.Drop},
		{"accepted-8948", accepted(8948), frames.Drop},
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
			before := counters(b, p)
			var emptyT, progT time.Duration
			for left := b.N; left > 0; left -= benchChunk {
				n := min(left, benchChunk)
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
			}
			after := counters(b, p)
			progNs := float64(progT.Nanoseconds()) / float64(b.N)
			emptyNs := float64(emptyT.Nanoseconds()) / float64(b.N)
			b.ReportMetric(progNs, "ns/op")
			b.ReportMetric(emptyNs, "empty-ns/pkt")
			b.ReportMetric(progNs/emptyNs, "ratio")
			b.ReportMetric(float64(after.Outcomes[event.LostRingbuf]-before.Outcomes[event.LostRingbuf])/float64(b.N), "lost/pkt")
		})
	}
}
