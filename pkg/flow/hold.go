package flow

// Held out-of-order data: a sorted, non-overlapping singly linked list of
// segments per connection direction, with buffers and list nodes recycled
// through per-Reassembler free lists (no package-level state).

// seg is one held range of sequence space [seq, end). data holds the
// captured bytes from seq; when len(data) < end-seq the rest was not captured
// (a truncated segment) and delivering it means a Gap.
type seg struct {
	seq, end uint32
	data     []byte
	ts       uint64
	gapAfter bool // the segment was flagged truncated: a Gap follows it
	next     *seg
}

// segOverhead is what a held node costs beyond its data, charged against the
// shard-wide hold cap so that empty (truncated) pieces are bounded too.
const segOverhead = 64

// bufClasses are the capacities of pooled hold buffers. Payloads are at most
// 65535 bytes (WireLen is 16 bits).
var bufClasses = [...]int{512, 2048, 9216, 65536}

// maxFreeSegs bounds the recycled node list.
const maxFreeSegs = 4096

type bufPool struct {
	free      [len(bufClasses)][][]byte
	freeBytes int
	maxFree   int
}

func classOf(n int) int {
	for i, c := range bufClasses {
		if n <= c {
			return i
		}
	}
	return -1
}

// get returns a buffer of length n (n ≤ 65536) with pooled capacity.
func (p *bufPool) get(n int) []byte {
	i := classOf(n)
	if i < 0 {
		return make([]byte, n)
	}
	if l := len(p.free[i]); l > 0 {
		b := p.free[i][l-1]
		p.free[i][l-1] = nil
		p.free[i] = p.free[i][:l-1]
		p.freeBytes -= cap(b)
		return b[:n]
	}
	return make([]byte, n, bufClasses[i])
}

func (p *bufPool) put(b []byte) {
	if b == nil {
		return
	}
	i := classOf(cap(b))
	if i < 0 || cap(b) != bufClasses[i] || p.freeBytes+cap(b) > p.maxFree {
		return
	}
	p.free[i] = append(p.free[i], b[:0])
	p.freeBytes += cap(b)
}

// Serial-number arithmetic on 32-bit sequence numbers (RFC 1982).
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }
func seqMin(a, b uint32) uint32 {
	if seqLT(a, b) {
		return a
	}
	return b
}

// capturedIn returns the part of d (whose first byte is at base) that lies in
// [a, b), and whether the range extends past the captured bytes.
func capturedIn(d []byte, base, a, b uint32) (part []byte, short bool) {
	lo, hi := int(a-base), int(b-base)
	if hi > len(d) {
		short = true
		hi = len(d)
	}
	if lo < hi {
		part = d[lo:hi]
	}
	return part, short
}
