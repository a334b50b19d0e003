package replay

import (
	"encoding/binary"
	"math"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// Load multiplication (Config.Multiply): each accepted request is sent to a
// target floor(F) or ceil(F) times. The choice is a hash of the request's
// identity — its connection (VNI, client and server address and port) and
// its index on that connection — compared with the fraction of F, so over
// many requests the average is F, and the same request (on any receiver,
// after any restart) always gets the same count. The hash has its own seed:
// it is independent of the sampling decision.

// multiplySeed salts the multiplication hash.
const multiplySeed = "shadowtap-multiply-v1"

// multiplier is a target's Multiply, ready for dispatch: whole copies, and
// the fraction as a threshold of sampleScale.
type multiplier struct {
	whole int    // floor(F)
	frac  uint64 // (F - floor(F)) * sampleScale: an extra copy below it
}

func newMultiplier(f float64) multiplier {
	whole := math.Floor(f)
	return multiplier{whole: int(whole), frac: uint64(math.Round((f - whole) * sampleScale))}
}

// one reports whether every request is sent exactly once.
func (m multiplier) one() bool { return m.whole == 1 && m.frac == 0 }

// copies is the number of times a request whose identity hashes to h is
// sent.
func (m multiplier) copies(h uint64) int {
	if m.frac > 0 && h%sampleScale < m.frac {
		return m.whole + 1
	}
	return m.whole
}

// identityHash hashes the request's identity for the multiplication choice.
func identityHash(ex *httpx.Exchange) uint64 {
	var buf [80]byte
	b := binary.BigEndian.AppendUint32(buf[:0], ex.Conn.VNI)
	b, _ = ex.Conn.Client.AppendBinary(b)
	b, _ = ex.Conn.Server.AppendBinary(b)
	b = binary.BigEndian.AppendUint64(b, ex.Seq)
	return hashSeeded(multiplySeed, b)
}
