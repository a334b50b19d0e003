package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/capture"
	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/xdp"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// labPort is the mirrored service's port in every lab test.
const labPort = 8080

// labDeadline bounds a whole lab test: a hang detector, not a timing.
const labDeadline = 3 * time.Minute

// testLogger logs warnings and errors into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// ---------------------------------------------------------------------------
// Capture sources in the lab.

// attachXDP attaches shadowtap's XDP program to the lab's mirror interface,
// with the lab's VNI and mirror source allowed and labPort served, pinning
// under a directory of its own. It is detached at cleanup.
func attachXDP(t *testing.T, lab *testenv.Lab) *xdp.Probe {
	t.Helper()
	root := filepath.Join("/sys/fs/bpf", testenv.UniqueName("stpipe"))
	t.Cleanup(func() {
		// Probe.Close removes the pins and root/<iface>; root is ours.
		if err := os.Remove(root); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing pin root %s: %v", root, err)
		}
	})
	cfg := xdp.Config{
		Iface:   lab.RecvIface,
		Ports:   []uint16{labPort},
		VNIs:    []uint32{lab.VNI},
		Sources: []netip.Prefix{lab.MirrorSourcePrefix()},
		PinRoot: root,
	}
	var p *xdp.Probe
	err := lab.Do(lab.RecvNS, func() error {
		var err error
		p, err = xdp.Attach(cfg, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatalf("attaching XDP to %s in %s: %v", lab.RecvIface, lab.RecvNS, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("detaching XDP: %v", err)
		}
	})
	return p
}

// newSocketSource opens the --capture socket source in the receiver
// namespace, on the lab's VXLAN port, accepting what attachXDP accepts.
func newSocketSource(t *testing.T, lab *testenv.Lab) *capture.Socket {
	t.Helper()
	cfg := capture.SocketConfig{
		VXLANPort: lab.VXLANPort,
		Decap: decap.Config{
			Ports:     []uint16{labPort},
			VNIs:      []uint32{lab.VNI},
			Sources:   []netip.Prefix{lab.MirrorSourcePrefix()},
			VXLANPort: lab.VXLANPort,
		},
	}
	var s *capture.Socket
	err := lab.Do(lab.RecvNS, func() error {
		var err error
		s, err = capture.NewSocket(cfg, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatalf("opening the socket source in %s: %v", lab.RecvNS, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the socket source: %v", err)
		}
	})
	return s
}

// newLabSource returns the capture source of the given kind in lab.
func newLabSource(t *testing.T, lab *testenv.Lab, kind string) event.Source {
	t.Helper()
	switch kind {
	case CaptureXDP:
		return attachXDP(t, lab)
	case CaptureSocket:
		return newSocketSource(t, lab)
	}
	t.Fatalf("no lab source %q", kind)
	return nil
}

// runSource runs src.Run(ctx, sink) on its own goroutine. The returned stop
// (also run at cleanup; idempotent) ends it, waits for it and reports an
// error it returned. After stop, sink gets no more calls.
func runSource(t *testing.T, src event.Source, sink event.Batcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("capture source: %v", err)
				}
			case <-time.After(time.Minute):
				t.Errorf("capture source did not return within a minute of being stopped")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// ---------------------------------------------------------------------------
// Collecting sinks.

// segment is a copy of one event a source delivered.
type segment struct {
	h       event.Header
	payload []byte
}

// recorder is an event.Batcher that keeps a copy of every segment and hands
// it on to next, when set.
type recorder struct {
	next event.Batcher

	mu      sync.Mutex
	segs    []segment
	n       atomic.Uint64
	flushes atomic.Uint64
}

func (r *recorder) Segment(h *event.Header, payload []byte) {
	r.mu.Lock()
	r.segs = append(r.segs, segment{h: *h, payload: bytes.Clone(payload)})
	r.mu.Unlock()
	r.n.Add(1)
	if r.next != nil {
		r.next.Segment(h, payload)
	}
}

func (r *recorder) Flush() {
	r.flushes.Add(1)
	if r.next != nil {
		r.next.Flush()
	}
}

// Count is the number of segments received so far.
func (r *recorder) Count() uint64 { return r.n.Load() }

// Segments returns the segments received so far.
func (r *recorder) Segments() []segment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.segs)
}

// gotExchange is a copy of one exchange that came out of httpx.
type gotExchange struct {
	Client netip.AddrPort
	Seq    uint64

	Method, Target, Host string
	Header               http.Header // without Host and Transfer-Encoding
	Body                 []byte

	Reason   httpx.NoResponse
	Status   int
	RespBody []byte
	RespLen  int64
}

// exchangeLog is an httpx.Sink that checks the Request-then-Response
// contract and keeps a copy of every exchange once its response is known.
type exchangeLog struct {
	mu        sync.Mutex
	requested map[*httpx.Exchange]bool
	done      []gotExchange
	errs      []string
}

func newExchangeLog() *exchangeLog {
	return &exchangeLog{requested: make(map[*httpx.Exchange]bool)}
}

func (l *exchangeLog) Request(ex *httpx.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.requested[ex] {
		l.errs = append(l.errs, fmt.Sprintf("Request twice for %v #%d", ex.Conn, ex.Seq))
	}
	l.requested[ex] = true
}

func (l *exchangeLog) Response(ex *httpx.Exchange) {
	g := gotExchange{
		Client: ex.Conn.Client, Seq: ex.Seq,
		Method: string(ex.Req.Method), Target: string(ex.Req.Target),
		Header: http.Header{},
		Body:   bytes.Clone(ex.Req.Body),
		Reason: ex.Reason,
	}
	for _, f := range ex.Req.Fields {
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		switch k {
		case "Host":
			g.Host = string(f.Value)
		case "Transfer-Encoding":
		default:
			g.Header.Add(k, string(f.Value))
		}
	}
	if ex.Resp != nil {
		g.Status = ex.Resp.Status
		g.RespBody = bytes.Clone(ex.Resp.Body)
		g.RespLen = ex.Resp.BodyLen
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.requested[ex] {
		l.errs = append(l.errs, fmt.Sprintf("Response without Request for %v #%d", ex.Conn, ex.Seq))
	}
	delete(l.requested, ex)
	l.done = append(l.done, g)
}

// Done returns the number of exchanges whose response is known.
func (l *exchangeLog) Done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

// Exchanges returns the finished exchanges grouped by client address, each
// group in request order.
func (l *exchangeLog) Exchanges() map[netip.AddrPort][]gotExchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[netip.AddrPort][]gotExchange)
	for _, g := range l.done {
		k := unmapped(g.Client)
		out[k] = append(out[k], g)
	}
	for _, v := range out {
		slices.SortFunc(v, func(a, b gotExchange) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return out
}

// check reports Sink contract violations, and requests left without a
// response (the dispatcher must have been closed).
func (l *exchangeLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Errorf("httpx.Sink contract: %s", e)
	}
	if len(l.requested) > 0 {
		t.Errorf("%d requests never got their Response call", len(l.requested))
	}
}

// httpRig is the flow and HTTP stages fed by a capture source: a
// flow.Dispatcher with httpx handlers writing into an exchangeLog.
type httpRig struct {
	disp  *flow.Dispatcher
	log   *exchangeLog
	stats *httpx.Stats
	once  sync.Once
}

func newHTTPRig(t *testing.T) *httpRig {
	t.Helper()
	r := &httpRig{log: newExchangeLog(), stats: &httpx.Stats{}}
	log := testLogger(t)
	// Queues deep enough that a test's whole traffic fits: these tests are
	// about what is rebuilt, not about shedding load.
	cfg := flow.DispatchConfig{QueueLen: 256, BatchBytes: 64 << 10, Logger: log}
	r.disp = flow.NewDispatcher(context.Background(), cfg, httpx.NewFactory(httpx.Config{ResponseBodyKeep: httpx.KeepWholeBody}, r.log, r.stats, log))
	t.Cleanup(r.close)
	return r
}

// close closes the dispatcher: every connection still open ends, and every
// request gets its Response call. The source must be stopped first.
func (r *httpRig) close() { r.once.Do(func() { _ = r.disp.Close() }) }

// checkClean reports any drop or damage in the flow and HTTP stages: the
// lab's traffic has none.
func (r *httpRig) checkClean(t *testing.T) {
	t.Helper()
	fs := r.disp.Stats()
	hs := r.stats.Snapshot()
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"flow queue_full_events", fs.QueueFullEvents},
		{"flow gaps", fs.Gaps},
		{"flow truncated segments", fs.SegTruncated},
		{"flow overlap conflicts", fs.OverlapConflict},
		{"flow evicted", fs.ClosedEvicted},
		{"http requests_gap", hs.RequestsGap},
		{"http responses_gap", hs.ResponsesGap},
		{"http requests_malformed", hs.RequestsMalformed},
		{"http responses_malformed", hs.ResponsesMalformed},
		{"http requests_too_large", hs.RequestsTooLarge},
		{"http responses_too_large", hs.ResponsesTooLarge},
		{"http responses_unpaired", hs.ResponsesUnpaired},
		{"http gave_up_not_http", hs.GaveUpNotHTTP},
	} {
		if c.v != 0 {
			t.Errorf("%s = %d, want 0 on clean lab traffic", c.name, c.v)
		}
	}
	if hs.Requests != hs.Answered {
		t.Errorf("http requests = %d, answered = %d: every lab request was answered", hs.Requests, hs.Answered)
	}
}

// ---------------------------------------------------------------------------
// Conversations.

// labConversation is one client connection the tests drive through the
// mirror lab.
type labConversation struct {
	name     string
	v6       bool
	pipeline bool // all requests in one write (lab.Pipeline)
	jumbo    bool // carries full 9001-MTU segments
	reqs     []testenv.Request
}

// labConversations are the kinds of traffic the issues name: keep-alive,
// pipelined, chunked, jumbo, IPv6.
func labConversations() []labConversation {
	return []labConversation{
		{name: "keepalive", reqs: []testenv.Request{
			{Target: "/size/100"},
			{Target: "/size/2900?x=1", Header: http.Header{"X-Trace": {"abc-123"}, "Accept": {"text/plain", "*/*"}}},
			{Method: http.MethodHead, Target: "/size/777"},
			{Target: "/status/404"},
			{Method: http.MethodOptions, Target: "/size/3"},
		}},
		{name: "pipelined", pipeline: true, reqs: []testenv.Request{
			{Target: "/size/10"},
			{Target: "/size/20"},
			{Method: http.MethodPost, Target: "/echo", Body: []byte("hello, pipeline"), Header: http.Header{"Content-Type": {"text/plain"}}},
			{Target: "/chunked/5000?chunk=700"},
			{Target: "/status/204"},
		}},
		{name: "chunked-post", reqs: []testenv.Request{
			{Method: http.MethodPost, Target: "/echo", Body: testenv.Pattern(30000), Chunked: true, ChunkSize: 4000,
				Header: http.Header{"Content-Type": {"application/octet-stream"}}},
			{Method: http.MethodPut, Target: "/echo?small", Body: testenv.Pattern(9), Chunked: true, ChunkSize: 2},
			{Target: "/size/5"},
		}},
		{name: "jumbo", jumbo: true, reqs: []testenv.Request{
			{Target: "/size/200000"},
			{Method: http.MethodPost, Target: "/echo", Body: testenv.Pattern(60000)},
			{Target: "/chunked/150000?chunk=20000"},
		}},
		{name: "ipv6", v6: true, jumbo: true, reqs: []testenv.Request{
			{Target: "/size/300"},
			{Target: "/size/120000"},
			{Method: http.MethodPost, Target: "/echo", Body: testenv.Pattern(12000), Chunked: true, ChunkSize: 5000},
		}},
	}
}

// run drives the conversation from the client namespace to the production
// server.
func (c labConversation) run(ctx context.Context, lab *testenv.Lab) (*testenv.Conversation, error) {
	a := lab.ProdAddr4
	if c.v6 {
		a = lab.ProdAddr6
	}
	addr := testenv.HostPort(a, labPort)
	if c.pipeline {
		return lab.Pipeline(ctx, lab.ClientNS, addr, c.reqs...)
	}
	return lab.KeepAlive(ctx, lab.ClientNS, addr, c.reqs...)
}

// startProdServer starts the lab's recording HTTP server in production on
// labPort (both families).
func startProdServer(t *testing.T, ctx context.Context, lab *testenv.Lab) *testenv.Server {
	t.Helper()
	srv, err := testenv.StartHTTPServer(ctx, lab, lab.ProdNS, fmt.Sprintf(":%d", labPort))
	if err != nil {
		t.Fatalf("starting the production server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// runConversations drives every conversation and returns them by name, with
// the client address each used.
func runConversations(t *testing.T, ctx context.Context, lab *testenv.Lab, convs []labConversation) map[string]*testenv.Conversation {
	t.Helper()
	out := make(map[string]*testenv.Conversation)
	for _, c := range convs {
		got, err := c.run(ctx, lab)
		if err != nil {
			t.Fatalf("conversation %s: %v", c.name, err)
		}
		if len(got.Exchanges) != len(c.reqs) {
			t.Fatalf("conversation %s: %d of %d exchanges", c.name, len(got.Exchanges), len(c.reqs))
		}
		out[c.name] = got
	}
	return out
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// ---------------------------------------------------------------------------
// Waiting.

// waitUntil polls cond until it returns true or the deadline (a hang
// detector) passes; then it fails the test with cond's last message.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %v: %s", what, within, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDrained waits until the sink has received every event the source
// counted as emitted, and checks that none was lost. Reading the sink's
// count before the counters means it can never be ahead of emit.
func waitDrained(t *testing.T, src event.Source, rec *recorder) event.Counters {
	t.Helper()
	var c event.Counters
	waitUntil(t, "the sink to receive every emitted event", time.Minute, func() (bool, string) {
		n := rec.Count()
		var err error
		c, err = src.Counters()
		if err != nil {
			t.Fatalf("reading counters: %v", err)
		}
		emit := c.Outcomes[event.Emit]
		if n > emit {
			t.Fatalf("the sink received %d events, but the source counts only %d emitted", n, emit)
		}
		return n == emit, fmt.Sprintf("received %d of %d emitted", n, emit)
	})
	if lost := c.Outcomes[event.LostRingbuf]; lost != 0 {
		t.Errorf("lost_ringbuf = %d, want 0", lost)
	}
	return c
}

// settledOffset returns rx_packets of the lab's mirror interface minus the
// sum of the XDP program's outcomes, once that difference is stable: no
// packet arrived while it was read, and the same value was read twice. While
// the program runs, every packet that arrives on the interface adds one to
// both, so the offset only changes if a packet is missed or counted twice.
func settledOffset(t *testing.T, ctx context.Context, lab *testenv.Lab, p *xdp.Probe) int64 {
	t.Helper()
	var prev int64
	have := false
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r1, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := lab.LinkStats(ctx, lab.RecvNS, lab.RecvIface)
		if err != nil {
			t.Fatal(err)
		}
		if r1.RxPackets == r2.RxPackets {
			off := int64(r1.RxPackets) - int64(c.Packets())
			if have && off == prev {
				return off
			}
			prev, have = off, true
			last = fmt.Sprintf("rx_packets %d, outcomes %d", r1.RxPackets, c.Packets())
		} else {
			have = false
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the mirror interface's rx_packets and the XDP outcomes never settled in 30 s (last %s)", last)
	return 0
}

// ---------------------------------------------------------------------------
// Byte streams.

// directionBytes puts together the payloads of the segments from src to dst
// in sequence order, from the SYN's sequence number on. A retransmission
// (same seq) must carry the same bytes; it is counted once. The result must
// be contiguous.
func directionBytes(segs []segment, src, dst netip.AddrPort, want event.Direction) ([]byte, int, error) {
	src, dst = unmapped(src), unmapped(dst)
	var isn uint32
	haveSYN := false
	data := make(map[uint32][]byte)
	maxSeg := 0
	for _, s := range segs {
		h := &s.h
		if netip.AddrPortFrom(h.Src(), h.SrcPort) != src || netip.AddrPortFrom(h.Dst(), h.DstPort) != dst {
			continue
		}
		if h.Direction != want {
			return nil, 0, fmt.Errorf("segment seq %d marked %v, want %v", h.Seq, h.Direction, want)
		}
		if h.Truncated() || h.CapLen != h.WireLen || int(h.CapLen) != len(s.payload) {
			return nil, 0, fmt.Errorf("segment seq %d: truncated=%v cap_len %d wire_len %d payload %d: the lab's segments arrive whole",
				h.Seq, h.Truncated(), h.CapLen, h.WireLen, len(s.payload))
		}
		if h.TCPFlags&event.TCPSyn != 0 {
			if haveSYN && h.Seq != isn {
				return nil, 0, fmt.Errorf("two SYNs with sequence numbers %d and %d", isn, h.Seq)
			}
			isn, haveSYN = h.Seq, true
		}
		if len(s.payload) == 0 {
			continue
		}
		maxSeg = max(maxSeg, len(s.payload))
		if old, ok := data[h.Seq]; ok {
			if !bytes.Equal(old, s.payload) {
				return nil, 0, fmt.Errorf("two segments at seq %d with different bytes (%d and %d bytes)", h.Seq, len(old), len(s.payload))
			}
			continue
		}
		data[h.Seq] = s.payload
	}
	if !haveSYN {
		return nil, 0, errors.New("no SYN captured")
	}
	offs := make([]uint32, 0, len(data))
	for seq := range data {
		offs = append(offs, seq-(isn+1))
	}
	slices.Sort(offs)
	var out []byte
	for _, off := range offs {
		p := data[isn+1+off]
		if int(off) != len(out) {
			return out, maxSeg, fmt.Errorf("segment at offset %d, but %d bytes put together so far: a hole or an overlap", off, len(out))
		}
		out = append(out, p...)
	}
	return out, maxSeg, nil
}

// firstDiff describes where a and b first differ.
func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			lo := max(0, i-16)
			return fmt.Sprintf("first difference at byte %d of %d/%d: got %q, want %q", i, len(a), len(b),
				a[lo:min(len(a), i+16)], b[lo:min(len(b), i+16)])
		}
	}
	return fmt.Sprintf("lengths %d and %d, equal up to %d", len(a), len(b), n)
}

// ---------------------------------------------------------------------------
// Comparing exchanges.

// serverView is what a test compares of one exchange: the request as the
// server received it and the response it gave.
type exchangeView struct {
	Method, Target, Host string
	Header               http.Header
	Body                 []byte
	Status               int
	RespBody             []byte
}

func viewOfServer(s testenv.ServerExchange) exchangeView {
	h := s.Header.Clone()
	h.Del("Transfer-Encoding")
	if len(h) == 0 {
		h = http.Header{}
	}
	v := exchangeView{
		Method: s.Method, Target: s.Target, Host: s.Host, Header: h, Body: s.Body,
		Status: s.Status, RespBody: s.ResponseBody,
	}
	if s.Method == http.MethodHead {
		// The server logs what the handler wrote; a response to HEAD
		// carries none of it.
		v.RespBody = nil
	}
	return v
}

func viewOfGot(g gotExchange) exchangeView {
	return exchangeView{
		Method: g.Method, Target: g.Target, Host: g.Host, Header: g.Header, Body: g.Body,
		Status: g.Status, RespBody: g.RespBody,
	}
}

// diffView lists the fields in which got differs from want.
func diffView(got, want exchangeView) []string {
	var d []string
	if got.Method != want.Method || got.Target != want.Target || got.Host != want.Host {
		d = append(d, fmt.Sprintf("request %s %s (Host %s), want %s %s (Host %s)",
			got.Method, got.Target, got.Host, want.Method, want.Target, want.Host))
	}
	if !headersEqual(got.Header, want.Header) {
		d = append(d, fmt.Sprintf("headers %v, want %v", got.Header, want.Header))
	}
	if !bytes.Equal(got.Body, want.Body) {
		d = append(d, "request body: "+firstDiff(got.Body, want.Body))
	}
	if got.Status != want.Status {
		d = append(d, fmt.Sprintf("status %d, want %d", got.Status, want.Status))
	}
	if !bytes.Equal(got.RespBody, want.RespBody) {
		d = append(d, "response body: "+firstDiff(got.RespBody, want.RespBody))
	}
	return d
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// compareWithServer checks that the exchanges rebuilt from the mirror are
// exactly those the production server logged, connection by connection and
// in order (so each response is paired with its own request). It returns the
// rebuilt exchanges by conversation name, for comparing sources.
func compareWithServer(t *testing.T, got map[netip.AddrPort][]gotExchange, srv []testenv.ServerExchange,
	convs map[string]*testenv.Conversation) map[string][]exchangeView {
	t.Helper()
	byClient := make(map[netip.AddrPort][]testenv.ServerExchange)
	for _, s := range srv {
		ap, err := netip.ParseAddrPort(s.Remote)
		if err != nil {
			t.Fatalf("server exchange from %q: %v", s.Remote, err)
		}
		byClient[unmapped(ap)] = append(byClient[unmapped(ap)], s)
	}
	out := make(map[string][]exchangeView)
	names := make([]string, 0, len(convs))
	for n := range convs {
		names = append(names, n)
	}
	slices.Sort(names)
	seen := make(map[netip.AddrPort]bool)
	for _, name := range names {
		client := unmapped(convs[name].Local)
		seen[client] = true
		want := byClient[client]
		have := got[client]
		if len(want) != len(convs[name].Exchanges) {
			t.Errorf("%s: the server logged %d exchanges from %v, the client made %d", name, len(want), client, len(convs[name].Exchanges))
		}
		if len(have) != len(want) {
			t.Errorf("%s: rebuilt %d exchanges from %v, the server logged %d", name, len(have), client, len(want))
		}
		for i := range min(len(have), len(want)) {
			if have[i].Seq != uint64(i) {
				t.Errorf("%s: exchange %d has index %d on its connection", name, i, have[i].Seq)
			}
			if have[i].Reason != httpx.RespOK {
				t.Errorf("%s: exchange %d (%s %s) ended %v, want ok", name, i, have[i].Method, have[i].Target, have[i].Reason)
			}
			gv := viewOfGot(have[i])
			for _, d := range diffView(gv, viewOfServer(want[i])) {
				t.Errorf("%s: exchange %d: %s", name, i, d)
			}
			// And the response is the one the client read.
			if i < len(convs[name].Exchanges) {
				ce := convs[name].Exchanges[i]
				if gv.Status != ce.Status || !bytes.Equal(gv.RespBody, ce.ResponseBody) {
					t.Errorf("%s: exchange %d: response %d with %d body bytes, the client read %d with %d",
						name, i, gv.Status, len(gv.RespBody), ce.Status, len(ce.ResponseBody))
				}
			}
			out[name] = append(out[name], gv)
		}
	}
	for client, g := range got {
		if !seen[client] {
			t.Errorf("rebuilt %d exchanges of a connection from %v that no conversation made", len(g), client)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Generated mirror traffic.

// compareWithTruth checks that the exchanges rebuilt from generated mirror
// traffic are exactly the generator's conversations: per connection, in
// order, the method, target and body length of each request and the status
// and body length of each response.
func compareWithTruth(t *testing.T, got map[netip.AddrPort][]gotExchange, truth []mirrorgen.Conversation) {
	t.Helper()
	seen := make(map[netip.AddrPort]bool)
	for ci, conv := range truth {
		client := unmapped(conv.Client)
		seen[client] = true
		have := got[client]
		if len(conv.Requests) != len(conv.Responses) {
			t.Fatalf("truth conversation %d: %d requests, %d responses: the generator was cut short", ci, len(conv.Requests), len(conv.Responses))
		}
		if len(have) != len(conv.Requests) {
			t.Errorf("conversation %d (%v): rebuilt %d exchanges, generated %d", ci, client, len(have), len(conv.Requests))
		}
		for i := range min(len(have), len(conv.Requests)) {
			g, rq, rs := have[i], conv.Requests[i], conv.Responses[i]
			if g.Seq != uint64(i) || g.Reason != httpx.RespOK {
				t.Errorf("conversation %d exchange %d: index %d, ended %v", ci, i, g.Seq, g.Reason)
			}
			if g.Method != rq.Method || g.Target != rq.Target || len(g.Body) != rq.BodyLen {
				t.Errorf("conversation %d exchange %d: request %s %s body %d, generated %s %s body %d",
					ci, i, g.Method, g.Target, len(g.Body), rq.Method, rq.Target, rq.BodyLen)
			}
			if g.Status != rs.Status || g.RespLen != int64(rs.BodyLen) || len(g.RespBody) != rs.BodyLen {
				t.Errorf("conversation %d exchange %d (%s %s): response %d body %d (kept %d), generated %d body %d",
					ci, i, g.Method, g.Target, g.Status, g.RespLen, len(g.RespBody), rs.Status, rs.BodyLen)
			}
		}
	}
	for client, g := range got {
		if !seen[client] {
			t.Errorf("rebuilt %d exchanges of a connection from %v that the generator did not make", len(g), client)
		}
	}
}

// interfaceMAC returns the hardware address of dev in namespace ns.
func interfaceMAC(t *testing.T, lab *testenv.Lab, ns, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := lab.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatalf("reading the MAC address of %s in %s: %v", dev, ns, err)
	}
	return mac
}

// canonicalEvents returns the segments in a source-independent order and
// without capture times, for comparing what two sources made of the same
// frames.
func canonicalEvents(segs []segment) []segment {
	out := make([]segment, len(segs))
	for i, s := range segs {
		s.h.TimeNs = 0
		out[i] = s
	}
	slices.SortFunc(out, func(a, b segment) int {
		return cmp.Or(
			bytes.Compare(a.h.SrcAddr[:], b.h.SrcAddr[:]),
			cmp.Compare(a.h.SrcPort, b.h.SrcPort),
			bytes.Compare(a.h.DstAddr[:], b.h.DstAddr[:]),
			cmp.Compare(a.h.DstPort, b.h.DstPort),
			cmp.Compare(a.h.Seq, b.h.Seq),
			cmp.Compare(a.h.Ack, b.h.Ack),
			cmp.Compare(a.h.TCPFlags, b.h.TCPFlags),
			cmp.Compare(len(a.payload), len(b.payload)),
			bytes.Compare(a.payload, b.payload),
		)
	})
	return out
}
