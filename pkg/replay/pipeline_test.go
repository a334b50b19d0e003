package replay

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// TestWithParser drives the real parser (pooled exchanges) into a Replayer
// whose shadow answers slowly, so the replayer still holds exchanges after
// the parser is done with them: every request must reach the shadow intact,
// and every request and answer be accounted for.
func TestWithParser(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte("hello"))
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.Methods = []string{"GET", "POST"}
	cfg.MaxInflight = 2
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r := start(t, cfg)
	var pst httpx.Stats
	newHandler := httpx.NewFactory(httpx.Config{ResponseBodyKeep: DefaultCompareBodyBytes}, r, &pst, testLogger(t))
	key := flow.Key{VNI: 1, Client: netip.MustParseAddrPort(testClient), Server: netip.MustParseAddrPort(testServer)}

	const conns, perConn = 4, 50
	ts := uint64(1)
	for c := range conns {
		h := newHandler(key, ts, false)
		key.Client = netip.AddrPortFrom(key.Client.Addr(), key.Client.Port()+1)
		for i := range perConn {
			id := fmt.Sprintf("c%d-r%d", c, i)
			var req string
			if i%2 == 0 {
				req = "GET /item/" + id + " HTTP/1.1\r\nHost: shop\r\n\r\n"
			} else {
				body := strings.Repeat(id+";", 10)
				req = fmt.Sprintf("POST /item/%s HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", id, len(body), body)
			}
			h.Data(event.Request, []byte(req), ts)
			ts++
			h.Data(event.Response, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), ts)
			ts++
		}
		h.Close(flow.CloseFIN, ts)
	}
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// The queue (4096) holds every request: all are replayed, none dropped
	// or failed, whatever the shadow's pace.
	if tg := s.Targets[0]; s.Requests != conns*perConn || tg.Replayed[Class2xx] != conns*perConn ||
		tg.Dropped() != 0 || tg.Failed() != 0 {
		t.Fatalf("stats %+v: want all %d requests replayed 2xx", s, conns*perConn)
	}
	got := rec.got()
	if uint64(len(got)) != s.Targets[0].Replayed[Class2xx] {
		t.Fatalf("shadow got %d requests, replayed %d", len(got), s.Targets[0].Replayed[Class2xx])
	}
	seen := map[string]bool{}
	for _, c := range got {
		id := strings.TrimPrefix(c.RequestURI, "/item/")
		if seen[id] {
			t.Errorf("%s replayed twice", id)
		}
		seen[id] = true
		if c.Method == "POST" && string(c.Body) != strings.Repeat(id+";", 10) {
			t.Errorf("%s: body %q corrupted", id, c.Body)
		}
		if c.Host != "shop" {
			t.Errorf("%s: host %q", id, c.Host)
		}
	}
	// Every answer reached the comparison stage with production's response
	// rebuilt by the parser, both bodies kept whole with the same hash.
	xs := fv.exchanges()
	if len(xs) != len(got) || s.Targets[0].Compared != uint64(len(got)) {
		t.Fatalf("%d exchanges compared (stats %d), %d replayed", len(xs), s.Targets[0].Compared, len(got))
	}
	for _, x := range xs {
		p, a := x.Production, x.Answers[0].Response
		if p == nil || a == nil || len(x.Answers) != 1 {
			t.Fatalf("%s: production %+v, answers %+v", x.Path, p, x.Answers)
		}
		if string(p.Body) != "hello" || !p.BodyComplete || p.Header.Get("Content-Length") != "5" {
			t.Errorf("%s: production %+v", x.Path, p)
		}
		if string(a.Body) != "hello" || !a.BodyComplete || a.Status != 200 {
			t.Errorf("%s: shadow %+v", x.Path, a)
		}
		if x.Host != "shop" || !strings.HasPrefix(x.Path, "/item/") {
			t.Errorf("exchange %s %s host %q", x.Method, x.Path, x.Host)
		}
	}
}
