package httpx

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/flow"
)

// decidingSink wants the bodies of the requests whose path starts with
// /keep, records what WantBody saw, and keeps no exchange.
type decidingSink struct {
	t      *testing.T
	wanted []string // "METHOD target conn-set" at each WantBody
	got    []string // at each Request: "target body=N len=N skipped over"
	mark   []uint8  // Exchange.Mark at each Request
}

func (s *decidingSink) WantBody(ex *Exchange) bool {
	if len(ex.Req.Body) != 0 || ex.Req.Fields == nil || Get(ex.Req.Fields, "Host") == nil {
		s.t.Errorf("WantBody: body %d bytes, fields %v: want the head only", len(ex.Req.Body), ex.Req.Fields)
	}
	s.wanted = append(s.wanted, fmt.Sprintf("%s %s %v", ex.Req.Method, ex.Req.Target, ex.Conn == testKey))
	want := strings.HasPrefix(string(ex.Req.Target), "/keep")
	ex.Mark = 1
	if want {
		ex.Mark = 2
	}
	return want
}

func (s *decidingSink) Request(ex *Exchange) {
	q := &ex.Req
	s.got = append(s.got, fmt.Sprintf("%s body=%d len=%d skipped=%v over=%v toolarge=%v",
		q.Target, len(q.Body), q.BodyLen, q.BodySkipped, q.OverBudget, q.TooLarge))
	s.mark = append(s.mark, ex.Mark)
}

func (s *decidingSink) Response(*Exchange) {}

func post(path string, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
}

func chunkedPost(path string, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", path, len(body), body)
}

// TestHeadDecider: the sink decides at the head; unwanted bodies are
// measured and counted, wanted ones kept within the body budget, and the
// budget comes back whole once every exchange is released.
func TestHeadDecider(t *testing.T) {
	k10 := strings.Repeat("a", 10<<10)
	tests := []struct {
		name   string
		budget int64
		in     []string // requests, pipelined on one connection, never answered
		want   []string
		// counters
		skipped, skippedBytes, over uint64
		held                        int64 // budget held while the requests wait unanswered
	}{
		{
			name: "unwanted bodies measured", budget: 1 << 20,
			in: []string{post("/drop/1", k10), chunkedPost("/drop/2", k10), get("/drop/3")},
			want: []string{
				"/drop/1 body=0 len=10240 skipped=true over=false toolarge=false",
				"/drop/2 body=0 len=10240 skipped=true over=false toolarge=false",
				"/drop/3 body=0 len=0 skipped=true over=false toolarge=false",
			},
			skipped: 2, skippedBytes: 20 << 10,
		},
		{
			name: "wanted bodies within the budget", budget: 25 << 10,
			in: []string{post("/keep/1", k10), chunkedPost("/keep/2", k10), post("/keep/3", k10), post("/drop/4", k10), post("/keep/5", "small")},
			want: []string{
				"/keep/1 body=10240 len=10240 skipped=false over=false toolarge=false",
				"/keep/2 body=10240 len=10240 skipped=false over=false toolarge=false",
				"/keep/3 body=0 len=10240 skipped=false over=true toolarge=false",
				"/drop/4 body=0 len=10240 skipped=true over=false toolarge=false",
				"/keep/5 body=5 len=5 skipped=false over=false toolarge=false",
			},
			skipped: 1, skippedBytes: 10 << 10, over: 1, held: 20<<10 + 5,
		},
		{
			name: "too large wins over the budget", budget: 1 << 10,
			in:   []string{post("/keep/big", strings.Repeat("b", 3000))},
			want: []string{"/keep/big body=0 len=3000 skipped=false over=false toolarge=true"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 7, 1000} {
				sink := &decidingSink{t: t}
				var st Stats
				b := NewBudget(tc.budget)
				cfg := Config{BodyBudget: b, MaxBodyBytes: 2048}
				if tc.name != "too large wins over the budget" {
					cfg.MaxBodyBytes = 0
				}
				h := NewFactory(cfg, sink, &st, nil)(testKey, 0, false)
				for _, req := range tc.in {
					data := []byte(req)
					for len(data) > 0 {
						n := len(data)
						if chunk > 0 {
							n = min(n, chunk)
						}
						h.Data(Q, data[:n], 1)
						data = data[n:]
					}
				}
				if got := strings.Join(sink.got, "\n"); got != strings.Join(tc.want, "\n") {
					t.Fatalf("chunk %d: requests\n%s\nwant\n%s", chunk, got, strings.Join(tc.want, "\n"))
				}
				if len(sink.wanted) != len(tc.in) {
					t.Errorf("chunk %d: WantBody called %d times for %d requests", chunk, len(sink.wanted), len(tc.in))
				}
				for i, w := range sink.wanted {
					if !strings.HasSuffix(w, " true") {
						t.Errorf("chunk %d: WantBody %d: %s: Conn not set", chunk, i, w)
					}
					if sink.mark[i] == 0 {
						t.Errorf("chunk %d: request %d: Mark set by WantBody lost by Request", chunk, i)
					}
				}
				if got := b.Held(); got != tc.held {
					t.Errorf("chunk %d: budget held %d while unanswered, want %d", chunk, got, tc.held)
				}
				s := st.Snapshot()
				if s.RequestsBodySkipped != tc.skipped || s.RequestBodySkippedBytes != tc.skippedBytes || s.RequestsOverBudget != tc.over {
					t.Errorf("chunk %d: skipped %d (%d bytes), over budget %d; want %d (%d), %d", chunk,
						s.RequestsBodySkipped, s.RequestBodySkippedBytes, s.RequestsOverBudget, tc.skipped, tc.skippedBytes, tc.over)
				}
				if s.BodyBudgetHeld != uint64(tc.held) {
					t.Errorf("chunk %d: stats budget held %d, want %d", chunk, s.BodyBudgetHeld, tc.held)
				}
				h.Close(flow.CloseFIN, 2)
				if got := b.Held(); got != 0 {
					t.Errorf("chunk %d: budget held %d after every exchange ended, want 0", chunk, got)
				}
				checkAccounting(t, st.Snapshot())
			}
		})
	}
}

// TestBodyBudgetGap: a body cut by a gap gives its share of the budget back.
func TestBodyBudgetGap(t *testing.T) {
	b := NewBudget(1 << 20)
	var st Stats
	h := NewFactory(Config{BodyBudget: b}, &decidingSink{t: t}, &st, nil)(testKey, 0, false)
	h.Data(Q, []byte(post("/keep/1", strings.Repeat("z", 5000))[:300]), 1)
	if b.Held() == 0 {
		t.Fatal("nothing held for a body in progress")
	}
	h.Gap(Q, 2)
	if got := b.Held(); got != 0 {
		t.Errorf("budget held %d after the body in progress was dropped at a gap", got)
	}
	h.Close(flow.CloseFIN, 3)
}

// TestHeadBudget: heads in progress beyond their first 2 KiB are covered
// by the budget; a head that does not fit is dropped (too large, over
// budget) and the budget comes back as heads complete or end.
func TestHeadBudget(t *testing.T) {
	b := NewBudget(4 << 10)
	var st Stats
	sink := newRecSink(t)
	f := NewFactory(Config{BodyBudget: b}, sink, &st, nil)
	partial := "GET /slow HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", 5<<10-40) // 5 KiB, no end
	key := testKey
	var hs []flow.Handler
	for i := range 2 {
		key.Client = netipPort(key, i)
		h := f(key, 0, false)
		hs = append(hs, h)
		h.Data(Q, []byte(partial), 1)
	}
	if got := b.Held(); got != int64(len(partial))-headFree {
		t.Fatalf("budget held %d with one 5 KiB head in progress covered, want %d", got, len(partial)-headFree)
	}
	s := st.Snapshot()
	if s.HeadsOverBudget != 1 || s.RequestsTooLarge != 1 {
		t.Fatalf("heads over budget %d, requests too large %d; want 1 and 1 (the second head did not fit)", s.HeadsOverBudget, s.RequestsTooLarge)
	}
	if len(sink.recs) != 1 || !sink.recs[0].tooLarge {
		t.Fatalf("requests handed over %v, want the second, too large", sink.summaries())
	}
	// The first head completes: its budget comes back.
	hs[0].Data(Q, []byte("\r\n\r\n"), 2)
	if got := b.Held(); got != 0 {
		t.Errorf("budget held %d once the head completed, want 0", got)
	}
	// A head in progress dropped at a gap gives its budget back too.
	hs[0].Data(Q, []byte(partial), 3)
	if b.Held() == 0 {
		t.Fatal("nothing held for the next head in progress")
	}
	hs[0].Gap(Q, 4)
	if got := b.Held(); got != 0 {
		t.Errorf("budget held %d after a gap dropped the head in progress, want 0", got)
	}
	for _, h := range hs {
		h.Close(flow.CloseFIN, 5)
	}
	checkAccounting(t, st.Snapshot())
}

func netipPort(k flow.Key, i int) netip.AddrPort {
	return netip.AddrPortFrom(k.Client.Addr(), k.Client.Port()+uint16(i))
}
