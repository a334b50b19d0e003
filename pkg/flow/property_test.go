package flow

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

type piece struct{ off, n int }

// segmentStream cuts n bytes into pieces of 1..1500 bytes.
func segmentStream(rng *rand.Rand, n int) []piece {
	var ps []piece
	for off := 0; off < n; {
		l := min(1+rng.IntN(1500), n-off)
		ps = append(ps, piece{off, l})
		off += l
	}
	return ps
}

// reorder shuffles ps so that a piece moves at most w places.
func reorder(rng *rand.Rand, ps []piece, w float64) []piece {
	type kp struct {
		k float64
		p piece
	}
	ks := make([]kp, len(ps))
	for i, p := range ps {
		ks[i] = kp{float64(i) + rng.Float64()*w, p}
	}
	slices.SortFunc(ks, func(a, b kp) int {
		switch {
		case a.k < b.k:
			return -1
		case a.k > b.k:
			return 1
		}
		return 0
	})
	out := make([]piece, len(ks))
	for i := range ks {
		out[i] = ks[i].p
	}
	return out
}

func propISN(rng *rand.Rand, seed int, n int) uint32 {
	if seed%3 == 0 {
		return uint32(-rng.IntN(n + 1)) // the stream crosses 2^32
	}
	return rng.Uint32()
}

func runStream(cfg Config, isn uint32, stream []byte, ps []piece) (string, StatsSnapshot) {
	var rec recorder
	r := NewReassembler(cfg, rec.factory)
	h := sg{dir: event.Request, seq: isn - 1, flags: SYN}.header()
	r.Segment(&h, nil)
	for _, p := range ps {
		h := sg{dir: event.Request, seq: isn + uint32(p.off), data: "x"}.header()
		h.CapLen, h.WireLen = uint16(p.n), uint16(p.n)
		r.Segment(&h, stream[p.off:p.off+p.n])
	}
	r.CloseAll(CloseShutdown, 0)
	return rec.all()[0].get(event.Request), r.Stats().Snapshot()
}

// Any segmentation, reordering within the hold window, duplication and
// overlapping retransmission of a byte stream delivers exactly the stream.
func TestPropertyExactStream(t *testing.T) {
	for seed := range 300 {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		n := 1 + rng.IntN(40000)
		stream := make([]byte, n)
		for i := range stream {
			stream[i] = byte(rng.Uint32())
		}
		ps := segmentStream(rng, n)
		// Duplicates and retransmissions with other boundaries.
		for range rng.IntN(len(ps) + 1) {
			if rng.IntN(2) == 0 {
				ps = append(ps, ps[rng.IntN(len(ps))])
			} else {
				off := rng.IntN(n)
				ps = append(ps, piece{off, 1 + rng.IntN(min(3000, n-off))})
			}
		}
		ps = reorder(rng, ps, 8)
		got, s := runStream(Config{}, propISN(rng, seed, n), stream, ps)
		if got != string(stream) {
			i := 0
			for i < min(len(got), n) && got[i] == stream[i] {
				i++
			}
			t.Fatalf("seed %d: delivered %d bytes, want %d; first difference at %d", seed, len(got), n, i)
		}
		checkIdentity(t, s)
		if s.Gaps != 0 || s.BytesDelivered != uint64(n) || s.BytesHeld != 0 {
			t.Fatalf("seed %d: stats %+v", seed, s)
		}
	}
}

// A stream with a hole delivers everything before it, one Gap, then
// everything after it; never a byte that was not sent at that place.
func TestPropertyHole(t *testing.T) {
	for seed := range 300 {
		rng := rand.New(rand.NewPCG(uint64(seed), 2))
		n := 3000 + rng.IntN(60000)
		stream := make([]byte, n)
		for i := range stream {
			stream[i] = byte(rng.Uint32())
		}
		ps := segmentStream(rng, n)
		if len(ps) < 3 {
			continue
		}
		k := 1 + rng.IntN(len(ps)-2)
		hole := ps[k]
		ps = slices.Delete(ps, k, k+1)
		for range rng.IntN(len(ps)/2 + 1) { // exact duplicates
			ps = append(ps, ps[rng.IntN(len(ps))])
		}
		ps = reorder(rng, ps, 4)
		// Held data is given up either at close (large cap) or when the
		// cap is reached (small cap: far more than the reorder window).
		for _, cfg := range []Config{{}, {MaxHoldBytes: 16 << 10}} {
			got, s := runStream(cfg, propISN(rng, seed, n), stream, ps)
			want := string(stream[:hole.off]) + "<GAP>" + string(stream[hole.off+hole.n:])
			if got != want {
				t.Fatalf("seed %d cap %d: hole at %d+%d: got %d bytes, want %d", seed, cfg.MaxHoldBytes, hole.off, hole.n, len(got), len(want))
			}
			checkIdentity(t, s)
			if s.Gaps != 1 {
				t.Fatalf("seed %d: %d gaps", seed, s.Gaps)
			}
		}
	}
}

// fuzzHandler checks every delivered byte against the pattern the fuzz
// target sends at its sequence number.
type fuzzHandler struct {
	t       *testing.T
	r       **Reassembler
	key     Key
	corrupt *bool
	closed  bool
}

func pattern(dir event.Direction, seq uint32) byte {
	return byte(seq*131 + seq>>11 + uint32(dir)*17)
}

func (h *fuzzHandler) Data(dir event.Direction, b []byte, ts uint64) {
	if h.closed {
		h.t.Fatal("Data after Close")
	}
	c := (*h.r).conns[h.key]
	if c == nil {
		h.t.Fatal("Data for an untracked connection")
	}
	seq := c.half[dir].next
	for i, x := range b {
		p := pattern(dir, seq+uint32(i))
		if x != p && !(*h.corrupt && x == ^p) {
			h.t.Fatalf("byte at seq %d is %#x, never sent (pattern %#x)", seq+uint32(i), x, p)
		}
	}
}
func (h *fuzzHandler) Gap(event.Direction, uint64) {
	if h.closed {
		h.t.Fatal("Gap after Close")
	}
}
func (h *fuzzHandler) Close(CloseReason, uint64) {
	if h.closed {
		h.t.Fatal("closed twice")
	}
	h.closed = true
}

var fuzzBases = [...]uint32{0, 1000, 0xffffff00, 0x7fffffff}

// FuzzReassembly feeds arbitrary segments (8 bytes each: connection,
// direction, flags, sequence offset, length, operation) and checks: no
// panic, held bytes within the caps, delivered bytes always those sent at
// that sequence number, and the stats identities.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 10, 0, 1, 0, 5, 0, 0, 0, 8, 0})
	f.Add(bytes.Repeat([]byte{0x12, 0x80, 3, 1, 0, 7, 200, 1}, 20))
	f.Add([]byte{0x0c, 0x40, 0xff, 0xff, 0x00, 0x10, 0x00, 0x00, 0x04, 0x01, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := Config{MaxConns: 3, MaxHoldBytes: 3000, MaxHoldSegments: 8, MaxShardHoldBytes: 5000, IdleTimeout: time.Second}
		var r *Reassembler
		corrupt := false
		r = NewReassembler(cfg, func(k Key, ts uint64, mid bool) Handler {
			return &fuzzHandler{t: t, r: &r, key: k, corrupt: &corrupt}
		})
		buf := make([]byte, 4096)
		var ts uint64
		for len(in) >= 8 {
			op := in[:8]
			in = in[8:]
			ci, dir := int(op[0]&3), event.Direction(op[0]>>2&1)
			flags := op[1]
			off := uint32(binary.LittleEndian.Uint16(op[2:])) << (op[6] & 15)
			n := int(binary.LittleEndian.Uint16(op[4:]) & 2047)
			ts += uint64(op[7]) * uint64(time.Millisecond) * 10
			switch op[6] >> 4 {
			case 14:
				r.Damage(KeyOf(ptr(sg{dir: dir, port: uint16(ci + 1)}.header())), ts)
				continue
			case 15:
				r.Tick(time.Unix(0, int64(ts)))
				continue
			}
			seq := fuzzBases[ci] + off
			if flags&0x40 != 0 {
				corrupt = true
			}
			payloadSeq := seq
			if flags&SYN != 0 {
				payloadSeq++
			}
			for i := range n {
				buf[i] = pattern(dir, payloadSeq+uint32(i))
				if flags&0x40 != 0 && i%3 == 0 {
					buf[i] = ^buf[i]
				}
			}
			h := sg{dir: dir, seq: seq, flags: flags & (SYN | FIN | RST | ACK), port: uint16(ci + 1), ts: ts, ack: fuzzBases[ci^1]}.header()
			capLen := n
			if flags&0x80 != 0 { // truncated
				capLen = n / 2
				h.Flags |= event.FlagTruncated
			}
			h.CapLen, h.WireLen = uint16(capLen), uint16(n)
			r.Segment(&h, buf[:capLen])

			if r.heldTotal > cfg.MaxShardHoldBytes || r.Len() > cfg.MaxConns {
				t.Fatalf("held %d, conns %d", r.heldTotal, r.Len())
			}
			for _, c := range r.conns {
				for d := range c.half {
					if hf := &c.half[d]; hf.heldBytes > cfg.MaxHoldBytes || hf.heldSegs > cfg.MaxHoldSegments {
						t.Fatalf("direction holds %d bytes in %d segments", hf.heldBytes, hf.heldSegs)
					}
				}
			}
		}
		r.CloseAll(CloseShutdown, ts)
		s := r.Stats().Snapshot()
		checkIdentity(t, s)
		if s.BytesHeld != 0 || r.heldTotal != 0 || s.ConnsTracked != 0 {
			t.Fatalf("after CloseAll: %+v, heldTotal %d", s, r.heldTotal)
		}
	})
}
