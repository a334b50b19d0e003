package httpx

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/flow"
)

// genMsg is one generated exchange and what the parser must rebuild of it.
type genMsg struct {
	req, resp      string // wire bytes
	method, target string
	head, body     string // request head through the blank line, de-chunked body
	chunked        bool
	status         int
	respBody       string
	fields         [][2]string
}

const lower = "abcdefghijklmnopqrstuvwxyz0123456789"

func randStr(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = lower[rng.IntN(len(lower))]
	}
	return string(b)
}

// genExchange makes a random valid exchange. Bodies and values use lower
// case only, so no request or status line can appear inside a message.
func genExchange(rng *rand.Rand, allowHead bool) genMsg {
	methods := []string{"GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"}
	if !allowHead {
		methods = methods[:6]
	}
	var g genMsg
	g.method = methods[rng.IntN(len(methods))]
	g.target = "/" + randStr(rng, rng.IntN(30))
	if rng.IntN(3) == 0 {
		g.target += "?q=" + randStr(rng, 5)
	}
	var h strings.Builder
	fmt.Fprintf(&h, "%s %s HTTP/1.1\r\n", g.method, g.target)
	nf := rng.IntN(8)
	g.fields = append(g.fields, [2]string{"Host", "svc.example"})
	for i := 0; i < nf; i++ {
		g.fields = append(g.fields, [2]string{fmt.Sprintf("X-F%d", i), randStr(rng, rng.IntN(40))})
	}
	hasBody := g.method == "POST" || g.method == "PUT" || g.method == "PATCH"
	var wireBody string
	if hasBody {
		g.body = randStr(rng, rng.IntN(3000))
		if rng.IntN(2) == 0 {
			g.chunked = true
			g.fields = append(g.fields, [2]string{"Transfer-Encoding", "chunked"})
			wireBody = chunk(rng, g.body)
		} else {
			g.fields = append(g.fields, [2]string{"Content-Length", fmt.Sprint(len(g.body))})
			wireBody = g.body
		}
	}
	for _, f := range g.fields {
		fmt.Fprintf(&h, "%s: %s\r\n", f[0], f[1])
	}
	h.WriteString("\r\n")
	g.head = h.String()
	g.req = g.head + wireBody

	statuses := []int{200, 200, 201, 404, 204, 304}
	g.status = statuses[rng.IntN(len(statuses))]
	var rs strings.Builder
	fmt.Fprintf(&rs, "HTTP/1.1 %d %s\r\nServer: gen\r\n", g.status, http.StatusText(g.status))
	switch {
	case g.status == 204 || g.status == 304:
		rs.WriteString("\r\n")
	case g.method == "HEAD":
		fmt.Fprintf(&rs, "Content-Length: %d\r\n\r\n", rng.IntN(5000))
	default:
		g.respBody = randStr(rng, rng.IntN(4000))
		if rng.IntN(2) == 0 {
			rs.WriteString("Transfer-Encoding: chunked\r\n\r\n" + chunk(rng, g.respBody))
		} else {
			fmt.Fprintf(&rs, "Content-Length: %d\r\n\r\n%s", len(g.respBody), g.respBody)
		}
	}
	g.resp = rs.String()
	return g
}

func chunk(rng *rand.Rand, body string) string {
	var b strings.Builder
	for len(body) > 0 {
		n := 1 + rng.IntN(len(body))
		ext := ""
		if rng.IntN(3) == 0 {
			ext = ";ext=" + randStr(rng, 3)
		}
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", n, ext, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n")
	if rng.IntN(2) == 0 {
		b.WriteString("X-Trailer: " + randStr(rng, 4) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func genStream(rng *rand.Rand, n int, allowHead bool) (msgs []genMsg, reqs, resps string) {
	var q, r strings.Builder
	for i := 0; i < n; i++ {
		g := genExchange(rng, allowHead)
		msgs = append(msgs, g)
		q.WriteString(g.req)
		r.WriteString(g.resp)
	}
	return msgs, q.String(), r.String()
}

func (g *genMsg) wantReq(r *rec) error {
	if r.method != g.method || r.target != g.target || r.head != g.head || r.body != g.body || r.chunked != g.chunked || r.tooLarge {
		return fmt.Errorf("request %+v, want %s %s chunked=%v body %d bytes", r, g.method, g.target, g.chunked, len(g.body))
	}
	return nil
}

func (g *genMsg) wantResp(r *rec) error {
	if !r.hasResp || r.status != g.status || r.respBody != g.respBody || r.reason != RespOK {
		return fmt.Errorf("response %d %q reason %v, want %d body %d bytes", r.status, r.respBody, r.reason, g.status, len(g.respBody))
	}
	return nil
}

// cuts splits s into random pieces of 1..max bytes.
func cuts(rng *rand.Rand, s string, max int) []string {
	var out []string
	for len(s) > 0 {
		n := 1 + rng.IntN(max)
		if n > len(s) {
			n = len(s)
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// Any segmentation, with responses interleaved once their request is sent,
// gives exactly the generated exchanges.
func TestPropertySplits(t *testing.T) {
	iters := 300
	if testing.Short() {
		iters = 50
	}
	for seed := 0; seed < iters; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		msgs, reqs, resps := genStream(rng, 1+rng.IntN(20), true)
		// ends of each request and response in their streams
		var reqEnd, respEnd []int
		a, b := 0, 0
		for _, g := range msgs {
			a += len(g.req)
			b += len(g.resp)
			reqEnd, respEnd = append(reqEnd, a), append(respEnd, b)
		}
		maxSeg := []int{1, 3, 50, 1448, 9000}[rng.IntN(5)]
		var steps []step
		sentQ, sentR := 0, 0
		for sentQ < len(reqs) || sentR < len(resps) {
			// responses may go as far as the end of the last fully sent request's response
			allowed := 0
			for i, e := range reqEnd {
				if e <= sentQ {
					allowed = respEnd[i]
				}
			}
			if sentR < allowed && (sentQ == len(reqs) || rng.IntN(2) == 0) {
				n := min(1+rng.IntN(maxSeg), allowed-sentR)
				steps = append(steps, r(resps[sentR:sentR+n]))
				sentR += n
				continue
			}
			n := min(1+rng.IntN(maxSeg), len(reqs)-sentQ)
			steps = append(steps, q(reqs[sentQ:sentQ+n]))
			sentQ += n
		}
		sink, st := play(t, Config{}, false, steps, 0)
		if len(sink.recs) != len(msgs) {
			t.Fatalf("seed %d: %d exchanges, want %d (stats %+v)", seed, len(sink.recs), len(msgs), st)
		}
		for i, g := range msgs {
			if err := g.wantReq(sink.recs[i]); err != nil {
				t.Fatalf("seed %d exchange %d: %v", seed, i, err)
			}
			if err := g.wantResp(sink.recs[i]); err != nil {
				t.Fatalf("seed %d exchange %d: %v", seed, i, err)
			}
		}
	}
}

// A hole in the request stream loses exactly the requests it touches.
func TestPropertyRequestHole(t *testing.T) {
	for seed := 0; seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 2))
		msgs, reqs, _ := genStream(rng, 2+rng.IntN(20), true)
		a := rng.IntN(len(reqs))
		b := a + 1 + rng.IntN(min(len(reqs)-a, 2000))
		var steps []step
		for _, s := range cuts(rng, reqs[:a], 700) {
			steps = append(steps, q(s))
		}
		steps = append(steps, gap(Q))
		for _, s := range cuts(rng, reqs[b:], 700) {
			steps = append(steps, q(s))
		}
		sink, _ := play(t, Config{}, false, steps, 0)
		var want []genMsg
		off := 0
		for _, g := range msgs {
			s, e := off, off+len(g.req)
			off = e
			if !(s < b && a < e) {
				want = append(want, g)
			}
		}
		if len(sink.recs) != len(want) {
			t.Fatalf("seed %d hole [%d,%d): %d requests, want %d", seed, a, b, len(sink.recs), len(want))
		}
		for i := range want {
			if err := want[i].wantReq(sink.recs[i]); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
	}
}

// A hole in the response stream: responses before it pair exactly; no
// response after it is paired with a request sent before it.
func TestPropertyResponseHole(t *testing.T) {
	for seed := 0; seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		msgs, reqs, resps := genStream(rng, 2+rng.IntN(20), false)
		a := rng.IntN(len(resps))
		b := a + 1 + rng.IntN(min(len(resps)-a, 2000))
		steps := []step{q(reqs)}
		for _, s := range cuts(rng, resps[:a], 700) {
			steps = append(steps, r(s))
		}
		steps = append(steps, gap(R))
		for _, s := range cuts(rng, resps[b:], 700) {
			steps = append(steps, r(s))
		}
		sink, st := play(t, Config{}, false, steps, 0)
		off, whole := 0, 0
		for i, g := range msgs {
			s, e := off, off+len(g.resp)
			off = e
			if !(s < b && a < e) {
				whole++
			}
			rc := sink.recs[i]
			if e <= a {
				if err := g.wantResp(rc); err != nil {
					t.Fatalf("seed %d exchange %d: %v", seed, i, err)
				}
			} else if rc.reason != RespGap {
				t.Fatalf("seed %d exchange %d after the hole: reason %v", seed, i, rc.reason)
			}
		}
		if int(st.Responses) != whole {
			t.Fatalf("seed %d: %d responses parsed, want %d untouched", seed, st.Responses, whole)
		}
	}
}

// net/http's ReadRequest is the oracle for method, target, fields and body.
func TestOracleNetHTTP(t *testing.T) {
	for seed := 0; seed < 500; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 4))
		g := genExchange(rng, true)
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(g.req)))
		if err != nil {
			t.Fatalf("seed %d: net/http: %v", seed, err)
		}
		wantBody, _ := io.ReadAll(want.Body)
		var got struct {
			method, target string
			body           []byte
			fields         http.Header
		}
		sink := &funcSink{req: func(ex *Exchange) {
			got.method, got.target = string(ex.Req.Method), string(ex.Req.Target)
			got.body = bytes.Clone(ex.Req.Body)
			got.fields = http.Header{}
			for _, f := range ex.Req.Fields {
				got.fields.Add(string(f.Name), string(f.Value))
			}
		}}
		h := NewFactory(Config{ResponseBodyKeep: KeepWholeBody}, sink, nil, nil)(flow.Key{}, 0, false)
		for _, s := range cuts(rng, g.req, 100) {
			h.Data(Q, []byte(s), 1)
		}
		// net/http moves framing fields out of the header map
		for _, k := range []string{"Host", "Transfer-Encoding"} {
			got.fields.Del(k)
			want.Header.Del(k)
		}
		if want.ContentLength >= 0 && len(want.TransferEncoding) == 0 && got.fields.Get("Content-Length") != "" {
			want.Header.Set("Content-Length", fmt.Sprint(want.ContentLength))
		}
		if got.method != want.Method || got.target != want.RequestURI || !bytes.Equal(got.body, wantBody) {
			t.Fatalf("seed %d: got %s %s body %d, net/http %s %s body %d", seed, got.method, got.target, len(got.body), want.Method, want.RequestURI, len(wantBody))
		}
		for k, v := range want.Header {
			if !slices.Equal(got.fields[k], v) {
				t.Fatalf("seed %d: field %s = %q, net/http %q", seed, k, got.fields[k], v)
			}
		}
		if len(got.fields) != len(want.Header) {
			t.Fatalf("seed %d: %d fields, net/http %d", seed, len(got.fields), len(want.Header))
		}
	}
}
