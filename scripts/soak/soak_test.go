package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// TestJudge: a series that grows after the warm-up fails the soak; noise
// around a level, and growth during the warm-up, do not.
func TestJudge(t *testing.T) {
	const mib = 1 << 20
	o := options{duration: 30 * time.Minute, interval: time.Minute, warmup: 5 * time.Minute}
	mk := func(rss func(i int) float64, fds func(i int) float64) []sample {
		var out []sample
		for i := 1; i <= 30; i++ {
			out = append(out, sample{At: time.Duration(i) * time.Minute, RSS: rss(i), Heap: 100 * mib, Goroutines: 80, FDs: fds(i)})
		}
		return out
	}
	flatFDs := func(int) float64 { return 90 }
	tests := []struct {
		name    string
		samples []sample
		want    bool
		trend   string // the series named trending upward
	}{
		{"flat with noise", mk(func(i int) float64 { return float64(600+[]int{0, 9, -7, 4, -3}[i%5]) * mib }, flatFDs), true, ""},
		{"growth in the warm-up only", mk(func(i int) float64 { return float64(300+min(i, 5)*60) * mib }, flatFDs), true, ""},
		{"rss leak", mk(func(i int) float64 { return float64(600+4*i) * mib }, flatFDs), false, "RSS"},
		{"fd leak", mk(func(int) float64 { return 600 * mib }, func(i int) float64 { return float64(90 + i) }), false, "open fds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			got := judge(&out, o, tc.samples, mirrorgen.Summary{})
			if got != tc.want {
				t.Fatalf("judge = %v, want %v:\n%s", got, tc.want, out.String())
			}
			if tc.trend != "" && !strings.Contains(out.String(), "| "+tc.trend) {
				t.Fatalf("no row for %s:\n%s", tc.trend, out.String())
			}
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.Contains(line, "trends upward") && (tc.trend == "" || !strings.HasPrefix(line, "| "+tc.trend)) {
					t.Errorf("unexpected trend: %s", line)
				}
			}
		})
	}
	if judge(io.Discard, o, mk(func(int) float64 { return mib }, flatFDs)[:5], mirrorgen.Summary{}) {
		t.Error("judged a run with no sample after the warm-up")
	}
}
