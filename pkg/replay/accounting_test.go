package replay

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// TestAccountingWithEngine (issue 8): with the real comparison stage, every
// request a target answered or failed ends, for that target, in exactly one
// of: an exchange the engine compared, or an uncompared reason (counted by
// replay — untracked, budget, invalid — or by the engine — production's
// response missing, stopped, busy). The baseline is a target of replay's,
// not of the comparison's. The same holds with pipelining on.
func TestAccountingWithEngine(t *testing.T) {
	for _, pipeline := range []int{1, 8} {
		t.Run(fmt.Sprintf("pipeline=%d", pipeline), func(t *testing.T) { testAccountingWithEngine(t, pipeline) })
	}
}

func testAccountingWithEngine(t *testing.T, pipeline int) {
	shadow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(strings.Repeat("b", 3000)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	base := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close()

	ecfg := verdict.DefaultConfig()
	ecfg.Baseline = base.URL
	engine, err := verdict.New(ecfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ectx) }()

	cfg := testConfig(mustURL(t, shadow.URL), mustURL(t, deadURL))
	cfg.Baseline = mustURL(t, base.URL)
	cfg.Verdict = engine
	cfg.CompareBudget = 4000 // one /big body fits, two do not
	cfg.Timeout = time.Second
	cfg.Pipeline = pipeline
	r := start(t, cfg)
	const n = 60
	for i := range n {
		path := fmt.Sprintf("/item/%d", i)
		switch i % 6 {
		case 1:
			path = "/big"
		case 2:
			path = "no-slash" // cannot be rebuilt: uncompared "invalid"
		}
		ex := mkEx(t, "GET "+path+" HTTP/1.1\nHost: shop", "", testClient)
		r.Request(ex)
		switch i % 5 {
		case 0:
			ex.Reason = httpx.RespGap // production's response lost
		case 1:
			prodBody(ex, 200, strings.Repeat("b", 3000), 1<<20)
		default:
			prodBody(ex, 200, `{"ok":true}`, 1<<20, "Content-Type", "application/json")
		}
		r.Response(ex)
	}
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := engine.Close(cctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-engineDone

	s := r.Stats().Snapshot()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tg := range s.Targets {
		t.Logf("target %s: %d batches of %d requests", tg.Target, tg.PipelineBatches, tg.PipelinedRequests)
	}
	compared, uncompared := engineCounts(t, engine)
	reasons := map[string]bool{}
	for _, tg := range s.Targets {
		if tg.Baseline {
			if compared[tg.Target] != 0 || len(uncompared[tg.Target]) != 0 {
				t.Errorf("the baseline counted by the engine: compared %d, uncompared %v", compared[tg.Target], uncompared[tg.Target])
			}
			continue
		}
		var unc uint64
		for reason, v := range uncompared[tg.Target] {
			unc += v
			reasons[reason] = true
		}
		if got, want := compared[tg.Target]+unc, tg.ReplayedTotal()+tg.Failed(); got != want {
			t.Errorf("target %s: engine compared %d + uncompared %v (= %d), replay answered %d + failed %d (= %d)",
				tg.Target, compared[tg.Target], uncompared[tg.Target], got, tg.ReplayedTotal(), tg.Failed(), want)
		}
		if compared[tg.Target] == 0 {
			t.Errorf("target %s: nothing compared", tg.Target)
		}
	}
	for _, want := range []string{"gap", UncomparedBudget, UncomparedInvalid} {
		if !reasons[want] {
			t.Errorf("no exchange uncompared for %q; reasons %v", want, reasons)
		}
	}
}

// engineCounts reads the engine's compared and uncompared counters per
// target from its Prometheus collectors.
func engineCounts(t *testing.T, e *verdict.Engine) (compared map[string]uint64, uncompared map[string]map[string]uint64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range e.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	compared, uncompared = map[string]uint64{}, map[string]map[string]uint64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := uint64(m.GetCounter().GetValue())
			switch mf.GetName() {
			case verdict.MetricCompared:
				compared[labels["target"]] += v
			case verdict.MetricUncompared:
				if uncompared[labels["target"]] == nil {
					uncompared[labels["target"]] = map[string]uint64{}
				}
				uncompared[labels["target"]][labels["reason"]] += v
			}
		}
	}
	return compared, uncompared
}
