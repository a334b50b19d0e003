package flow

import (
	"testing"

	"github.com/shadowtap/shadowtap/pkg/metrics"
)

func TestEveryFlowMetricHasHelp(t *testing.T) {
	undoc, err := metrics.Undocumented(metrics.Stage("flow", func() any { return StatsSnapshot{} }))
	if err != nil {
		t.Fatal(err)
	}
	if len(undoc) > 0 {
		t.Errorf("metrics without a HELP sentence (add them to StatsSnapshot.MetricHelp): %v", undoc)
	}
}
