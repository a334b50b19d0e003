package replay

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeAdmission is an admission whose clock, queue fill and answered
// requests the test sets: one target.
type fakeAdmission struct {
	*admission
	clock  time.Time
	fill   float64
	served uint64
}

func newFakeAdmission() *fakeAdmission {
	f := &fakeAdmission{clock: time.Unix(1_700_000_000, 0)}
	f.admission = newAdmission(func() time.Time { return f.clock }, func(out []targetLoad) []targetLoad {
		return append(out, targetLoad{fill: f.fill, served: f.served})
	})
	return f
}

// interval is one control interval: offered requests arrive (each of a
// new session), the target answers served, and the queue is at fill when
// the controller runs.
func (f *fakeAdmission) interval(offered int, served uint64, fill float64) {
	for i := range offered {
		f.admit(uint64(f.clock.UnixNano())+uint64(i)*0x9e3779b97f4a7c15, sampleScale)
	}
	f.end(served, fill)
}

// end ends an interval: the target answered served more, the queue is at
// fill, the controller runs.
func (f *fakeAdmission) end(served uint64, fill float64) {
	f.served += served
	f.fill = fill
	f.clock = f.clock.Add(overloadInterval)
	f.tick(f.clock.UnixNano())
}

// TestAdmissionControl drives the controller interval by interval and
// checks the admitted fraction: 1 until the queue passes the high-water
// mark; then what the target answers over what arrives, less when the
// queue is above its target fill; growing back (boundedly) when the target
// keeps up, until control ends.
func TestAdmissionControl(t *testing.T) {
	type iv struct {
		n, offered int
		served     uint64
		fill       float64
	}
	tests := []struct {
		name    string
		steps   []iv
		want    float64
		tol     float64
		control bool // still controlling at the end
	}{
		{"no overload below the high-water mark", []iv{{20, 100, 40, 0.45}}, 1, 0, false},
		{"answer rate over arrival rate at the target fill", []iv{{1, 100, 40, 0.6}, {20, 100, 40, overloadTarget}}, 0.4, 0.01, true},
		{"less while the queue is full", []iv{{1, 100, 40, 0.6}, {20, 100, 40, 1}}, 0.4 * (1 + overloadGain*(overloadTarget-1)), 0.01, true},
		{"never less while the queue is short", []iv{{1, 100, 40, 0.6}, {20, 100, 40, 0}}, 1 + overloadSmooth*(0.4*(1+overloadGain*(overloadTarget-0.6))-1), 0.001, true},
		{"at once when the queue is about to overflow", []iv{{1, 100, 40, 0.6}, {1, 100, 40, 0.9}}, 0.4 * (1 + overloadGain*(overloadTarget-0.9)), 0.001, true},
		{"floor when nothing is answered", []iv{{1, 100, 0, 0.6}, {100, 100, 0, 1}}, overloadMin, 1e-9, true},
		{"back to 1 and off once the shadow keeps up", []iv{{1, 100, 10, 0.9}, {3, 100, 10, 0.9}, {30, 100, 100, 0}}, 1, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAdmission()
			f.interval(100, 0, 0) // a first probe
			for _, s := range tc.steps {
				for range s.n {
					f.interval(s.offered, s.served, s.fill)
				}
			}
			if got := f.ratio(); math.Abs(got-tc.want) > tc.tol {
				t.Errorf("ratio %v, want %v ± %v", got, tc.want, tc.tol)
			}
			if f.controlling != tc.control {
				t.Errorf("controlling %v, want %v", f.controlling, tc.control)
			}
		})
	}
}

// TestAdmissionGrowsSmoothly: after a collapse, the fraction grows by at
// most overloadMaxGrow per interval, and never moves more than once per
// interval however many requests arrive.
func TestAdmissionGrowsSmoothly(t *testing.T) {
	f := newFakeAdmission()
	f.interval(100, 0, 0)
	f.interval(100, 0, 1)
	for range 10 {
		f.interval(100, 0, 1)
	}
	prev := f.ratio()
	for range 100 {
		f.interval(1000, 1000, 0)
		r := f.ratio()
		if r > prev*overloadMaxGrow+1e-12 || r < prev {
			t.Fatalf("ratio %v after %v", r, prev)
		}
		prev = r
	}
	if prev != 1 {
		t.Errorf("ratio %v after 100 intervals of a shadow keeping up, want 1", prev)
	}
}

func keyHash(k int) uint64 { return hashKey(fmt.Appendf(nil, "10.0.%d.%d", k>>8, k&255)) }

// overloaded returns an admission under control at about ratio.
func overloaded(ratio float64) *fakeAdmission {
	f := newFakeAdmission()
	f.interval(100, 0, 0)
	f.interval(1000, 0, 0.6)
	for range 30 {
		f.interval(1000, uint64(ratio*1000), overloadTarget)
	}
	return f
}

// TestAdmissionShedsWholeSessions: under control the admitted share of keys
// follows the fraction, within the sampled share; a session under way keeps
// its decision when the fraction moves by a few percent either way, so
// none is cut in two.
func TestAdmissionShedsWholeSessions(t *testing.T) {
	const keys = 5000
	tests := []struct {
		name   string
		sample float64 // of the key space
		ratio  float64
	}{
		{"full sample, 0.6 admitted", 1, 0.6},
		{"full sample, 0.1 admitted", 1, 0.1},
		{"half sampled, 0.5 admitted", 0.5, 0.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := overloaded(tc.ratio)
			ratio := f.ratio()
			if math.Abs(ratio-tc.ratio) > 0.02 {
				t.Fatalf("ratio %v, want %v", ratio, tc.ratio)
			}
			threshold := uint64(tc.sample * sampleScale)
			first := map[int]bool{}
			n := 0
			for k := range keys {
				in := f.admit(keyHash(k), threshold)
				if in && !sampledIn(fmt.Appendf(nil, "10.0.%d.%d", k>>8, k&255), threshold) {
					t.Fatalf("key %d admitted but not sampled", k)
				}
				first[k] = in
				if in {
					n++
				}
			}
			want := ratio * tc.sample * keys
			if math.Abs(float64(n)-want) > 4*math.Sqrt(want)+10 {
				t.Errorf("admitted %d of %d keys, want about %.0f (ratio %.3f × sample %.2f)", n, keys, want, ratio, tc.sample)
			}
			// These sessions are the traffic: 5000 requests an interval, and
			// the target answers the fraction's share ± 5 %.
			f.end(uint64(ratio*keys), overloadTarget)
			for _, served := range []float64{0.95, 1.05, 1.05, 0.95, 1} {
				for k := range keys {
					if got := f.admit(keyHash(k), threshold); got != first[k] {
						t.Fatalf("ratio %.3f: session %d admitted %v, its first request %v", f.ratio(), k, got, first[k])
					}
				}
				f.end(uint64(served*ratio*keys), overloadTarget)
			}
			if r := f.ratio(); math.Abs(r-ratio) > 0.05*ratio {
				t.Errorf("ratio moved from %.3f to %.3f", ratio, r)
			}
		})
	}
}

// TestAdmissionSessionLifetime: a shed session stays shed while it is
// active even when the fraction grows past it; once idle it is decided at
// the current fraction. An admitted session is shed once the fraction
// falls more than sessionBand below its position.
func TestAdmissionSessionLifetime(t *testing.T) {
	f := overloaded(0.4)
	r := f.ratio()
	var shed, kept uint64
	for k := 0; shed == 0 || kept == 0; k++ {
		h := keyHash(k)
		pos := float64(h%sampleScale) / sampleScale
		switch {
		case shed == 0 && pos > r*1.02 && pos < r*1.2:
			shed = h
		case kept == 0 && pos > r*0.8 && pos < r*0.95:
			kept = h
		}
	}
	if f.admit(shed, sampleScale) || !f.admit(kept, sampleScale) {
		t.Fatal("first decisions do not follow the fraction")
	}
	// The shadow keeps up again: the fraction grows past the shed session.
	for range 5 {
		f.interval(100, 100, 0)
		f.admit(shed, sampleScale)
		f.admit(kept, sampleScale)
	}
	if f.ratio() < r*1.3 {
		t.Fatalf("ratio %v did not grow from %v", f.ratio(), r)
	}
	if f.admit(shed, sampleScale) {
		t.Error("a shed session under way was admitted from its middle")
	}
	// Still active, a request a second: shed until shedHold has passed
	// since its decision, then decided anew at the fraction.
	for i := range int(shedHold/time.Second) + 1 {
		f.clock = f.clock.Add(time.Second)
		f.admit(kept, sampleScale)
		if got, want := f.admit(shed, sampleScale), i+1 >= int(shedHold/time.Second); got != want {
			t.Fatalf("%d s after its decision, a shed session under way admitted %v, want %v (fraction %.3f)", i+1, got, want, f.ratio())
		}
	}
	// Idle, a session is decided anew at once.
	f.clock = f.clock.Add(sessionIdle)
	if !f.admit(shed, sampleScale) {
		t.Errorf("an idle session at %.3f was not decided anew at the current fraction %.3f", float64(shed%sampleScale)/sampleScale, f.ratio())
	}
	// The fraction falls far below the kept session: it is shed.
	for range 10 {
		f.interval(100, 10, 1)
		f.admit(kept, sampleScale)
	}
	if f.admit(kept, sampleScale) {
		t.Errorf("ratio %.3f: a session at %.3f still admitted", f.ratio(), float64(kept%sampleScale)/sampleScale)
	}
}

// TestReplayerShedsOnOverload: a shadow that answers 400 requests/s (the
// test takes jobs off the queues at that pace and counts them replayed)
// while 1000/s arrive from 500 users (X-Forwarded-For). Past the
// high-water mark whole sessions are shed before queueing, counted dropped
// "overload" on every target; the queues never overflow; the gauge settles
// near the shadow's share; the accounting adds up; and once control has
// converged (and before shed users are decided anew, shedHold after the
// first decisions), every user is replayed whole or shed whole.
func TestReplayerShedsOnOverload(t *testing.T) {
	rec := newRecorder(t, nil)
	cfg := testConfig(mustURL(t, rec.URL), mustURL(t, rec.URL+"/second"))
	cfg.Queue = 1000
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return clock }
	type outcome struct{ in, out int }
	sessions := map[int]*outcome{} // from 2 s after the first request shed on
	var shedding time.Time
	const users = 500
	for i := range 20000 { // 20 s
		clock = clock.Add(time.Millisecond)
		if i%5 < 2 { // 400/s answered
			for _, tg := range r.targets {
				select {
				case jb := <-tg.queue:
					tg.stats.replayed[Class2xx].Add(1)
					jb.ex.Release()
				default:
				}
			}
		}
		user := (i * 7919) % users
		before := r.Stats().Snapshot().Targets[0].DroppedOverload
		r.Request(mkEx(t, fmt.Sprintf("GET /p/%d HTTP/1.1\nHost: h\nX-Forwarded-For: 203.0.%d.%d", i, user>>8, user&255), "", testClient))
		out := r.Stats().Snapshot().Targets[0].DroppedOverload > before
		if out && shedding.IsZero() {
			shedding = clock
		}
		if shedding.IsZero() || clock.Sub(shedding) < 2*time.Second || clock.Sub(shedding) >= shedHold {
			continue // control converging, or shed users decided anew
		}
		o := sessions[user]
		if o == nil {
			o = &outcome{}
			sessions[user] = o
		}
		if out {
			o.out++
		} else {
			o.in++
		}
	}
	s := r.Stats().Snapshot()
	for _, tg := range s.Targets {
		if tg.DroppedOverload == 0 || tg.DroppedQueue != 0 {
			t.Errorf("target %s: dropped overload %d, queue %d; want some shed and no queue overflow", tg.Target, tg.DroppedOverload, tg.DroppedQueue)
		}
		if tg.DroppedOverload != s.Targets[0].DroppedOverload {
			t.Errorf("targets shed different requests: %d vs %d", tg.DroppedOverload, s.Targets[0].DroppedOverload)
		}
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	g := testutil.ToFloat64(newAdmittedCollector(r.adm))
	if g < 0.3 || g > 0.6 {
		t.Errorf("admitted ratio gauge %v, want near 0.4 (what the shadow answers)", g)
	}
	var in, out, cut int
	for _, o := range sessions {
		switch {
		case o.out == 0:
			in++
		case o.in == 0:
			out++
		default:
			cut++
		}
	}
	t.Logf("ratio %.3f; %d users replayed whole, %d shed whole, %d cut; replayed %d, shed %d", g, in, out, cut, s.Targets[0].ReplayedTotal(), s.Targets[0].DroppedOverload)
	if in == 0 || out == 0 || cut > 0 {
		t.Errorf("%d users replayed whole, %d shed whole, %d cut: want both kinds and none cut", in, out, cut)
	}
}

// TestAdmissionCapturePressure: when capture falls behind, the fraction
// falls each interval whatever the shadow could take, does not grow while
// capture still lags, and grows again once it has caught up.
func TestAdmissionCapturePressure(t *testing.T) {
	tests := []struct {
		name     string
		pressure []float64 // one per interval; the shadow answers all it gets
		want     float64
	}{
		{"no pressure", []float64{0, 0.1, pressureLow}, 1},
		{"high pressure decreases each interval", []float64{1, 0.7, pressureHigh}, pressureDecrease * pressureDecrease * pressureDecrease},
		{"moderate pressure holds", []float64{1, 0.3, 0.4, 0.3}, pressureDecrease},
		{"grows once caught up", []float64{1, 0, 0}, pressureDecrease * (1 + overloadSmooth*(overloadMaxGrow-1)) * (1 + overloadSmooth*(overloadMaxGrow-1))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAdmission()
			var press float64
			pf := func() float64 { return press }
			f.pressure.Store(&pf)
			f.interval(100, 100, 0)
			for _, p := range tc.pressure {
				press = p
				admitted := 0
				for i := range 100 {
					if f.admit(uint64(i)*0x9e3779b97f4a7c15+uint64(f.clock.UnixNano()), sampleScale) {
						admitted++
					}
				}
				f.end(uint64(admitted), 0)
			}
			if got := f.ratio(); math.Abs(got-tc.want) > 0.01 {
				t.Errorf("ratio %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAdmissionForgetsAfterControl: once control has ended (the shadow
// keeps up, the fraction is back to 1), sessions are remembered for
// sessionIdle more, so the short ones end whole; then every request is
// admitted again, even of a session shed before that never paused.
func TestAdmissionForgetsAfterControl(t *testing.T) {
	f := overloaded(0.3)
	var shed uint64
	for k := 0; shed == 0; k++ {
		if h := keyHash(k); float64(h%sampleScale)/sampleScale > 0.6 {
			shed = h
		}
	}
	if f.admit(shed, sampleScale) {
		t.Fatal("a key above the fraction was admitted")
	}
	var ended time.Time
	for i := 0; ended.IsZero() || f.clock.Sub(ended) < sessionIdle+overloadInterval; i++ {
		if i > 200 {
			t.Fatalf("control did not end: ratio %v", f.ratio())
		}
		got := f.admit(shed, sampleScale)
		if !ended.IsZero() && f.clock.Sub(ended) < sessionIdle && got {
			t.Fatalf("%v after control ended, a session shed under way was admitted", f.clock.Sub(ended))
		}
		f.interval(99, 100, 0) // the shadow answers all
		if ended.IsZero() && !f.controlling {
			ended = f.clock
		}
	}
	if !f.admit(shed, sampleScale) {
		t.Errorf("%v after control ended, a session is still shed", f.clock.Sub(ended))
	}
}
