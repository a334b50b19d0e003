package replay

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// seqEx is a GET of path as the seq-th request of a connection from client.
func seqEx(t testing.TB, path, client string, seq uint64) *httpx.Exchange {
	ex := mkEx(t, "GET "+path+" HTTP/1.1\nHost: shop.example.com", "", client)
	ex.Seq = seq
	return ex
}

// TestMultiplierCopies: over many requests the average number of copies is
// F, each request gets floor(F) or ceil(F), and the count depends on the
// request's identity only.
func TestMultiplierCopies(t *testing.T) {
	const n = 20000
	tests := []float64{0.1, 0.5, 1, 1.25, 2, 3.5, 9.99, 10}
	for _, f := range tests {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			m := newMultiplier(f)
			lo, hi := int(math.Floor(f)), int(math.Ceil(f))
			total := 0
			for i := range n {
				ex := seqEx(t, "/", fmt.Sprintf("10.1.%d.%d:%d", i%7, i%251, 1024+i%13), uint64(i/13))
				c := m.copies(identityHash(ex))
				if c != lo && c != hi {
					t.Fatalf("request %d: %d copies, want %d or %d", i, c, lo, hi)
				}
				again := seqEx(t, "/other/path", ex.Conn.Client.String(), ex.Seq)
				if c2 := m.copies(identityHash(again)); c2 != c {
					t.Fatalf("request %d: %d copies, the same identity again %d", i, c, c2)
				}
				total += c
			}
			// The fraction is a Bernoulli draw per request: 4 standard
			// deviations of the mean leave a flake out of reach.
			frac := f - math.Floor(f)
			tol := 4*math.Sqrt(frac*(1-frac)/n) + 1e-9
			if avg := float64(total) / n; math.Abs(avg-f) > tol {
				t.Errorf("average %v copies, want %v ± %v", avg, f, tol)
			}
		})
	}
}

// TestMultiply: every accepted request reaches the shadow floor(F) or
// ceil(F) times, the copies marked 1, 2, …; only the first copy is handed to
// the comparison stage; duplicates are counted apart and the identities
// hold.
func TestMultiply(t *testing.T) {
	tests := []struct {
		name    string
		f       float64
		marker  bool
		perPath []int // copies each request may get
	}{
		{"twice", 2, true, []int{2}},
		{"three and a half", 3.5, true, []int{3, 4}},
		{"no marker", 3, false, []int{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, nil)
			cfg := testConfig(mustURL(t, rec.URL))
			cfg.Multiply, cfg.Marker = tt.f, tt.marker
			fv := &fakeVerdict{}
			cfg.Verdict = fv
			r := start(t, cfg)
			const n = 40
			for i := range n {
				ex := seqEx(t, fmt.Sprintf("/r/%d", i), testClient, uint64(i))
				r.Request(ex)
				prodResp(ex, 200, 0)
				r.Response(ex)
			}
			if err := r.stop(t, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			markers := map[string][]string{}
			for _, c := range rec.got() {
				markers[c.RequestURI] = append(markers[c.RequestURI], c.Header.Get(MarkerHeader))
			}
			var dups uint64
			for i := range n {
				path := fmt.Sprintf("/r/%d", i)
				got := markers[path]
				if !containsInt(tt.perPath, len(got)) {
					t.Errorf("%s reached the shadow %d times, want one of %v", path, len(got), tt.perPath)
				}
				dups += uint64(len(got) - 1)
				seen := map[string]bool{}
				for _, m := range got {
					seen[m] = true
				}
				for k := 1; k <= len(got); k++ {
					want := fmt.Sprint(k)
					if !tt.marker {
						want = ""
					}
					if !seen[want] {
						t.Errorf("%s: markers %q, want one %q", path, got, want)
					}
				}
			}
			s := r.Stats().Snapshot()
			if err := s.Check(); err != nil {
				t.Error(err)
			}
			ts := s.Targets[0]
			if ts.Replayed[Class2xx] != n || ts.Duplicates.Due != dups || ts.Duplicates.Replayed[Class2xx] != dups {
				t.Errorf("replayed %d, duplicates due %d, duplicates replayed %d; want %d, %d, %d",
					ts.Replayed[Class2xx], ts.Duplicates.Due, ts.Duplicates.Replayed[Class2xx], n, dups, dups)
			}
			if len(fv.exchanges()) != n || fv.answers()[ts.Target] != n || ts.Compared != n {
				t.Errorf("%d exchanges compared with %d answers (stats %d), want %d each: duplicates must not be compared",
					len(fv.exchanges()), fv.answers()[ts.Target], ts.Compared, n)
			}
		})
	}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestMultiplyFraction: with F below 1 some requests are not sent at all
// (dropped "multiply") and the rest once; a per-target F overrides the
// global one; the same request gets the same count on every pass.
func TestMultiplyFraction(t *testing.T) {
	half := newRecorder(t, nil)
	more := newRecorder(t, nil)
	moreURL := mustURL(t, more.URL)
	cfg := testConfig(mustURL(t, half.URL), moreURL)
	cfg.Multiply = 0.5
	cfg.TargetMultiply = map[string]float64{moreURL.String(): 2.5}
	cfg.Queue = 4096
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r := start(t, cfg)
	const n = 400
	// Each request twice, as two exchanges with the same identity.
	for pass := range 2 {
		for i := range n {
			ex := seqEx(t, fmt.Sprintf("/r/%d/%d", i, pass), fmt.Sprintf("10.2.%d.%d:5000", i/200, i%200), uint64(i%5))
			r.Request(ex)
			prodResp(ex, 200, 0)
			r.Response(ex)
		}
	}
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.Stats().Snapshot()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	count := func(rec *recorder) map[string]int {
		c := map[string]int{}
		for _, g := range rec.got() {
			c[g.RequestURI]++
		}
		return c
	}
	for _, tc := range []struct {
		rec    *recorder
		ts     TargetSnapshot
		f      float64
		lo, hi int
	}{
		{half, s.Targets[0], 0.5, 0, 1},
		{more, s.Targets[1], 2.5, 2, 3},
	} {
		got := count(tc.rec)
		total := 0
		for i := range n {
			a, b := got[fmt.Sprintf("/r/%d/0", i)], got[fmt.Sprintf("/r/%d/1", i)]
			if a != b {
				t.Errorf("%s: request %d sent %d times, the same request again %d", tc.ts.Target, i, a, b)
			}
			if a != tc.lo && a != tc.hi {
				t.Errorf("%s: request %d sent %d times, want %d or %d", tc.ts.Target, i, a, tc.lo, tc.hi)
			}
			total += a + b
		}
		// 2n requests, Bernoulli(0.5) each for the extra copy: 4 sd.
		if avg := float64(total) / (2 * n); math.Abs(avg-tc.f) > 4*0.5/math.Sqrt(n) {
			t.Errorf("%s: %v copies per request on average, want about %v", tc.ts.Target, avg, tc.f)
		}
		first := tc.ts.ReplayedTotal()
		if first+tc.ts.DroppedMultiply != 2*n || uint64(total) != first+tc.ts.Duplicates.ReplayedTotal() {
			t.Errorf("%s: replayed %d + dropped multiply %d, duplicates %d; the shadow got %d of %d requests",
				tc.ts.Target, first, tc.ts.DroppedMultiply, tc.ts.Duplicates.ReplayedTotal(), total, 2*n)
		}
		if uint64(fv.answers()[tc.ts.Target]) != first {
			t.Errorf("%s: %d answers compared, want the %d first copies", tc.ts.Target, fv.answers()[tc.ts.Target], first)
		}
	}
	if s.Targets[0].DroppedMultiply == 0 || s.Targets[1].DroppedMultiply != 0 {
		t.Errorf("dropped multiply %d and %d, want some and none", s.Targets[0].DroppedMultiply, s.Targets[1].DroppedMultiply)
	}
}

// TestMultiplyQueueFull: when a copy cannot be queued, it and the later
// copies are dropped and counted as duplicates; the first copy's drop is
// the target's.
func TestMultiplyQueueFull(t *testing.T) {
	entered := make(chan struct{}, 100)
	release := make(chan struct{})
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.MaxInflight, cfg.Queue, cfg.Multiply = 1, 3, 3
	r := start(t, cfg)
	r.Request(seqEx(t, "/a", testClient, 0))
	<-entered                                // the worker holds copy 1 of /a; copies 2 and 3 wait
	r.Request(seqEx(t, "/b", testClient, 1)) // copy 1 fits, 2 and 3 do not
	r.Request(seqEx(t, "/c", testClient, 2)) // nothing fits
	s := r.Stats().Snapshot().Targets[0]
	d := s.Duplicates
	if s.DroppedQueue != 1 || s.InFlight != 1 || s.Queued != 1 || d.Due != 6 || d.DroppedQueue != 4 || d.Queued != 2 {
		t.Errorf("dropped %d, in flight %d, queued %d; duplicates due %d, dropped %d, queued %d; want 1, 1, 1; 6, 4, 2",
			s.DroppedQueue, s.InFlight, s.Queued, d.Due, d.DroppedQueue, d.Queued)
	}
	close(release)
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	snap := r.Stats().Snapshot()
	if err := snap.Check(); err != nil {
		t.Error(err)
	}
	if s := snap.Targets[0]; s.Replayed[Class2xx] != 2 || s.Duplicates.Replayed[Class2xx] != 2 {
		t.Errorf("replayed %d, duplicates replayed %d; want 2, 2", s.Replayed[Class2xx], s.Duplicates.Replayed[Class2xx])
	}
}

// TestMultiplyDrainBeforeRun: duplicates still queued when a replayer that
// never ran is drained end as failed "drain", apart from first copies.
func TestMultiplyDrainBeforeRun(t *testing.T) {
	cfg := testConfig(mustURL(t, "http://127.0.0.1:1"))
	cfg.Multiply = 2
	fv := &fakeVerdict{}
	cfg.Verdict = fv
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ex := seqEx(t, "/", testClient, uint64(i))
		r.Request(ex)
		prodResp(ex, 200, 0)
		r.Response(ex)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Drain(ctx); err == nil {
		t.Fatal("Drain before Run with a cancelled context: no error")
	}
	s := r.Stats().Snapshot()
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	if ts := s.Targets[0]; ts.FailedDrain != 3 || ts.Duplicates.FailedDrain != 3 || fv.answers()[ts.Target] != 3 {
		t.Errorf("failed drain %d, duplicates failed drain %d, compared %d; want 3, 3, 3",
			ts.FailedDrain, ts.Duplicates.FailedDrain, fv.answers()[ts.Target])
	}
}

// TestCheckDuplicates: the duplicates' identity is part of Check.
func TestCheckDuplicates(t *testing.T) {
	ok := StatsSnapshot{Requests: 1, Accepted: 1, Targets: []TargetSnapshot{{Target: "t",
		Replayed:   [NumClasses]uint64{Class2xx: 1},
		Duplicates: DuplicateSnapshot{Due: 3, Replayed: [NumClasses]uint64{Class2xx: 1}, DroppedRate: 1, FailedTimeout: 1}}}}
	if err := ok.Check(); err != nil {
		t.Fatalf("consistent snapshot: %v", err)
	}
	bad := ok
	bad.Targets = []TargetSnapshot{ok.Targets[0]}
	bad.Targets[0].Duplicates.Due = 4
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "duplicates 4") {
		t.Fatalf("a duplicate without an outcome: Check = %v", err)
	}
}

// TestMultiplyMetrics: the duplicates' series and the "multiply" drop.
func TestMultiplyMetrics(t *testing.T) {
	rec := newRecorder(t, nil)
	cfg := testConfig(mustURL(t, rec.URL))
	cfg.Multiply = 3
	r := start(t, cfg)
	reg := prometheus.NewPedanticRegistry()
	for _, c := range r.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	r.Request(seqEx(t, "/", testClient, 0))
	if err := r.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				if l.GetName() != "target" {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
			}
			got[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for k, v := range map[string]float64{
		"shadowtap_replay_replayed_total{class=2xx}":              1,
		"shadowtap_replay_duplicates_total{}":                     2,
		"shadowtap_replay_duplicates_replayed_total{class=2xx}":   2,
		"shadowtap_replay_duplicates_dropped_total{reason=queue}": 0,
		"shadowtap_replay_duplicates_failed_total{reason=error}":  0,
		"shadowtap_replay_dropped_total{reason=multiply}":         0,
		"shadowtap_replay_duration_seconds{}":                     3, // duplicates are load too
		"shadowtap_replay_queued{}":                               0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
