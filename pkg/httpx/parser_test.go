package httpx

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/flow"
)

func TestStreams(t *testing.T) {
	small := Config{MaxHeaderBytes: 128, MaxBodyBytes: 8}
	tls := "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00\x11", 40)
	tests := []struct {
		name  string
		cfg   Config
		mid   bool
		steps []step
		want  []string
		stats func(StatsSnapshot) bool
	}{
		{name: "simple", steps: []step{q(get("/a")), r(ok("hi"))},
			want: []string{`GET /a -> 200 "hi"`}},
		{name: "pipelined in one call",
			steps: []step{q(get("/1") + get("/2") + get("/3")), r(ok("1") + ok("22") + ok("333"))},
			want:  []string{`GET /1 -> 200 "1"`, `GET /2 -> 200 "22"`, `GET /3 -> 200 "333"`}},
		{name: "post content-length",
			steps: []step{q("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + get("/n")), r(ok("a") + ok("b"))},
			want:  []string{`POST /p "hello" -> 200 "a"`, `GET /n -> 200 "b"`}},
		{name: "chunked request with extensions and trailers",
			steps: []step{q("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5;name=val\r\nhello\r\n6 ; x=\"y\"\r\n world\r\n0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n" + get("/after")),
				r(ok("") + ok(""))},
			want: []string{`POST /c "hello world" chunked -> 200`, `GET /after -> 200`}},
		{name: "chunked response",
			steps: []step{q(get("/x") + get("/y")), r("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n" + ok("z"))},
			want:  []string{`GET /x -> 200 "0123456789"`, `GET /y -> 200 "z"`}},
		{name: "expect 100-continue",
			steps: []step{q("PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
				r("HTTP/1.1 100 Continue\r\n\r\n"), q("abc"), r(ok("done"))},
			want:  []string{`PUT /u "abc" -> 200 "done"`},
			stats: func(s StatsSnapshot) bool { return s.Interim == 1 && s.Answered == 1 }},
		{name: "early final response to 100-continue",
			steps: []step{q("PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
				r("HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"), q("abc"), q(get("/n")), r(ok("n"))},
			want: []string{`PUT /u "abc" -> 417`, `GET /n -> 200 "n"`}},
		{name: "HEAD response has no body",
			steps: []step{q("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n" + get("/g")),
				r("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + ok("g"))},
			want: []string{`HEAD /h -> 200`, `GET /g -> 200 "g"`}},
		{name: "204 304 and 103",
			steps: []step{q(get("/1") + get("/2") + get("/3")),
				r("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n" +
					"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + ok("3"))},
			want:  []string{`GET /1 -> 204`, `GET /2 -> 304`, `GET /3 -> 200 "3"`},
			stats: func(s StatsSnapshot) bool { return s.Interim == 1 }},
		{name: "HTTP/1.0 body until close",
			steps: []step{q("GET /old HTTP/1.0\r\n\r\n"), r("HTTP/1.0 200 OK\r\nServer: s\r\n\r\nuntil"), r(" the end")},
			want:  []string{`GET /old -> 200 "until the end"`}},
		{name: "connection close",
			steps: []step{q("GET /c HTTP/1.1\r\nConnection: close\r\n\r\n"), r("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")},
			want:  []string{`GET /c -> 200 "ok"`}},
		{name: "upgrade",
			steps: []step{q("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
				r("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"), q("\x81\x85abcd....."), q(get("/no"))},
			want:  []string{`GET /ws -> 101`},
			stats: func(s StatsSnapshot) bool { return s.GaveUpUpgrade == 1 && s.GaveUpNotHTTP == 0 }},
		{name: "upgrade frames overtake the 101",
			steps: []step{q("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), q("\x81\x85abcd....."),
				r("HTTP/1.1 101 Switching Protocols\r\n\r\n")},
			want:  []string{`GET /ws -> gave_up`},
			stats: func(s StatsSnapshot) bool { return s.GaveUpUpgrade == 1 && s.GaveUpNotHTTP == 0 }},
		{name: "connect",
			steps: []step{q("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + tls), r("HTTP/1.1 200 Connection established\r\n\r\n" + tls)},
			want:  []string{`CONNECT example.com:443 -> 200`},
			stats: func(s StatsSnapshot) bool { return s.GaveUpConnect == 1 && s.GaveUpNotHTTP == 0 }},
		{name: "tls client hello",
			steps: []step{q(tls), r("\x16\x03\x03\x00\x5a\x02")},
			want:  nil,
			stats: func(s StatsSnapshot) bool { return s.GaveUpNotHTTP == 1 && s.Requests == 0 }},
		{name: "head too large", cfg: small,
			steps: []step{q("GET /big HTTP/1.1\r\nX-Big: " + strings.Repeat("b", 200) + "\r\n\r\n"), r(ok("b")), q(get("/n")), r(ok("n"))},
			want:  []string{`  toolarge -> 200 "b"`, `GET /n -> 200 "n"`},
			stats: func(s StatsSnapshot) bool { return s.RequestsTooLarge == 1 && s.RequestResyncs == 1 }},
		{name: "body too large", cfg: small,
			steps: []step{q("POST /p HTTP/1.1\r\nContent-Length: 20\r\n\r\n" + strings.Repeat("x", 20) + get("/n")), r(ok("123456789") + ok("n"))},
			want:  []string{`POST /p toolarge -> 200 toolarge`, `GET /n -> 200 "n"`},
			stats: func(s StatsSnapshot) bool { return s.RequestsTooLarge == 1 && s.ResponsesTooLarge == 1 }},
		{name: "chunked body too large", cfg: small,
			steps: []step{q("POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n" + get("/n")), r(ok("a") + ok("n"))},
			want:  []string{`POST /p toolarge chunked -> 200 "a"`, `GET /n -> 200 "n"`}},
		{name: "gap in request body then resync",
			steps: []step{q(get("/a") + "POST /b HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc"), gap(Q), q("xyz\r\n" + get("/c")),
				r(ok("a") + ok("b")), q(get("/d")), r(ok("d"))},
			// /c was sent while B's response was owed: pairing waits for the quiet point at /d
			want: []string{`GET /a -> 200 "a"`, `GET /c -> gap`, `GET /d -> 200 "d"`},
			stats: func(s StatsSnapshot) bool {
				return s.RequestsGap == 1 && s.RequestResyncs == 1 && s.ResponsesUnpaired == 1
			}},
		{name: "gap in request head",
			steps: []step{q("GET /a HTTP/1.1\r\nHo"), gap(Q), q("st: x\r\n\r\n"), r(ok("a")), q(get("/b")), r(ok("b"))},
			want:  []string{`GET /b -> 200 "b"`},
			stats: func(s StatsSnapshot) bool { return s.RequestsGap == 1 && s.ResponsesUnpaired == 1 }},
		{name: "gap in response marks pending",
			steps: []step{q(get("/a") + get("/b")), r("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12"), gap(R), r("90" + ok("b")), q(get("/c")), r(ok("c"))},
			want:  []string{`GET /a -> gap`, `GET /b -> gap`, `GET /c -> 200 "c"`},
			stats: func(s StatsSnapshot) bool {
				return s.ResponsesGap == 1 && s.ResponseResyncs == 1 && s.ResponsesUnpaired == 1
			}},
		{name: "mid-stream join", mid: true,
			steps: []step{q("dy bytes\r\n" + get("/a")), r("e of a body" + ok("a")), q(get("/b")), r(ok("b"))},
			want:  []string{`GET /a -> gap`, `GET /b -> 200 "b"`}},
		{name: "closed with pending",
			steps: []step{q(get("/a") + get("/b")), r(ok("a") + "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")},
			want:  []string{`GET /a -> 200 "a"`, `GET /b -> closed`},
			stats: func(s StatsSnapshot) bool { return s.ResponsesIncomplete == 1 }},
		{name: "pending overflow", cfg: Config{MaxPending: 2},
			steps: []step{q(get("/1") + get("/2") + get("/3")), r(ok("1") + ok("2") + ok("3"))},
			want:  []string{`GET /1 -> overflow`, `GET /2 -> 200 "2"`, `GET /3 -> 200 "3"`}},
		{name: "bad content-length then resync",
			steps: []step{q(get("/a")), r(ok("a")), q("GET /b HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), r(ok("b")), q(get("/c")), r(ok("c"))},
			want:  []string{`GET /a -> 200 "a"`, `GET /c -> 200 "c"`},
			stats: func(s StatsSnapshot) bool { return s.RequestsMalformed == 1 }},
		// On a connection seen from its start, a response before any request
		// answers a request still to come: the directions were reordered
		// (several socket readers, an NLB). It pairs with that request, and
		// never shifts later pairs.
		{name: "response ahead of its request", steps: []step{r(ok("x")), q(get("/a")), r(ok("a"))},
			want:  []string{`GET /a -> 200 "x"`},
			stats: func(s StatsSnapshot) bool { return s.ResponsesUnpaired == 1 && s.Answered == 1 }},
		{name: "responses ahead of their requests", steps: []step{r(ok("x") + ok("y")), q(get("/a")), q(get("/b")), q(get("/c")), r(ok("c"))},
			want: []string{`GET /a -> 200 "x"`, `GET /b -> 200 "y"`, `GET /c -> 200 "c"`}},
		{name: "responses ahead of their requests beyond MaxPending", cfg: Config{MaxPending: 1},
			steps: []step{r(ok("x") + ok("y")), q(get("/a")), q(get("/b")), q(get("/c")), r(ok("c"))},
			want:  []string{`GET /a -> 200 "x"`, `GET /b -> gap`, `GET /c -> 200 "c"`},
			stats: func(s StatsSnapshot) bool { return s.ResponsesUnpaired == 1 && s.NoRespGap == 1 }},
		{name: "leading CRLF tolerated", steps: []step{q("POST /p HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n" + get("/a")), r(ok("p") + ok("a"))},
			want: []string{`POST /p "x" -> 200 "p"`, `GET /a -> 200 "a"`}},
	}
	for _, tc := range tests {
		for _, chunk := range []int{0, 1, 7} {
			sink, st := play(t, tc.cfg, tc.mid, tc.steps, chunk)
			if got := sink.summaries(); !slices.Equal(got, tc.want) {
				t.Errorf("%s (chunk %d):\n got %q\nwant %q", tc.name, chunk, got, tc.want)
			}
			if tc.stats != nil && !tc.stats(st) {
				t.Errorf("%s (chunk %d): stats %+v", tc.name, chunk, st)
			}
		}
	}
}

func TestTimestamps(t *testing.T) {
	sink, _ := play(t, Config{}, false, []step{
		q("POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\nab"), q("cd" + "GET"), q(" / HTTP/1.1\r\n\r\n"),
		r("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"), r("ok"),
	}, 0)
	want := [][4]uint64{{1, 2, 4, 5}, {2, 3, 0, 0}}
	for i, rc := range sink.recs {
		got := [4]uint64{rc.reqStart, rc.reqEnd, rc.respStart, rc.respEnd}
		if got != want[i] {
			t.Errorf("exchange %d: timestamps %v, want %v", i, got, want[i])
		}
	}
	if len(sink.recs) != 2 {
		t.Fatalf("got %d exchanges", len(sink.recs))
	}
}

func TestHeadAndFields(t *testing.T) {
	raw := "GET /x?y=1 HTTP/1.1\r\nHost: h\r\nX-A:  spaced \t\r\nAuthorization: secret\r\n\r\n"
	var got *rec
	var fields [][2]string
	sink := &funcSink{req: func(ex *Exchange) {
		got = &rec{head: string(ex.Req.Head), method: string(ex.Req.Method)}
		for _, f := range ex.Req.Fields {
			fields = append(fields, [2]string{string(f.Name), string(f.Value)})
		}
		if v := Get(ex.Req.Fields, "x-a"); string(v) != "spaced" {
			t.Errorf("Get x-a = %q", v)
		}
		if Get(ex.Req.Fields, "missing") != nil {
			t.Errorf("Get missing != nil")
		}
	}}
	h := NewFactory(Config{ResponseBodyKeep: KeepWholeBody}, sink, nil, nil)(testKey, 0, false)
	h.Data(Q, []byte(raw), 1)
	if got == nil || got.head != raw || string(got.method) != "GET" {
		t.Fatalf("head %+v", got)
	}
	want := [][2]string{{"Host", "h"}, {"X-A", "spaced"}, {"Authorization", "secret"}}
	if !slices.Equal(fields, want) {
		t.Errorf("fields %q, want %q", fields, want)
	}
}

type funcSink struct{ req, resp func(*Exchange) }

func (f *funcSink) Request(ex *Exchange) {
	if f.req != nil {
		f.req(ex)
	}
}
func (f *funcSink) Response(ex *Exchange) {
	if f.resp != nil {
		f.resp(ex)
	}
}

// A recycled exchange must not keep the previous response.
func TestPoolForgetsResponse(t *testing.T) {
	p := newPool()
	ex := p.get()
	ex.resp.Status = 200
	ex.Resp = &ex.resp
	ex.Reason = RespTooLarge
	ex.Seq = 3
	p.put(ex)
	ex.pool = p
	// Whatever the pool hands out next (this one or a new one) is clean.
	e2 := p.get()
	if e2.Resp != nil || e2.resp.Status != 0 || e2.Reason != RespOK || e2.Seq != 0 {
		t.Fatalf("recycled exchange not clean: Resp=%v status=%d reason=%v seq=%d", e2.Resp, e2.resp.Status, e2.Reason, e2.Seq)
	}
}

func TestPlainRun(t *testing.T) {
	naive := func(b []byte) int {
		n := 0
		for len(b)-n >= 8 {
			for _, c := range b[n : n+8] {
				if c < 0x20 || c == 0x7f {
					return n
				}
			}
			n += 8
		}
		return n
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = byte(0x20 + rng.IntN(0x60))
			if rng.IntN(30) == 0 {
				b[j] = []byte{0, '\t', '\r', '\n', 0x1f, 0x7f, 0x80, 0xff, 0x7e}[rng.IntN(9)]
			}
		}
		if got, want := plainRun(b), naive(b); got != want {
			t.Fatalf("plainRun(%q) = %d, want %d", b, got, want)
		}
	}
}

// By default production's response bodies are measured, not kept: copying
// every response byte is most of the parser's work. With ResponseBodyKeep
// the first bytes are kept for the comparison stage and a longer body is
// hashed whole (FNV-1a 64, as HashAdd), whatever its framing. Request
// bodies are always kept (they are replayed).
func TestResponseBodyKeep(t *testing.T) {
	fnv := func(s string) uint64 { return HashAdd(HashInit, []byte(s)) }
	type want struct {
		body     string
		complete bool
		hash     uint64
	}
	bodies := []string{"body", "abc", "", "until close"}
	tests := []struct {
		name string
		keep int64
		want []want
	}{
		{"off", 0, []want{{}, {}, {}, {}}},
		// A body that fits is kept whole and not hashed; a longer one is
		// hashed whole, whatever its framing and segmentation.
		{"whole", KeepWholeBody, []want{{"body", true, 0}, {"abc", true, 0}, {"", true, 0}, {"until close", true, 0}}},
		{"first 3 bytes", 3, []want{{"bod", false, fnv("body")}, {"abc", true, 0}, {"", true, 0}, {"unt", false, fnv("until close")}}},
		{"first 2 bytes", 2, []want{{"bo", false, fnv("body")}, {"ab", false, fnv("abc")}, {"", true, 0}, {"un", false, fnv("until close")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newRecSink(t)
			h := NewFactory(Config{ResponseBodyKeep: tt.keep}, sink, nil, nil)(testKey, 0, false)
			h.Data(Q, []byte("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"), 1)
			h.Data(R, []byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"), 2)
			h.Data(Q, []byte("GET /c HTTP/1.1\r\nHost: a\r\n\r\n"), 3)
			// chunked in two chunks, split across segments
			h.Data(R, []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"), 4)
			h.Data(R, []byte("1\r\nc\r\n0\r\n\r\n"), 5)
			h.Data(Q, []byte("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n"), 6)
			h.Data(R, []byte("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"), 7)
			h.Data(Q, []byte("GET /n HTTP/1.1\r\nHost: a\r\n\r\n"), 8)
			h.Data(R, []byte("HTTP/1.1 200 OK\r\n\r\nuntil"), 9)
			h.Data(R, []byte(" close"), 10)
			h.Close(flow.CloseFIN, 11)
			if len(sink.recs) != 4 {
				t.Fatalf("%d exchanges, want 4", len(sink.recs))
			}
			for i, w := range tt.want {
				r := sink.recs[i]
				if r.respLen != int64(len(bodies[i])) {
					t.Errorf("exchange %d: BodyLen %d, want %d", i, r.respLen, len(bodies[i]))
				}
				if r.respBody != w.body || r.respComplete != w.complete || r.respHash != w.hash {
					t.Errorf("exchange %d: body %q complete %v hash %x, want %q %v %x", i, r.respBody, r.respComplete, r.respHash, w.body, w.complete, w.hash)
				}
			}
			if sink.recs[0].body != "hello" {
				t.Errorf("request body %q, want hello", sink.recs[0].body)
			}
		})
	}
}
