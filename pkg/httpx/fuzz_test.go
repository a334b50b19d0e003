package httpx

import (
	"bytes"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
)

// fuzzSink checks what every emitted message may hold: its head is bytes of
// the input, a body that was not chunked is bytes of the input, and nothing
// exceeds the limits.
type fuzzSink struct {
	t     *testing.T
	in    []byte
	cfg   Config
	count int
}

// WantBody keeps the bodies of requests whose target has an even length,
// so that both the kept and the measured paths are fuzzed.
func (s *fuzzSink) WantBody(ex *Exchange) bool {
	ex.Mark = 1 + uint8(len(ex.Req.Target)%2)
	return ex.Mark == 1
}

func (s *fuzzSink) Request(ex *Exchange) {
	s.count++
	q := &ex.Req
	if (q.BodySkipped || q.OverBudget || q.TooLarge) && q.Body != nil {
		s.t.Fatalf("body kept: skipped %v, over budget %v, too large %v", q.BodySkipped, q.OverBudget, q.TooLarge)
	}
	if q.BodySkipped && ex.Mark != 2 {
		s.t.Fatalf("body skipped, mark %d: WantBody said keep", ex.Mark)
	}
	if int64(len(q.Body)) > q.BodyLen {
		s.t.Fatalf("body %d bytes, BodyLen %d", len(q.Body), q.BodyLen)
	}
	if len(q.Head) > s.cfg.MaxHeaderBytes || int64(len(q.Body)) > s.cfg.MaxBodyBytes {
		s.t.Fatalf("request beyond limits: head %d body %d", len(q.Head), len(q.Body))
	}
	if !bytes.Contains(s.in, q.Head) {
		s.t.Fatalf("request head %q not in the input", q.Head)
	}
	if !q.Chunked && !bytes.Contains(s.in, q.Body) {
		s.t.Fatalf("request body %q not in the input", q.Body)
	}
}

func (s *fuzzSink) Response(ex *Exchange) {
	p := ex.Resp
	if p == nil {
		return
	}
	if len(p.Head) > s.cfg.MaxHeaderBytes || int64(len(p.Body)) > s.cfg.MaxBodyBytes || int64(len(p.Body)) > p.BodyLen {
		s.t.Fatalf("response beyond limits: head %d body %d", len(p.Head), len(p.Body))
	}
	if !bytes.Contains(s.in, p.Head) {
		s.t.Fatalf("response head %q not in the input", p.Head)
	}
	if int64(len(p.Body)) > s.cfg.ResponseBodyKeep {
		s.t.Fatalf("response body %d bytes kept, keep %d", len(p.Body), s.cfg.ResponseBodyKeep)
	}
	if p.BodyComplete && int64(len(p.Body)) != p.BodyLen {
		s.t.Fatalf("complete response body of %d bytes, BodyLen %d", len(p.Body), p.BodyLen)
	}
	if !p.TooLarge && !p.BodyComplete && (int64(len(p.Body)) != s.cfg.ResponseBodyKeep || p.BodyLen <= s.cfg.ResponseBodyKeep) {
		s.t.Fatalf("incomplete response body: %d bytes kept of %d, keep %d", len(p.Body), p.BodyLen, s.cfg.ResponseBodyKeep)
	}
	if !p.TooLarge && !p.BodyComplete && bytes.Count(s.in, p.Head) == 1 {
		// The body follows its head unchunked in the input when it was
		// sent with Content-Length or until close: then its hash is known.
		at := bytes.Index(s.in, p.Head) + len(p.Head)
		if rest := s.in[at:]; int64(len(rest)) >= p.BodyLen && bytes.HasPrefix(rest, p.Body) && !bytes.Contains(bytes.ToLower(p.Head), []byte("chunked")) {
			if want := HashAdd(HashInit, rest[:p.BodyLen]); p.BodyHash != want {
				s.t.Fatalf("BodyHash %x, want %x over the %d body bytes", p.BodyHash, want, p.BodyLen)
			}
		}
	}
	if p.TooLarge && (p.BodyComplete || p.BodyHash != 0) {
		s.t.Fatalf("TooLarge response with BodyComplete %v, hash %x", p.BodyComplete, p.BodyHash)
	}
}

// fuzzFeed feeds data to dir in pieces whose sizes come from splits; a zero
// split byte inserts a gap.
func fuzzFeed(t *testing.T, dir event.Direction, prefix, data, splits []byte, mid bool) {
	// A budget smaller than a few bodies, so that it runs out, and heads
	// allowed a little beyond headFree, so that heads in progress take from it.
	budget := NewBudget(3000)
	cfg := Config{MaxHeaderBytes: 2560, MaxBodyBytes: 1024, MaxResyncBytes: 8192, ResponseBodyKeep: 100, BodyBudget: budget}
	in := append(append([]byte(nil), prefix...), data...)
	sink := &fuzzSink{t: t, in: in, cfg: cfg}
	var st Stats
	h := NewFactory(cfg, sink, &st, nil)(flow.Key{}, 0, mid)
	if len(prefix) > 0 {
		h.Data(event.Request, prefix, 1)
	}
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(splits) > 0 {
			s := splits[i%len(splits)]
			if s == 0 {
				h.Gap(dir, uint64(i))
				s = 1
			}
			n = min(int(s), len(data))
		}
		h.Data(dir, data[:n], uint64(i))
		data = data[n:]
	}
	h.Close(flow.CloseFIN, 0)
	checkAccounting(t, st.Snapshot())
	if n := budget.Held(); n != 0 {
		t.Fatalf("budget held %d bytes after the connection closed", n)
	}
}

func FuzzRequestParser(f *testing.F) {
	f.Add([]byte(get("/a")+"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), []byte{7, 1, 200}, false)
	f.Add([]byte("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"), []byte{3}, false)
	f.Add([]byte("xx GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n"), []byte{2, 0, 5}, true)
	f.Add([]byte("\x16\x03\x01\x00\x10"), []byte{}, false)
	f.Fuzz(func(t *testing.T, data, splits []byte, mid bool) {
		fuzzFeed(t, event.Request, nil, data, splits, mid)
	})
}

func FuzzResponseParser(f *testing.F) {
	f.Add([]byte(ok("a")+"HTTP/1.1 100 Continue\r\n\r\n"+ok("bb")), []byte{9, 2}, false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 204 No\r\n\r\n"), []byte{1}, false)
	f.Add([]byte("junkHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"), []byte{3, 0, 4}, true)
	f.Fuzz(func(t *testing.T, data, splits []byte, mid bool) {
		reqs := []byte(get("/1") + "HEAD /2 HTTP/1.1\r\n\r\n" + get("/3") + "CONNECT h:1 HTTP/1.1\r\n\r\n")
		fuzzFeed(t, event.Response, reqs, data, splits, mid)
	})
}
