package capture

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/frames"
)

// sockSink records every segment as an encoded record (TimeNs zeroed),
// and checks that Segment is never called concurrently.
type sockSink struct {
	mu      sync.Mutex
	inside  atomic.Int32
	records []string
	flushes int
	times   []uint64
	overlap bool
}

func (c *sockSink) Segment(h *event.Header, p []byte) {
	if c.inside.Add(1) != 1 {
		c.overlap = true
	}
	defer c.inside.Add(-1)
	c.mu.Lock()
	defer c.mu.Unlock()
	hh := *h
	c.times = append(c.times, hh.TimeNs)
	hh.TimeNs = 0
	c.records = append(c.records, string(event.Encode(nil, &hh, p)))
}

func (c *sockSink) Flush() {
	c.mu.Lock()
	c.flushes++
	c.mu.Unlock()
}

func (c *sockSink) snapshot() ([]string, []uint64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.records), slices.Clone(c.times), c.flushes
}

func sockLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// sockWaitPackets polls Counters until it counts want packets or time runs out.
func sockWaitPackets(t *testing.T, s *Socket, want uint64) event.Counters {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c.Packets() >= want || time.Now().After(deadline) {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sockStartRun(t *testing.T, s *Socket, sink event.Batcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sink) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
		s.Close()
	})
}

var sockNsCounter atomic.Int64

// sockNetns creates a fresh named network namespace with lo up and addrs on
// it, removed in t.Cleanup, and returns a function that runs f inside it on
// a locked thread.
func sockNetns(t *testing.T, addrs ...string) func(f func()) {
	t.Helper()
	name := fmt.Sprintf("sttest-cap-%d-%d", os.Getpid(), sockNsCounter.Add(1))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to original netns: %v", err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	for _, a := range addrs {
		p := netip.MustParseAddr(a)
		bits := 32
		if p.Is6() {
			bits = 128
		}
		ad, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", a, bits))
		if err != nil {
			t.Fatal(err)
		}
		ad.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(lo, ad); err != nil {
			t.Fatalf("add %s to lo in %s: %v", a, name, err)
		}
	}
	// The kernel inserts an IPv6 address's local route from a work queue,
	// after AddrAdd returns: wait for it, or the first datagrams vanish.
	for _, a := range addrs {
		deadline := time.Now().Add(5 * time.Second)
		for {
			rs, err := h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL},
				netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
			if err == nil && slices.ContainsFunc(rs, func(r netlink.Route) bool {
				if r.Dst == nil {
					return false
				}
				ip, ok := netip.AddrFromSlice(r.Dst.IP)
				return ok && ip.Unmap() == netip.MustParseAddr(a)
			}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no local route for %s in %s: %v", a, name, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return func(f func()) {
		// The thread is unlocked only once it is back in its own netns; a
		// thread that cannot return dies with its goroutine.
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			back, err := netns.Get()
			if err != nil {
				t.Errorf("get current netns: %v", err)
				return
			}
			defer back.Close()
			if err := netns.Set(ns); err != nil {
				t.Errorf("enter %s: %v", name, err)
				return
			}
			f()
			if netns.Set(back) == nil {
				runtime.UnlockOSThread()
			}
		}()
		<-done
	}
}

// TestSocketVectors sends every socket-path row of the shared table, from
// its own outer source address, to a Socket in a fresh netns, and checks the
// events and that the counters add up to the datagrams sent.
func TestSocketVectors(t *testing.T) {
	testenv.RequireRoot(t)
	vs := frames.Vectors()
	srcs := map[netip.Addr]bool{}
	for _, v := range vs {
		if v.UDPPayload != nil {
			srcs[v.OuterSrc] = true
		}
	}
	var addrs []string
	for a := range srcs {
		addrs = append(addrs, a.String())
	}
	run := sockNetns(t, addrs...)

	tc := frames.Config()
	var s *Socket
	senders := map[netip.Addr]*net.UDPConn{}
	run(func() {
		var err error
		s, err = NewSocket(SocketConfig{Sockets: 2, RcvBuf: 8 << 20,
			Decap: decap.Config{Ports: tc.Ports, VNIs: tc.VNIs, Sources: tc.Sources, VXLANPort: tc.VXLANPort}}, sockLog())
		if err != nil {
			t.Error(err)
			return
		}
		for a := range srcs {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: a.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, tc.VXLANPort)))
			if err != nil {
				t.Errorf("sender from %s: %v", a, err)
				return
			}
			t.Cleanup(func() { c.Close() })
			senders[a] = c
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	if got := s.Addr().Port(); got != tc.VXLANPort {
		t.Errorf("bound port %d, want %d", got, tc.VXLANPort)
	}
	sink := &sockSink{}
	sockStartRun(t, s, sink)

	var want []string
	var wantOut [event.NumOutcomes]uint64
	var wantBytes, wantTrunc, sent uint64
	for _, v := range vs {
		if v.UDPPayload == nil {
			continue
		}
		if _, err := senders[v.OuterSrc].Write(v.UDPPayload); err != nil {
			t.Fatalf("send %s: %v", v.Name, err)
		}
		sent++
		wantOut[v.Outcome]++
		wantBytes += uint64(len(v.UDPPayload))
		if v.Event != nil {
			h := *v.Event
			h.TimeNs = 0
			want = append(want, string(event.Encode(nil, &h, v.Payload)))
			if h.Truncated() {
				wantTrunc++
			}
		}
	}
	c := sockWaitPackets(t, s, sent)
	if c.Packets() != sent || c.Outcomes != wantOut || c.Bytes != wantBytes || c.Truncated != wantTrunc {
		t.Errorf("counters %+v\nwant outcomes %v bytes %d truncated %d (sent %d)", c, wantOut, wantBytes, wantTrunc, sent)
	}
	// Events reach the sink after the counters move: wait for them too.
	deadline := time.Now().Add(5 * time.Second)
	var got []string
	var times []uint64
	var flushes int
	for {
		got, times, flushes = sink.snapshot()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%d events, want %d", len(got), len(want))
		for _, w := range want {
			if !slices.Contains(got, w) {
				var h event.Header
				p, _ := event.Decode([]byte(w), &h)
				t.Errorf("missing event %+v payload %.30q", h, p)
			}
		}
	}
	if flushes == 0 {
		t.Error("sink never flushed")
	}
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	for _, ts := range times {
		if ts == 0 || ts > uint64(now.Nano()) {
			t.Errorf("event time %d not a monotonic time before now (%d)", ts, now.Nano())
			break
		}
	}
	if sink.overlap {
		t.Error("Segment called concurrently")
	}
}

// TestSocketKernelDrops fills a tiny socket buffer before anything reads it:
// the datagrams the kernel drops are counted in lost_ringbuf, so the
// counters still add up to what was sent.
func TestSocketKernelDrops(t *testing.T) {
	testenv.RequireRoot(t)
	run := sockNetns(t)
	var s *Socket
	var snd *net.UDPConn
	run(func() {
		var err error
		s, err = NewSocket(SocketConfig{ListenAddr: "127.0.0.1", Sockets: 1, RcvBuf: 4096,
			Decap: decap.Config{Ports: []uint16{8080}}}, sockLog())
		if err != nil {
			t.Error(err)
			return
		}
		snd, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { snd.Close() })
	})
	if t.Failed() {
		t.FailNow()
	}
	o := frames.Outer{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), VNI: 1}
	in := frames.Inner{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1234, DstPort: 8080, Flags: event.TCPAck, Payload: frames.Pattern(1000)}
	pl := frames.UDPPayload(o, in)
	const n = 200
	for range n {
		if _, err := snd.Write(pl); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing reads yet: the kernel has dropped most of them already.
	if d := s.KernelDrops(); d == 0 {
		t.Errorf("no kernel drops counted with a 4 KiB buffer and %d datagrams", n)
	}
	sink := &sockSink{}
	sockStartRun(t, s, sink)
	c := sockWaitPackets(t, s, n)
	if c.Packets() != n || c.Outcomes[event.Emit]+c.Outcomes[event.LostSocket] != n || c.Outcomes[event.LostSocket] == 0 {
		t.Errorf("counters %+v: want %d packets, emit + lost_socket = %d, some lost", c, n, n)
	}
	if d := s.KernelDrops(); d != c.Outcomes[event.LostSocket] {
		t.Errorf("KernelDrops %d, lost_socket %d", d, c.Outcomes[event.LostSocket])
	}
}

// TestSocketLoopback needs no root: two datagrams on 127.0.0.1 give their
// events, and Run returns on cancel.
func TestSocketLoopback(t *testing.T) {
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	s, err := NewSocket(SocketConfig{ListenAddr: "127.0.0.1", VXLANPort: uint16(port), Sockets: 3, RcvBuf: 1 << 20,
		Decap: decap.Config{Ports: []uint16{80}, Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, sockLog())
	if err != nil {
		t.Fatal(err)
	}
	sink := &sockSink{}
	sockStartRun(t, s, sink)
	snd, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	o := frames.Outer{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), VNI: 5}
	get := frames.Inner{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1234, DstPort: 80, Seq: 7, Flags: event.TCPAck | event.TCPPsh, Payload: []byte("GET / HTTP/1.1\r\n\r\n")}
	other := get
	other.DstPort = 81
	for _, in := range []frames.Inner{get, other} {
		if _, err := snd.Write(frames.UDPPayload(o, in)); err != nil {
			t.Fatal(err)
		}
	}
	c := sockWaitPackets(t, s, 2)
	if c.Outcomes[event.Emit] != 1 || c.Outcomes[event.DropPort] != 1 {
		t.Errorf("counters %+v, want one emit and one drop_port", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, _ := sink.snapshot()
		if len(got) == 1 {
			var h event.Header
			p, _ := event.Decode([]byte(got[0]), &h)
			if h.DstPort != 80 || h.Seq != 7 || h.VNI != 5 || !bytes.Equal(p, get.Payload) {
				t.Errorf("event %+v payload %q", h, p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events, want 1", len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewSocketPortTaken(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	_, err = NewSocket(SocketConfig{ListenAddr: "127.0.0.1", VXLANPort: uint16(port), Sockets: 1}, sockLog())
	if err == nil {
		t.Fatal("NewSocket on a taken port succeeded")
	}
	t.Log(err)
}

type countSink struct{ n atomic.Uint64 }

func (c *countSink) Segment(*event.Header, []byte) { c.n.Add(1) }
func (c *countSink) Flush()                        {}

// BenchmarkSocket measures the socket source end to end on loopback: one
// sender blasting 1448-byte segments at one socket. ns/op is per datagram
// sent; lost% is the share the kernel dropped because the reader fell behind.
func BenchmarkSocket(b *testing.B) {
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	s, err := NewSocket(SocketConfig{ListenAddr: "127.0.0.1", VXLANPort: uint16(port), Sockets: 1, RcvBuf: 32 << 20,
		Decap: decap.Config{Ports: []uint16{8080}}}, sockLog())
	if err != nil {
		b.Fatal(err)
	}
	sink := &countSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sink) }()
	defer func() { cancel(); <-done; s.Close() }()
	snd, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer snd.Close()
	o := frames.Outer{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), VNI: 1}
	in := frames.Inner{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1234, DstPort: 8080,
		Flags: event.TCPAck, TCPOptions: frames.TSOption(1, 2), Payload: frames.Pattern(1448)}
	pl := frames.UDPPayload(o, in)
	b.SetBytes(int64(len(pl)))
	for b.Loop() {
		if _, err := snd.Write(pl); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var c event.Counters
	for time.Now().Before(deadline) {
		c, _ = s.Counters()
		if c.Packets() >= uint64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(100*float64(c.Outcomes[event.LostSocket])/float64(b.N), "lost%")
}
