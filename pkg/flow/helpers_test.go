package flow

import (
	"strings"
	"sync"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// recConn records what a Handler received, rendering each direction as a
// string where a Gap is "<GAP>".
type recConn struct {
	mu        sync.Mutex
	key       Key
	midStream bool
	stream    [2]strings.Builder
	closed    []CloseReason
	afterEnd  int // calls after Close
}

func (c *recConn) Data(dir event.Direction, b []byte, ts uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.closed) > 0 {
		c.afterEnd++
	}
	c.stream[dir].Write(b)
}

func (c *recConn) Gap(dir event.Direction, ts uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.closed) > 0 {
		c.afterEnd++
	}
	c.stream[dir].WriteString("<GAP>")
}

func (c *recConn) Close(reason CloseReason, ts uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = append(c.closed, reason)
}

func (c *recConn) get(dir event.Direction) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream[dir].String()
}

func (c *recConn) reasons() []CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CloseReason(nil), c.closed...)
}

// recorder is a HandlerFactory keeping every connection it made, in order.
type recorder struct {
	mu    sync.Mutex
	conns []*recConn
}

func (r *recorder) factory(key Key, ts uint64, midStream bool) Handler {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &recConn{key: key, midStream: midStream}
	r.conns = append(r.conns, c)
	return c
}

func (r *recorder) all() []*recConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recConn(nil), r.conns...)
}

// sg describes a crafted segment.
type sg struct {
	dir   event.Direction
	seq   uint32
	data  string
	flags uint8
	ts    uint64
	wire  int  // 0: len(data)
	trunc bool // set FlagTruncated
	port  uint16
	ack   uint32
}

const (
	SYN = event.TCPSyn
	FIN = event.TCPFin
	RST = event.TCPRst
	ACK = event.TCPAck
)

// header builds the event header of s: client 10.0.0.1:port (40000 by
// default), server 10.0.0.2:80.
func (s sg) header() event.Header {
	h := event.Header{
		TimeNs: s.ts, Seq: s.seq, Ack: s.ack, VNI: 7,
		CapLen: uint16(len(s.data)), WireLen: uint16(len(s.data)),
		Family: event.FamilyIPv4, TCPFlags: s.flags, Direction: s.dir,
	}
	if s.wire > 0 {
		h.WireLen = uint16(s.wire)
	}
	if s.trunc {
		h.Flags |= event.FlagTruncated
	}
	port := s.port
	if port == 0 {
		port = 40000
	}
	client, server := [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}
	if s.dir == event.Request {
		copy(h.SrcAddr[:], client[:])
		copy(h.DstAddr[:], server[:])
		h.SrcPort, h.DstPort = port, 80
	} else {
		copy(h.SrcAddr[:], server[:])
		copy(h.DstAddr[:], client[:])
		h.SrcPort, h.DstPort = 80, port
	}
	return h
}

func feed(r interface {
	Segment(*event.Header, []byte)
}, segs ...sg) {
	for _, s := range segs {
		h := s.header()
		// A fresh copy, so a reassembler keeping a reference would be caught
		// by the scribbling below.
		p := []byte(s.data)
		r.Segment(&h, p)
		for i := range p {
			p[i] = '#'
		}
	}
}

func req(seq uint32, data string) sg  { return sg{dir: event.Request, seq: seq, data: data} }
func resp(seq uint32, data string) sg { return sg{dir: event.Response, seq: seq, data: data} }

func checkIdentity(t interface {
	Helper()
	Errorf(string, ...any)
}, s StatsSnapshot) {
	t.Helper()
	if s.SegmentsIn != s.SegmentsAccounted() {
		t.Errorf("segment identity: in=%d accounted=%d (%+v)", s.SegmentsIn, s.SegmentsAccounted(), s)
	}
	if s.ConnsUnconfirmedTracked < 0 || s.ConnsUnconfirmedTracked > s.ConnsTracked || s.EvictedUnconfirmed > s.ClosedEvicted {
		t.Errorf("unconfirmed: tracked %d of %d, evicted %d of %d", s.ConnsUnconfirmedTracked, s.ConnsTracked, s.EvictedUnconfirmed, s.ClosedEvicted)
	}
	if s.ConnsTracked != int64(s.ConnsOpened)-int64(s.Closed()) {
		t.Errorf("connection identity: tracked=%d opened=%d closed=%d", s.ConnsTracked, s.ConnsOpened, s.Closed())
	}
}
