package httpx

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/flow"
)

// releaseSink keeps nothing: it takes a reference and drops it at once.
type releaseSink struct{ n int }

func (s *releaseSink) Request(ex *Exchange)  { ex.Retain(); ex.Release() }
func (s *releaseSink) Response(ex *Exchange) { s.n++; ex.Retain(); ex.Release() }

// keepAliveSegments builds 1448-byte segments of keep-alive GETs whose total
// length is a whole number of segments, so the stream can be replayed in a
// loop; resps[i] holds the responses to the requests that end in segment i.
func keepAliveSegments(nseg int) (segs, resps [][]byte) {
	const seg = 1448
	var reqs []string
	total := 0
	for i := 0; total < nseg*seg-400; i++ {
		r := fmt.Sprintf("GET /api/v1/items/%d?page=%d HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"+
			"Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nCookie: session=abcdef0123456789\r\nX-Request-Id: %08x\r\n\r\n", i, i%7, i)
		reqs = append(reqs, r)
		total += len(r)
	}
	// pad the last request to fill the last segment exactly
	pad := nseg*seg - total
	last := reqs[len(reqs)-1]
	reqs[len(reqs)-1] = last[:len(last)-2] + "X-Pad: " + strings.Repeat("p", pad-9) + "\r\n\r\n"
	stream := strings.Join(reqs, "")
	if len(stream) != nseg*seg {
		panic(fmt.Sprint("bad padding ", len(stream)))
	}
	resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
	resps = make([][]byte, nseg)
	end := 0
	for _, r := range reqs {
		end += len(r)
		i := (end - 1) / seg
		resps[i] = append(resps[i], resp...)
	}
	for i := 0; i < nseg; i++ {
		segs = append(segs, []byte(stream[i*seg:(i+1)*seg]))
	}
	return segs, resps
}

// BenchmarkParseKeepAliveGETs feeds 1448-byte segments of keep-alive GETs
// (and, in "with-responses", production's responses to them) through one
// connection's handler. One op is one request segment.
func BenchmarkParseKeepAliveGETs(b *testing.B) {
	segs, resps := keepAliveSegments(64)
	for _, bc := range []struct {
		name     string
		withResp bool
		keep     int64
	}{
		{"requests-only", false, 0},
		{"with-responses", true, 0},
		// As with a comparison stage: bodies kept up to 1 MiB and hashed.
		{"with-responses-kept", true, 1 << 20},
	} {
		withResp := bc.withResp
		b.Run(bc.name, func(b *testing.B) {
			sink := &releaseSink{}
			var st Stats
			h := NewFactory(Config{ResponseBodyKeep: bc.keep}, sink, &st, nil)(flow.Key{}, 0, false)
			b.SetBytes(1448)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(segs)
				h.Data(Q, segs[j], uint64(i))
				if withResp && len(resps[j]) > 0 {
					h.Data(R, resps[j], uint64(i))
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "segments/s")
			s := st.Snapshot()
			if s.RequestsMalformed+s.GaveUpNotHTTP+s.ResponsesUnpaired != 0 {
				b.Fatalf("bad stream: %+v", s)
			}
			if withResp && s.Answered == 0 {
				b.Fatalf("no answers: %+v", s)
			}
		})
	}
}
