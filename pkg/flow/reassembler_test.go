package flow

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

func TestReassembler(t *testing.T) {
	const top = ^uint32(0) // 2^32-1
	tests := []struct {
		name      string
		cfg       Config
		segs      []sg
		closeAll  bool // CloseAll(CloseShutdown) at the end
		wantReq   string
		wantResp  string
		wantMid   bool
		wantClose []CloseReason
		check     func(t *testing.T, s StatsSnapshot)
	}{
		{
			name:    "in order, joined mid-stream",
			segs:    []sg{req(100, "GET "), req(104, "/ HTTP/1.1\r\n"), resp(7000, "HTTP/1.1 200")},
			wantReq: "GET / HTTP/1.1\r\n", wantResp: "HTTP/1.1 200", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegInOrder != 3 || s.BytesDelivered != 28 || s.ConnsMidStream != 1 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name: "SYN and SYN-ACK set both directions",
			segs: []sg{
				{dir: event.Request, seq: 99, flags: SYN},
				{dir: event.Response, seq: 499, flags: SYN | ACK, ack: 100},
				// The request arrives reordered: the SYN-ACK's ack says where it starts.
				req(103, " /"), req(100, "GET"), resp(500, "HTTP"),
			},
			wantReq: "GET /", wantResp: "HTTP",
		},
		{
			name:    "reordered within window",
			segs:    []sg{req(100, "ab"), req(106, "gh"), req(104, "ef"), req(102, "cd")},
			wantReq: "abcdefgh", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegHeld != 2 || s.SegInOrder != 2 || s.BytesHeld != 0 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name:    "duplicates delivered once",
			segs:    []sg{req(100, "abcd"), req(100, "abcd"), req(108, "ij"), req(108, "ij"), req(104, "efgh"), req(102, "cd")},
			wantReq: "abcdefghij", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegDuplicate != 3 {
					t.Errorf("duplicates = %d, want 3", s.SegDuplicate)
				}
			},
		},
		{
			name:    "overlap with same bytes",
			segs:    []sg{req(100, "abcd"), req(102, "cdef"), req(110, "klm"), req(108, "ijklmn"), req(106, "gh")},
			wantReq: "abcdefghijklmn", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.ConflictBytes != 0 || s.SegOverlap != 1 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name: "conflicting overlap with held data: first copy wins",
			segs: []sg{req(100, "ab"), req(104, "efgh"), req(102, "cdZZghij")},
			// bytes 104-105 were held as "ef" first; the later "ZZ" loses.
			wantReq: "abcdefghij", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.ConflictBytes != 2 || s.OverlapConflict != 1 {
					t.Errorf("conflicts %d/%d, want 2 bytes in 1 segment", s.ConflictBytes, s.OverlapConflict)
				}
			},
		},
		{
			name:    "conflicting overlap between held segments",
			segs:    []sg{req(100, "ab"), req(106, "gh"), req(104, "efXX"), req(102, "cd")},
			wantReq: "abcdefgh", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.ConflictBytes != 2 {
					t.Errorf("conflict bytes %d, want 2", s.ConflictBytes)
				}
			},
		},
		{
			name:    "wraparound in order",
			segs:    []sg{req(top-2, "abcdef"), req(3, "gh")},
			wantReq: "abcdefgh", wantMid: true,
		},
		{
			name:    "wraparound reordered",
			segs:    []sg{req(top-4, "ab"), req(1, "ghij"), req(top-2, "cdef")},
			wantReq: "abcdefghij", wantMid: true,
		},
		{
			name:    "SYN just below 2^32",
			segs:    []sg{{dir: event.Request, seq: top, flags: SYN}, req(0, "abc")},
			wantReq: "abc",
		},
		{
			name:    "mid-stream: segments before the first one seen are old",
			segs:    []sg{req(5000, "xyz"), req(4990, "0123456789"), req(5003, "!")},
			wantReq: "xyz!", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegDuplicate != 1 {
					t.Errorf("duplicates %d", s.SegDuplicate)
				}
			},
		},
		{
			name: "FIN on both sides closes after delivery",
			segs: []sg{
				{dir: event.Request, seq: 100, data: "GET", flags: FIN},
				resp(500, "HT"),
				// The response FIN arrives before the data in front of it.
				{dir: event.Response, seq: 504, data: "!", flags: FIN | ACK},
				resp(502, "TP"),
			},
			wantReq: "GET", wantResp: "HTTP!", wantMid: true, wantClose: []CloseReason{CloseFIN},
			check: func(t *testing.T, s StatsSnapshot) {
				if s.ConnsTracked != 0 || s.ClosedFIN != 1 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name: "bytes after FIN are discarded",
			segs: []sg{
				{dir: event.Request, seq: 100, data: "GET", flags: FIN}, req(103, "junk"),
			},
			wantReq: "GET", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.BeyondFINBytes != 4 {
					t.Errorf("beyond FIN %d", s.BeyondFINBytes)
				}
			},
		},
		{
			name:    "RST closes and flushes held data after a gap",
			segs:    []sg{req(100, "ab"), req(110, "kl"), {dir: event.Response, seq: 9, flags: RST}},
			wantReq: "ab<GAP>kl", wantMid: true, wantClose: []CloseReason{CloseRST},
		},
		{
			name: "RST on an untracked connection is ignored",
			segs: []sg{{dir: event.Request, seq: 1, flags: RST}, {dir: event.Request, seq: 1, flags: ACK}},
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegNoConn != 2 || s.ConnsOpened != 0 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name:    "hold cap exceeded: gap, then delivery resumes",
			cfg:     Config{MaxHoldBytes: 8},
			segs:    []sg{req(100, "ab"), req(110, "klmn"), req(114, "opqr"), req(118, "st"), req(120, "uv")},
			wantReq: "ab<GAP>klmnopqrstuv", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.HoldCapGaps != 1 || s.Gaps != 1 || s.BytesHeld != 0 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name:    "segment larger than the hold cap skips ahead",
			cfg:     Config{MaxHoldBytes: 4},
			segs:    []sg{req(100, "ab"), req(110, "klmnopq"), req(102, "cd")},
			wantReq: "ab<GAP>klmnopq", wantMid: true,
		},
		{
			name:     "held segment count cap",
			cfg:      Config{MaxHoldSegments: 2},
			segs:     []sg{req(100, "a"), req(102, "c"), req(104, "e"), req(106, "g")},
			closeAll: true,
			// The third held segment gives up the first hole; the rest is
			// flushed at close.
			wantReq: "a<GAP>c<GAP>e<GAP>g", wantMid: true, wantClose: []CloseReason{CloseShutdown},
		},
		{
			name:    "truncated in order: captured bytes, gap, resync after the whole segment",
			segs:    []sg{{dir: event.Request, seq: 100, data: "abcd", wire: 8, trunc: true}, req(108, "ijkl")},
			wantReq: "abcd<GAP>ijkl", wantMid: true,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegTruncated != 1 || s.TruncationGaps != 1 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name:    "flagged truncated with consistent lengths: gap after it",
			segs:    []sg{req(100, "ab"), {dir: event.Request, seq: 102, data: "cd", trunc: true}, req(104, "ef")},
			wantReq: "abcd<GAP>ef", wantMid: true,
		},
		{
			name:    "flagged truncated, held: gap after it",
			segs:    []sg{req(100, "ab"), req(104, "ef"), {dir: event.Request, seq: 102, data: "cd", trunc: true}},
			wantReq: "abcd<GAP>ef", wantMid: true,
		},
		{
			name:    "flagged truncated, held out of order: gap after it",
			segs:    []sg{req(100, "ab"), {dir: event.Request, seq: 104, data: "ef", trunc: true}, req(106, "gh"), req(102, "cd")},
			wantReq: "abcdef<GAP>gh", wantMid: true,
		},
		{
			name:    "captured less than sent, not flagged",
			segs:    []sg{req(100, "ab"), {dir: event.Request, seq: 102, data: "cd", wire: 6}, req(108, "ij")},
			wantReq: "abcd<GAP>ij", wantMid: true,
		},
		{
			name: "truncated out of order",
			segs: []sg{
				req(100, "ab"), req(110, "kl"),
				{dir: event.Request, seq: 106, data: "gh", wire: 4, trunc: true},
				req(102, "cdef"),
				// A later full copy of the missing bytes cannot repair it.
				req(108, "ij"),
			},
			wantReq: "abcdefgh<GAP>kl", wantMid: true,
		},
		{
			name:     "hole flushed at close",
			segs:     []sg{req(100, "ab"), req(104, "ef"), req(110, "kl")},
			closeAll: true,
			wantReq:  "ab<GAP>ef<GAP>kl", wantMid: true, wantClose: []CloseReason{CloseShutdown},
		},
		{
			name:    "invalid direction is counted",
			segs:    []sg{{dir: 7, seq: 1, data: "x"}},
			wantMid: false,
			check: func(t *testing.T, s StatsSnapshot) {
				if s.SegMalformed != 1 || s.ConnsOpened != 0 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name: "port reuse: a SYN with a new ISN replaces the connection",
			segs: []sg{
				{dir: event.Request, seq: 99, flags: SYN}, req(100, "old"),
				{dir: event.Request, seq: 9999, flags: SYN}, req(10000, "new"),
			},
			wantReq: "new", // of the second connection
			check: func(t *testing.T, s StatsSnapshot) {
				if s.ReusedConns != 1 || s.ConnsOpened != 2 || s.ClosedIdle != 1 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name:    "retransmitted SYN is not a reuse",
			segs:    []sg{{dir: event.Request, seq: 99, flags: SYN}, req(100, "abc"), {dir: event.Request, seq: 99, flags: SYN}, req(103, "d")},
			wantReq: "abcd",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			r := NewReassembler(tt.cfg, rec.factory)
			feed(r, tt.segs...)
			if tt.closeAll {
				r.CloseAll(CloseShutdown, 0)
			}
			s := r.Stats().Snapshot()
			checkIdentity(t, s)
			if tt.check != nil {
				tt.check(t, s)
			}
			conns := rec.all()
			if tt.wantReq == "" && tt.wantResp == "" && tt.wantClose == nil {
				return
			}
			if len(conns) == 0 {
				t.Fatal("no connection")
			}
			c := conns[len(conns)-1]
			if got := c.get(event.Request); got != tt.wantReq {
				t.Errorf("request stream %q, want %q", got, tt.wantReq)
			}
			if got := c.get(event.Response); got != tt.wantResp {
				t.Errorf("response stream %q, want %q", got, tt.wantResp)
			}
			if c.midStream != tt.wantMid {
				t.Errorf("midStream %v, want %v", c.midStream, tt.wantMid)
			}
			if got := c.reasons(); !slices.Equal(got, tt.wantClose) {
				t.Errorf("close reasons %v, want %v", got, tt.wantClose)
			}
			if c.afterEnd != 0 {
				t.Errorf("%d handler calls after Close", c.afterEnd)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	sec := uint64(time.Second)
	t.Run("capture clock", func(t *testing.T) {
		var rec recorder
		r := NewReassembler(Config{IdleTimeout: 10 * time.Second}, rec.factory)
		feed(r,
			sg{dir: event.Request, seq: 1, data: "a", ts: 1 * sec, port: 1},
			sg{dir: event.Request, seq: 1, data: "b", ts: 2 * sec, port: 2},
			sg{dir: event.Request, seq: 2, data: "a", ts: 5 * sec, port: 1},
			// Port 2 idle for 10 s at 12 s; port 1 is not (last seen at 5 s).
			sg{dir: event.Request, seq: 1, data: "c", ts: 12 * sec, port: 3},
		)
		c := rec.all()
		if !slices.Equal(c[1].reasons(), []CloseReason{CloseIdle}) || len(c[0].reasons()) != 0 {
			t.Fatalf("reasons: port1 %v port2 %v", c[0].reasons(), c[1].reasons())
		}
		if r.Len() != 2 {
			t.Fatalf("tracked %d, want 2", r.Len())
		}
	})
	t.Run("wall clock ticks without traffic", func(t *testing.T) {
		var rec recorder
		r := NewReassembler(Config{IdleTimeout: 10 * time.Second}, rec.factory)
		feed(r, sg{dir: event.Request, seq: 1, data: "a", ts: 1000 * sec})
		t0 := time.Unix(0, 0)
		r.Tick(t0) // anchors capture time 1000 s at t0
		r.Tick(t0.Add(9 * time.Second))
		if r.Len() != 1 {
			t.Fatal("closed too early")
		}
		r.Tick(t0.Add(11 * time.Second))
		if r.Len() != 0 || !slices.Equal(rec.all()[0].reasons(), []CloseReason{CloseIdle}) {
			t.Fatalf("not closed idle: %v", rec.all()[0].reasons())
		}
	})
	t.Run("one side FIN then idle is CloseFIN", func(t *testing.T) {
		var rec recorder
		r := NewReassembler(Config{IdleTimeout: time.Second}, rec.factory)
		feed(r, sg{dir: event.Request, seq: 1, data: "a", flags: FIN, ts: sec})
		r.Expire(3 * sec)
		if got := rec.all()[0].reasons(); !slices.Equal(got, []CloseReason{CloseFIN}) {
			t.Fatalf("reasons %v", got)
		}
	})
}

func TestLRUEviction(t *testing.T) {
	var rec recorder
	// Unconfirmed connections only (requests, no response): LRU among them.
	r := NewReassembler(Config{MaxConns: 2, MaxUnconfirmed: 2}, rec.factory)
	feed(r, sg{seq: 1, data: "a", port: 1}, sg{seq: 1, data: "b", port: 2},
		sg{seq: 2, data: "a", port: 1}, // port 1 is now the most recent
		sg{seq: 1, data: "c", port: 3}) // evicts port 2
	c := rec.all()
	if !slices.Equal(c[1].reasons(), []CloseReason{CloseEvicted}) || len(c[0].reasons()) != 0 {
		t.Fatalf("reasons %v %v", c[0].reasons(), c[1].reasons())
	}
	s := r.Stats().Snapshot()
	if r.Len() != 2 || s.ClosedEvicted != 1 || s.ConnsTracked != 2 {
		t.Fatalf("len %d stats %+v", r.Len(), s)
	}
	checkIdentity(t, s)
}

func TestMemoryBounded(t *testing.T) {
	// A flood of random segments on many connections: held bytes stay within
	// the per-direction and per-shard caps; tracked connections within MaxConns.
	cfg := Config{MaxConns: 64, MaxHoldBytes: 4096, MaxShardHoldBytes: 64 << 10}
	r := NewReassembler(cfg, func(Key, uint64, bool) Handler { return nopHandler{} })
	payload := make([]byte, 1500)
	x := uint32(1)
	for i := range 200000 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		h := sg{dir: event.Direction(x & 1), seq: x * 7919, port: uint16(x >> 20), flags: uint8(x>>8) & (SYN | FIN)}.header()
		r.Segment(&h, payload[:x%1500])
		if i%97 == 0 {
			if r.heldTotal > cfg.MaxShardHoldBytes || r.Len() > cfg.MaxConns {
				t.Fatalf("held %d conns %d", r.heldTotal, r.Len())
			}
			for _, c := range r.conns {
				for d := range c.half {
					if c.half[d].heldBytes > cfg.MaxHoldBytes {
						t.Fatalf("direction holds %d", c.half[d].heldBytes)
					}
				}
			}
		}
	}
	s := r.Stats().Snapshot()
	checkIdentity(t, s)
	if s.BytesHeld != int64(r.heldTotal-segOverheadCount(r)) {
		t.Fatalf("BytesHeld gauge %d != held data", s.BytesHeld)
	}
}

func segOverheadCount(r *Reassembler) int {
	n := 0
	for _, c := range r.conns {
		n += (c.half[0].heldSegs + c.half[1].heldSegs) * segOverhead
	}
	return n
}

func TestDamage(t *testing.T) {
	var rec recorder
	r := NewReassembler(Config{}, rec.factory)
	feed(r, req(100, "GET /a"), req(120, "held"))
	r.Damage(KeyOf(ptr(req(0, "").header())), 0)
	// The next segment is far ahead (the dropped ones advanced the stream):
	// it is delivered at once.
	feed(r, req(500, "GET /b"), resp(1, "HTTP"))
	c := rec.all()[0]
	if got := c.get(event.Request); got != "GET /a<GAP>held<GAP>GET /b" {
		t.Fatalf("request %q", got)
	}
	if got := c.get(event.Response); got != "<GAP>HTTP" {
		t.Fatalf("response %q", got)
	}
	if r.Stats().Snapshot().DamagedConns != 1 {
		t.Fatal("damage not counted")
	}
}

func ptr[T any](v T) *T { return &v }

// TestFloodCannotEvictEstablished: a flood of new flows (SYN and one
// segment each, many times MaxConns) between the exchanges of an
// established connection does not evict it: its requests keep reaching the
// handler, and the flood's flows evict one another.
func TestFloodCannotEvictEstablished(t *testing.T) {
	const maxConns = 64
	var rec recorder
	r := NewReassembler(Config{MaxConns: maxConns}, rec.factory)
	const est = 1 // the established connection's client port
	feed(r, sg{dir: event.Request, seq: 99, flags: SYN, port: est},
		sg{dir: event.Response, seq: 499, ack: 100, flags: SYN | ACK, port: est})
	reqSeq, respSeq := uint32(100), uint32(500)
	var wantReq strings.Builder
	exchange := func(i int) {
		q := fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
		a := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", i%10)
		feed(r, sg{dir: event.Request, seq: reqSeq, data: q, port: est},
			sg{dir: event.Response, seq: respSeq, data: a, port: est})
		reqSeq += uint32(len(q))
		respSeq += uint32(len(a))
		wantReq.WriteString(q)
	}
	exchange(0)
	port := uint16(1000)
	for i := 1; i <= 10; i++ {
		// 2×MaxConns new flows between two exchanges: 20×MaxConns in all.
		for range 2 * maxConns {
			feed(r, sg{dir: event.Request, seq: 9, flags: SYN, port: port},
				sg{dir: event.Request, seq: 10, data: "GET / HTTP/1.1\r\n", port: port})
			port++
		}
		exchange(i)
	}
	c := rec.all()[0]
	if c.key.Client.Port() != est {
		t.Fatalf("first connection is %+v, want the established one", c.key)
	}
	if got := c.reasons(); len(got) != 0 {
		t.Errorf("established connection closed: %v", got)
	}
	if got := c.get(event.Request); got != wantReq.String() {
		t.Errorf("established connection's requests:\n%q\nwant\n%q", got, wantReq.String())
	}
	if n := len(rec.all()); n != 1+20*maxConns {
		t.Errorf("%d connections opened, want %d (the established one reopened?)", n, 1+20*maxConns)
	}
	s := r.Stats().Snapshot()
	if r.Len() > maxConns {
		t.Errorf("%d connections tracked, cap %d", r.Len(), maxConns)
	}
	// Every flood flow but the last MaxUnconfirmed (64/8) was evicted, all
	// of them unconfirmed; the established connection was confirmed.
	const flood, unconf = 20 * maxConns, maxConns / 8
	if s.ClosedEvicted != flood-unconf || s.EvictedUnconfirmed != s.ClosedEvicted ||
		s.ConnsConfirmed != 1 || s.ConnsUnconfirmedTracked != unconf || s.ConnsTracked != unconf+1 {
		t.Errorf("evicted %d (unconfirmed %d), confirmed %d, tracked %d (unconfirmed %d); want %d (%d), 1, %d (%d)",
			s.ClosedEvicted, s.EvictedUnconfirmed, s.ConnsConfirmed, s.ConnsTracked, s.ConnsUnconfirmedTracked,
			flood-unconf, flood-unconf, unconf+1, unconf)
	}
	checkIdentity(t, s)
}

// TestUnconfirmedTable: which connections are confirmed, and which one a
// new connection evicts.
func TestUnconfirmedTable(t *testing.T) {
	a, b, c := uint16(1), uint16(2), uint16(3)
	tests := []struct {
		name        string
		maxConns    int
		segs        []sg
		wantEvicted []uint16 // client ports evicted, in order
		wantConf    uint64
	}{
		{
			name:     "SYN and SYN-ACK only: unconfirmed, evicted first",
			maxConns: 2,
			segs: []sg{
				{dir: event.Request, seq: 1, data: "q", port: a}, {dir: event.Response, seq: 1, data: "r", port: a},
				{dir: event.Request, seq: 9, flags: SYN, port: b},
				{dir: event.Response, seq: 9, ack: 10, flags: SYN | ACK, port: b},
				{dir: event.Request, seq: 9, flags: SYN, port: c},
			},
			wantEvicted: []uint16{b}, wantConf: 1,
		},
		{
			name:     "data one way only: unconfirmed",
			maxConns: 2,
			segs: []sg{
				{dir: event.Request, seq: 1, data: "q", port: a}, {dir: event.Response, seq: 1, data: "r", port: a},
				{dir: event.Request, seq: 1, data: "q1", port: b}, {dir: event.Request, seq: 3, data: "q2", port: b},
				{dir: event.Request, seq: 9, flags: SYN, port: c},
			},
			wantEvicted: []uint16{b}, wantConf: 1,
		},
		{
			name:     "held response bytes do not confirm",
			maxConns: 2,
			segs: []sg{
				{dir: event.Request, seq: 1, data: "q", port: a}, {dir: event.Response, seq: 1, data: "r", port: a},
				{dir: event.Request, seq: 1, data: "q", port: b},
				{dir: event.Response, seq: 0, ack: 2, flags: SYN | ACK, port: b},
				{dir: event.Response, seq: 50, data: "held", port: b},
				{dir: event.Request, seq: 9, flags: SYN, port: c},
			},
			wantEvicted: []uint16{b}, wantConf: 1,
		},
		{
			name:     "all confirmed: the least recently used confirmed one",
			maxConns: 2,
			segs: []sg{
				{dir: event.Request, seq: 1, data: "q", port: a}, {dir: event.Response, seq: 1, data: "r", port: a},
				{dir: event.Request, seq: 1, data: "q", port: b}, {dir: event.Response, seq: 1, data: "r", port: b},
				{dir: event.Request, seq: 2, data: "q", port: a},
				{dir: event.Request, seq: 9, flags: SYN, port: c},
			},
			wantEvicted: []uint16{b}, wantConf: 2,
		},
		{
			name:     "unconfirmed table full, whole table not: the oldest unconfirmed",
			maxConns: 16, // 2 unconfirmed
			segs: []sg{
				{dir: event.Request, seq: 9, flags: SYN, port: a},
				{dir: event.Request, seq: 9, flags: SYN, port: b},
				{dir: event.Request, seq: 10, data: "q", port: a},
				{dir: event.Request, seq: 9, flags: SYN, port: c},
			},
			wantEvicted: []uint16{b},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			r := NewReassembler(Config{MaxConns: tc.maxConns}, rec.factory)
			feed(r, tc.segs...)
			var evicted []uint16
			for _, cn := range rec.all() {
				if slices.Contains(cn.reasons(), CloseEvicted) {
					evicted = append(evicted, cn.key.Client.Port())
				}
			}
			if !slices.Equal(evicted, tc.wantEvicted) {
				t.Errorf("evicted %v, want %v", evicted, tc.wantEvicted)
			}
			s := r.Stats().Snapshot()
			if s.ConnsConfirmed != tc.wantConf {
				t.Errorf("confirmed %d, want %d", s.ConnsConfirmed, tc.wantConf)
			}
			checkIdentity(t, s)
			r.CloseAll(CloseShutdown, 0)
			if s := r.Stats().Snapshot(); s.ConnsUnconfirmedTracked != 0 || s.ConnsTracked != 0 {
				t.Errorf("after CloseAll: tracked %d, unconfirmed %d", s.ConnsTracked, s.ConnsUnconfirmedTracked)
			}
		})
	}
}
