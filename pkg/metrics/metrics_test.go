package metrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shadowtap/shadowtap/pkg/event"
)

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"Requests":       "requests",
		"ReqTooLarge":    "req_too_large",
		"HTTPGaps":       "http_gaps",
		"ConnsTracked":   "conns_tracked",
		"ClosedByRST":    "closed_by_rst",
		"LostRingbuf":    "lost_ringbuf",
		"BytesDelivered": "bytes_delivered",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

type nested struct{ Gaps uint64 }

type snap struct {
	Requests     uint64
	ConnsTracked int64
	Opened       uint64
	Inner        nested
	ByStatus     map[string]uint64
	unexported   uint64
}

func TestStageExposesEveryField(t *testing.T) {
	s := snap{Requests: 7, ConnsTracked: 3, Opened: 5, Inner: nested{Gaps: 2}, ByStatus: map[string]uint64{"2xx": 4}, unexported: 1}
	c := Stage("test", func() any { return s })
	want := `
# HELP shadowtap_test_by_status_total undocumented: test by status (see README, Metrics).
# TYPE shadowtap_test_by_status_total counter
shadowtap_test_by_status_total{key="2xx"} 4
# HELP shadowtap_test_conns_tracked undocumented: test conns tracked (see README, Metrics).
# TYPE shadowtap_test_conns_tracked gauge
shadowtap_test_conns_tracked 3
# HELP shadowtap_test_inner_gaps_total undocumented: test inner gaps (see README, Metrics).
# TYPE shadowtap_test_inner_gaps_total counter
shadowtap_test_inner_gaps_total 2
# HELP shadowtap_test_opened_total undocumented: test opened (see README, Metrics).
# TYPE shadowtap_test_opened_total counter
shadowtap_test_opened_total 5
# HELP shadowtap_test_requests_total Requests seen.
# TYPE shadowtap_test_requests_total counter
shadowtap_test_requests_total 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestCaptureCollector(t *testing.T) {
	var c event.Counters
	c.Outcomes[event.Emit] = 10
	c.Outcomes[event.PassNotVXLAN] = 3
	c.Truncated, c.Bytes = 1, 999
	col := Capture(func() (event.Counters, error) { return c, nil })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"shadowtap_capture_packets_total/emit":           10,
		"shadowtap_capture_packets_total/pass_not_vxlan": 3,
		"shadowtap_capture_packets_total/lost_ringbuf":   0,
		"shadowtap_capture_truncated_total":              1,
		"shadowtap_capture_bytes_total":                  999,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if n := len(got); n != int(event.NumOutcomes)+2 {
		t.Errorf("%d series, want one per outcome plus truncated and bytes (%d)", n, event.NumOutcomes+2)
	}

	bad := Capture(func() (event.Counters, error) { return event.Counters{}, errors.New("map gone") })
	if err := testutil.CollectAndCompare(bad, strings.NewReader("")); err == nil {
		t.Error("a failing read must surface as a collection error")
	}
}

func (snap) MetricHelp() map[string]string {
	return map[string]string{"Requests": "Requests seen.", "Inner": "ignored: a struct"}
}

func TestHelpFromSnapshot(t *testing.T) {
	c := Stage("t", func() any { return snap{Requests: 1, Inner: nested{Gaps: 2}} })
	undoc, err := Undocumented(c)
	if err != nil {
		t.Fatal(err)
	}
	// Requests is documented by snap.MetricHelp; the others are not.
	want := map[string]bool{"shadowtap_t_conns_tracked": true, "shadowtap_t_opened_total": true, "shadowtap_t_inner_gaps_total": true}
	got := map[string]bool{}
	for _, n := range undoc {
		got[n] = true
	}
	for n := range want {
		if !got[n] {
			t.Errorf("%s has a HELP text, want the placeholder (got undocumented %v)", n, undoc)
		}
	}
	if got["shadowtap_t_requests_total"] {
		t.Errorf("shadowtap_t_requests_total: the snapshot's MetricHelp was not used")
	}
}
