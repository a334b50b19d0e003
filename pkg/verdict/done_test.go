package verdict

import (
	"context"
	"testing"
)

// TestDoneOnEveryPath: Exchange.Done is called exactly once whatever becomes
// of the exchange (compared, dropped busy, dropped stopped), since replay's
// body budget is given back only then.
func TestDoneOnEveryPath(t *testing.T) {
	tests := []struct {
		name   string
		queue  int
		closed bool
		n      int
	}{
		{"compared", 8, false, 3},
		{"queue full: busy", 1, false, 3},
		{"after Close: stopped", 8, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, func(c *Config) { c.Queue = tt.queue })
			if tt.closed {
				e.Close(context.Background())
			}
			calls := make([]int, tt.n)
			for i := range tt.n {
				x := ex("GET", "/a", mkResp(200, 0), shadow(mkResp(200, 0)))
				x.Done = func() { calls[i]++ }
				e.Submit(x)
			}
			if err := e.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i, c := range calls {
				if c != 1 {
					t.Errorf("exchange %d: Done called %d times, want once", i, c)
				}
			}
		})
	}
}
