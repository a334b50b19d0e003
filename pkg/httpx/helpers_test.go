package httpx

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
)

const (
	Q = event.Request
	R = event.Response
)

// rec is what a sink saw of one exchange, copied out of the pooled Exchange.
type rec struct {
	seq                  uint64
	method, target, head string
	body                 string
	chunked, tooLarge    bool
	reqStart, reqEnd     uint64
	hasResp              bool
	reason               NoResponse
	status               int
	respHead, respBody   string
	respLen              int64
	respTooLarge         bool
	respStart, respEnd   uint64
	respComplete         bool
	respHash             uint64
	done                 bool
}

// summary is a compact form for table tests.
func (r *rec) summary() string {
	s := fmt.Sprintf("%s %s", r.method, r.target)
	if r.tooLarge {
		s += " toolarge"
	} else if r.body != "" {
		s += fmt.Sprintf(" %q", r.body)
	}
	if r.chunked {
		s += " chunked"
	}
	switch {
	case !r.done:
		s += " -> (none)"
	case r.hasResp:
		s += fmt.Sprintf(" -> %d", r.status)
		if r.respTooLarge {
			s += " toolarge"
		} else if r.respBody != "" {
			s += fmt.Sprintf(" %q", r.respBody)
		}
	default:
		s += " -> " + r.reason.String()
	}
	return s
}

// recSink records exchanges and checks the Sink contract.
type recSink struct {
	t    testing.TB
	recs []*rec
	open map[flow.Key]map[uint64]*rec
}

func newRecSink(t testing.TB) *recSink {
	return &recSink{t: t, open: map[flow.Key]map[uint64]*rec{}}
}

func (s *recSink) Request(ex *Exchange) {
	m := s.open[ex.Conn]
	if m == nil {
		m = map[uint64]*rec{}
		s.open[ex.Conn] = m
	}
	if _, dup := m[ex.Seq]; dup {
		s.t.Errorf("Request twice for seq %d", ex.Seq)
	}
	q := &ex.Req
	r := &rec{seq: ex.Seq, method: string(q.Method), target: string(q.Target), head: string(q.Head),
		body: string(q.Body), chunked: q.Chunked, tooLarge: q.TooLarge, reqStart: q.Start, reqEnd: q.End}
	if q.TooLarge && q.Body != nil {
		s.t.Errorf("TooLarge request with a body")
	}
	if ex.Resp != nil {
		s.t.Errorf("Resp set at Request time")
	}
	m[ex.Seq] = r
	s.recs = append(s.recs, r)
}

func (s *recSink) Response(ex *Exchange) {
	r := s.open[ex.Conn][ex.Seq]
	if r == nil {
		s.t.Errorf("Response before Request (seq %d)", ex.Seq)
		return
	}
	if r.done {
		s.t.Errorf("Response twice for seq %d", ex.Seq)
	}
	r.done, r.reason = true, ex.Reason
	if (ex.Resp != nil) != (ex.Reason == RespOK || ex.Reason == RespTooLarge) {
		s.t.Errorf("Resp %v with reason %v", ex.Resp != nil, ex.Reason)
	}
	if p := ex.Resp; p != nil {
		r.hasResp, r.status, r.respHead, r.respBody = true, p.Status, string(p.Head), string(p.Body)
		r.respLen, r.respTooLarge, r.respStart, r.respEnd = p.BodyLen, p.TooLarge, p.Start, p.End
		r.respComplete, r.respHash = p.BodyComplete, p.BodyHash
	}
}

func (s *recSink) summaries() []string {
	out := make([]string, len(s.recs))
	for i, r := range s.recs {
		out[i] = r.summary()
	}
	return out
}

// step is one call on a handler.
type step struct {
	dir  event.Direction
	data string
	gap  bool
}

func q(s string) step            { return step{dir: Q, data: s} }
func r(s string) step            { return step{dir: R, data: s} }
func gap(d event.Direction) step { return step{dir: d, gap: true} }

var testKey = flow.Key{VNI: 7, Client: netip.MustParseAddrPort("10.0.0.1:40000"), Server: netip.MustParseAddrPort("10.0.0.2:80")}

// play feeds steps to one connection, split into pieces of at most chunk
// bytes (0: whole), the timestamp being the step index+1, then closes it.
func play(t testing.TB, cfg Config, mid bool, steps []step, chunk int) (*recSink, StatsSnapshot) {
	sink := newRecSink(t)
	var st Stats
	cfg.ResponseBodyKeep = KeepWholeBody // the tables check production's bodies too
	h := NewFactory(cfg, sink, &st, nil)(testKey, 0, mid)
	for i, s := range steps {
		ts := uint64(i + 1)
		if s.gap {
			h.Gap(s.dir, ts)
			continue
		}
		b := []byte(s.data)
		for len(b) > 0 {
			n := len(b)
			if chunk > 0 && n > chunk {
				n = chunk
			}
			// a fresh copy, overwritten after the call: b is only valid during it
			piece := append([]byte(nil), b[:n]...)
			h.Data(s.dir, piece, ts)
			for j := range piece {
				piece[j] = 'X'
			}
			b = b[n:]
		}
	}
	h.Close(flow.CloseFIN, uint64(len(steps)+1))
	for _, rc := range sink.recs {
		if !rc.done {
			t.Errorf("seq %d never got Response", rc.seq)
		}
	}
	snap := st.Snapshot()
	checkAccounting(t, snap)
	return sink, snap
}

func checkAccounting(t testing.TB, s StatsSnapshot) {
	t.Helper()
	if got := s.Answered + s.NoRespGap + s.NoRespClosed + s.NoRespGaveUp + s.NoRespOverflow; got != s.Requests {
		t.Errorf("requests %d but outcomes %d: %+v", s.Requests, got, s)
	}
	if got := s.Answered + s.ResponsesUnpaired; got != s.Responses {
		t.Errorf("responses %d but answered+unpaired %d: %+v", s.Responses, got, s)
	}
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func join(s ...string) string { return strings.Join(s, "") }
