package httpx

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
)

// dumpSink writes down everything the parser hands on, so that two runs over
// the same bytes can be compared.
type dumpSink struct{ b strings.Builder }

func (s *dumpSink) Request(ex *Exchange) {
	q := &ex.Req
	fmt.Fprintf(&s.b, "Q%d %q %q %q %q body=%q chunked=%v tl=%v %d-%d\n", ex.Seq, q.Method, q.Target, q.Proto, q.Head, q.Body, q.Chunked, q.TooLarge, q.Start, q.End)
	for _, f := range q.Fields {
		fmt.Fprintf(&s.b, "  %q: %q\n", f.Name, f.Value)
	}
}

func (s *dumpSink) Response(ex *Exchange) {
	fmt.Fprintf(&s.b, "R%d %v", ex.Seq, ex.Reason)
	if p := ex.Resp; p != nil {
		fmt.Fprintf(&s.b, " %q %d %q %q body=%q len=%d tl=%v %d-%d", p.Proto, p.Status, p.Reason, p.Head, p.Body, p.BodyLen, p.TooLarge, p.Start, p.End)
		for _, f := range p.Fields {
			fmt.Fprintf(&s.b, "\n  %q: %q", f.Name, f.Value)
		}
	}
	s.b.WriteString("\n")
}

// splitRun feeds prefix (requests) then data to dir, in pieces of at most
// seg bytes (0: whole), every piece with the same timestamp.
func splitRun(dir event.Direction, prefix, data []byte, seg int, mid bool) string {
	cfg := Config{MaxHeaderBytes: 512, MaxBodyBytes: 1024, MaxResyncBytes: 4096, ResponseBodyKeep: KeepWholeBody}
	sink := &dumpSink{}
	var st Stats
	h := NewFactory(cfg, sink, &st, nil)(flow.Key{}, 0, mid)
	if len(prefix) > 0 {
		h.Data(event.Request, prefix, 1)
	}
	for len(data) > 0 {
		n := len(data)
		if seg > 0 && n > seg {
			n = seg
		}
		piece := append([]byte(nil), data[:n]...)
		h.Data(dir, piece, 1)
		clear(piece) // the parser may not keep views of its input
		data = data[n:]
	}
	h.Close(flow.CloseFIN, 2)
	fmt.Fprintf(&sink.b, "%+v\n", st.Snapshot())
	return sink.b.String()
}

// The fast path that parses a head within one segment gives exactly what
// the line-by-line path gives, however the bytes are cut.
func FuzzFastHeads(f *testing.F) {
	f.Add([]byte(get("/a")+"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"+get("/b")), uint8(7), false, false)
	f.Add([]byte("GET / HTTP/1.1\nA: b\n\nGET /x HTTP/1.0\r\nB:  c \r\n\n"), uint8(0), false, false)
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\r\n\rGET /x HTTP/1.0\r\n\r\n"), uint8(3), false, false)
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\r\nC\r\n\r\nGET /x HTTP/1.0\r\n\r\n"), uint8(0), false, false)
	f.Add([]byte("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"), uint8(30), false, false)
	f.Add([]byte(ok("a")+"HTTP/1.1 100 Continue\r\n\r\n"+ok("bb")+"HTTP/1.1 204 \r\n\r\n"), uint8(0), true, false)
	f.Add([]byte("junkHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"), uint8(4), true, true)
	f.Fuzz(func(t *testing.T, data []byte, seg uint8, resp, mid bool) {
		dir, prefix := event.Request, []byte(nil)
		if resp {
			dir, prefix = event.Response, []byte(get("/1")+"HEAD /2 HTTP/1.1\r\n\r\n"+get("/3")+get("/4"))
		}
		defer func() { fastHeads = true }()
		fastHeads = true
		fast := splitRun(dir, prefix, data, int(seg), mid)
		fastHeads = false
		slow := splitRun(dir, prefix, data, int(seg), mid)
		if fast != slow {
			t.Fatalf("fast path:\n%s\nline by line:\n%s", fast, slow)
		}
	})
}
