package pipeline

import (
	"testing"

	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/metrics"
)

// TestEveryStageMetricHasHelp checks that every counter the reflection
// collectors export (shadowtap_flow_*, shadowtap_http_*, shadowtap_observe_*)
// has a sentence in its snapshot's MetricHelp: a counter added without one
// fails here.
func TestEveryStageMetricHasHelp(t *testing.T) {
	for stage, snap := range map[string]any{
		"flow":    flow.StatsSnapshot{},
		"http":    httpx.StatsSnapshot{},
		"observe": ObserveSnapshot{},
	} {
		undoc, err := metrics.Undocumented(metrics.Stage(stage, func() any { return snap }))
		if err != nil {
			t.Fatal(err)
		}
		if len(undoc) > 0 {
			t.Errorf("%s: metrics without a HELP sentence (add them to the snapshot's MetricHelp): %v", stage, undoc)
		}
	}
}
