package main

import (
	"strings"
	"testing"
	"time"
)

// TestTrend: a flat soak passes; one resource growing beyond its slack
// fails, named; too few samples cannot pass.
func TestTrend(t *testing.T) {
	flat := func(n int) []soakSample {
		var out []soakSample
		for i := range n {
			out = append(out, soakSample{At: time.Duration(i) * time.Minute, RSS: 100 << 20, Heap: 40 << 20, Goroutines: 150, FDs: 40})
		}
		return out
	}
	tests := []struct {
		name    string
		samples func() []soakSample
		want    string // "" = passes
	}{
		{"flat", func() []soakSample { return flat(9) }, ""},
		{"noise within the slack", func() []soakSample {
			s := flat(9)
			s[8].RSS += 8 << 20
			s[7].Goroutines += 10
			return s
		}, ""},
		{"RSS grows", func() []soakSample {
			s := flat(9)
			for i := range s {
				s[i].RSS += uint64(i) * 8 << 20
			}
			return s
		}, "RSS"},
		{"goroutines leak", func() []soakSample {
			s := flat(9)
			for i := range s {
				s[i].Goroutines += float64(i * 10)
			}
			return s
		}, "goroutines"},
		{"fds leak", func() []soakSample {
			s := flat(9)
			for i := range s {
				s[i].FDs += i * 4
			}
			return s
		}, "file descriptors"},
		{"too few samples", func() []soakSample { return flat(2) }, "too few"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := trend(tc.samples())
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "; ")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("flagged: %s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("got %q, want it to name %q", got, tc.want)
			}
		})
	}
}
