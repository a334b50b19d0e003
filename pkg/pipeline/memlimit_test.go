package pipeline

import (
	"testing"

	"github.com/shadowtap/shadowtap/pkg/replay"
)

// TestMemoryBudget: the budget README "Memory budget" states for the
// defaults on a 2-core receiver with one target (about 1 GiB), and how it
// follows the flags that size it.
func TestMemoryBudget(t *testing.T) {
	const mib = 1 << 20
	base := func() Config {
		c := Defaults()
		c.Shards = 2
		c.Targets = []string{"http://127.0.0.1:8080"}
		return c
	}
	tests := []struct {
		name     string
		edit     func(*Config)
		min, max int64
	}{
		{"defaults, 2 shards, one target", func(*Config) {}, 900 * mib, 1100 * mib},
		{"observing only", func(c *Config) { c.Targets = nil }, 300 * mib, 500 * mib},
		{"a baseline adds its response heads", func(c *Config) { c.Baseline = "http://127.0.0.1:8081" }, 964 * mib, 1164 * mib},
		{"socket capture has no ring buffer", func(c *Config) { c.Capture = CaptureSocket }, 884 * mib, 1084 * mib},
		{"smaller budgets", func(c *Config) {
			c.BodyBudget, c.CompareBudget, c.MaxConns, c.MaxInflight = 32*mib, 32*mib, 4096, 16
		}, 300 * mib, 360 * mib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			if got := MemoryBudget(c); got < tc.min || got > tc.max {
				t.Errorf("budget %d MiB, want %d to %d MiB", got/mib, tc.min/mib, tc.max/mib)
			}
		})
	}
	// Pipelining adds each worker's batch and read buffer (README: 9 MiB
	// per target at the default --max-inflight).
	off, on := base(), base()
	on.Pipeline = 8
	if d := MemoryBudget(on) - MemoryBudget(off); d != int64(on.MaxInflight)*replay.PipelineWorkerBytes || d > 9*mib {
		t.Errorf("--pipeline 8 adds %d bytes, want %d workers × %d, at most 9 MiB", d, on.MaxInflight, replay.PipelineWorkerBytes)
	}
}
