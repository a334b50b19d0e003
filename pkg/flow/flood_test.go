package flow_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// targetSink counts the requests the parser produced per client port.
type targetSink map[uint16][]string

func (s targetSink) Request(ex *httpx.Exchange) {
	p := ex.Conn.Client.Port()
	s[p] = append(s[p], string(ex.Req.Target))
}
func (s targetSink) Response(*httpx.Exchange) {}

// TestFloodKeepsEstablishedParsed: through the reassembler and the HTTP
// parser, a flood of new flows (SYN and one request segment each, 19 ×
// MaxConns in all, spoofed from many clients) arriving while an established
// keep-alive connection is in the middle of its requests does not cost it a
// single request.
func TestFloodKeepsEstablishedParsed(t *testing.T) {
	const maxConns = 128
	sink := targetSink{}
	var hst httpx.Stats
	r := flow.NewReassembler(flow.Config{MaxConns: maxConns}, httpx.NewFactory(httpx.Config{}, sink, &hst, nil))
	server := netip.MustParseAddrPort("10.1.0.10:8080")
	ts := uint64(1)
	seg := func(client netip.AddrPort, dir event.Direction, seq, ack uint32, flags uint8, payload string) {
		h := event.Header{TimeNs: ts, Seq: seq, Ack: ack, VNI: 42, Family: event.FamilyIPv4,
			TCPFlags: flags, Direction: dir, CapLen: uint16(len(payload)), WireLen: uint16(len(payload))}
		src, dst := client, server
		if dir == event.Response {
			src, dst = server, client
		}
		a, b := src.Addr().As4(), dst.Addr().As4()
		copy(h.SrcAddr[:], a[:])
		copy(h.DstAddr[:], b[:])
		h.SrcPort, h.DstPort = src.Port(), dst.Port()
		r.Segment(&h, []byte(payload))
		ts += 1000
	}
	est := netip.MustParseAddrPort("10.0.0.1:40000")
	seg(est, event.Request, 99, 0, event.TCPSyn, "")
	seg(est, event.Response, 499, 100, event.TCPSyn|event.TCPAck, "")
	reqSeq, respSeq := uint32(100), uint32(500)
	const exchanges = 20
	var want []string
	flood := 0
	for i := range exchanges {
		target := fmt.Sprintf("/est/%d", i)
		q := "GET " + target + " HTTP/1.1\r\nHost: shop\r\n\r\n"
		a := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		// The request spans two segments, and from the second exchange on
		// (once the connection has carried data both ways: confirmed) a
		// flood of MaxConns new flows arrives between them.
		half := len(q) / 2
		seg(est, event.Request, reqSeq, respSeq, event.TCPAck, q[:half])
		for range maxConns * min(i, 1) {
			flood++
			c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(flood >> 8), byte(flood)}), uint16(1024+flood))
			seg(c, event.Request, 7, 0, event.TCPSyn, "")
			seg(c, event.Request, 8, 0, event.TCPAck, "GET /flood HTTP/1.1\r\n")
		}
		seg(est, event.Request, reqSeq+uint32(half), respSeq, event.TCPAck, q[half:])
		seg(est, event.Response, respSeq, reqSeq+uint32(len(q)), event.TCPAck, a)
		reqSeq += uint32(len(q))
		respSeq += uint32(len(a))
		want = append(want, target)
	}
	if got := sink[est.Port()]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the established connection's requests parsed: %v\nwant %v", got, want)
	}
	s := r.Stats().Snapshot()
	if s.EvictedUnconfirmed != s.ClosedEvicted || s.ClosedEvicted == 0 {
		t.Errorf("evicted %d, of them unconfirmed %d: want only unconfirmed flows evicted", s.ClosedEvicted, s.EvictedUnconfirmed)
	}
	if r.Len() > maxConns {
		t.Errorf("%d connections tracked, cap %d", r.Len(), maxConns)
	}
}

// TestFloodMemoryBounded: a small version of the flood of distinct flows
// (SYN and one request segment each, 100 × MaxConns) leaves the heap
// where the connection cap puts it, however many flows came.
func TestFloodMemoryBounded(t *testing.T) {
	const maxConns, flows = 2048, 100 * 2048
	var hst httpx.Stats
	r := flow.NewReassembler(flow.Config{MaxConns: maxConns}, httpx.NewFactory(httpx.Config{}, targetSink{}, &hst, nil))
	server := netip.MustParseAddrPort("10.1.0.10:8080")
	payload := []byte("GET /flood HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 1000))
	var h event.Header
	send := func(i int, flags uint8, p []byte, seq uint32) {
		h = event.Header{TimeNs: uint64(i + 1), Seq: seq, VNI: 42, Family: event.FamilyIPv4, TCPFlags: flags,
			Direction: event.Request, CapLen: uint16(len(p)), WireLen: uint16(len(p))}
		copy(h.SrcAddr[:], []byte{198, 18, byte(i >> 8), byte(i)})
		a := server.Addr().As4()
		copy(h.DstAddr[:], a[:])
		h.SrcPort, h.DstPort = uint16(1024+i>>16), server.Port()
		r.Segment(&h, p)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// Fill the table once, then measure what the rest of the flood adds.
	for i := range maxConns * 2 {
		send(i, event.TCPSyn, nil, 7)
		send(i, event.TCPAck, payload, 8)
	}
	before := heap()
	for i := maxConns * 2; i < flows; i++ {
		send(i, event.TCPSyn, nil, 7)
		send(i, event.TCPAck, payload, 8)
	}
	after := heap()
	if r.Len() > maxConns {
		t.Errorf("%d connections tracked, cap %d", r.Len(), maxConns)
	}
	if after > before+4<<20 {
		t.Errorf("heap grew from %.1f to %.1f MiB over %d more flows: not bounded by MaxConns", float64(before)/(1<<20), float64(after)/(1<<20), flows-2*maxConns)
	}
	s := r.Stats().Snapshot()
	if s.ConnsOpened != flows || s.ClosedEvicted != flows-uint64(r.Len()) {
		t.Errorf("opened %d, evicted %d, tracked %d: want %d opened, the rest of the tracked evicted", s.ConnsOpened, s.ClosedEvicted, r.Len(), flows)
	}
}
