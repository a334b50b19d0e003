package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

// ended is the number of requests that reached a final outcome for target:
// answered, dropped or failed.
func ended(t testing.TB, m testenv.Metrics, target string) float64 {
	return m.Get(t, "shadowtap_replay_replayed_total", "target", target) +
		m.Get(t, "shadowtap_replay_dropped_total", "target", target) +
		m.Get(t, "shadowtap_replay_failed_total", "target", target)
}

// waitEnded waits until the parser has produced sent requests, the replay
// stage has taken them, and every accepted one has ended for every target.
// It waits for "at least"; the caller asserts the exact sums.
func waitEnded(p *proc, sent float64, targets ...string) testenv.Metrics {
	p.t.Helper()
	return p.waitMetrics(fmt.Sprintf("%v requests parsed and ended", sent), func(m testenv.Metrics) bool {
		t := p.t
		if m.Get(t, "shadowtap_http_requests_total") < sent || m.Get(t, "shadowtap_replay_requests_total") < sent || !settled(t, m) {
			return false
		}
		for _, tg := range targets {
			if ended(t, m, tg) < m.Get(t, "shadowtap_replay_accepted_total") {
				return false
			}
		}
		return true
	})
}

// checkIdentity asserts the accounting identity for every target: each
// request the parser produced ended in exactly one outcome,
//
//	parsed = replayed + filtered + sampled out + too large + dropped + failed.
func checkIdentity(t *testing.T, m testenv.Metrics, sent float64, targets ...string) {
	t.Helper()
	parsed := m.Get(t, "shadowtap_http_requests_total")
	if parsed != sent {
		t.Errorf("parsed %v requests, the clients sent %v", parsed, sent)
	}
	if got := m.Get(t, "shadowtap_replay_requests_total"); got != parsed {
		t.Errorf("the replay stage took %v requests, the parser produced %v", got, parsed)
	}
	filtered := func(reason string) float64 { return m.Get(t, "shadowtap_replay_filtered_total", "reason", reason) }
	for _, tg := range targets {
		replayed := m.Get(t, "shadowtap_replay_replayed_total", "target", tg)
		dropped := m.Get(t, "shadowtap_replay_dropped_total", "target", tg)
		failed := m.Get(t, "shadowtap_replay_failed_total", "target", tg)
		sum := replayed + filtered("method") + filtered("path") + filtered("sampled_out") + filtered("too_large") + dropped + failed
		if sum != parsed {
			t.Errorf("target %s: parsed %v != replayed %v + filtered by method %v + by path %v + sampled out %v + too large %v + dropped %v + failed %v (= %v)",
				tg, parsed, replayed, filtered("method"), filtered("path"), filtered("sampled_out"), filtered("too_large"), dropped, failed, sum)
		}
	}
}

// TestAccountingIdentity runs a mixed load through every outcome — replayed,
// filtered by method and by path, sampled out, too large, failed (a second
// target that is down) — and checks that the outcomes add up to the
// requests parsed, for each target, and that sampling is consistent per key;
// one request at a time, and pipelined on fewer connections.
func TestAccountingIdentity(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"one at a time", nil},
		{"pipelined", []string{"--pipeline", "8", "--max-inflight", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testAccountingIdentity(t, tc.flags) })
	}
}

func testAccountingIdentity(t *testing.T, flags []string) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	up, down := shadowTarget(lab, shadowPort), shadowTarget(lab, shadowPort+1) // nothing listens on the second
	p := startRun(t, lab, newPinRoot(t), append([]string{"--target", up, "--target", down,
		"--exclude-path", "^/private/", "--max-body-bytes", "1024",
		"--sample", "50", "--sample-key", "header:X-User"}, flags...)...)

	const users, pages = 20, 3
	user := func(u int) http.Header { return http.Header{"X-User": {fmt.Sprintf("u%d", u)}} }
	var convs [][]testenv.Request
	for u := range users {
		var reqs []testenv.Request
		for j := range pages {
			reqs = append(reqs, testenv.Request{Target: fmt.Sprintf("/page/u%d/%d", u, j), Header: user(u)})
		}
		reqs = append(reqs,
			testenv.Request{Method: "POST", Target: fmt.Sprintf("/api/cart/u%d", u), Header: user(u), Body: []byte(`{"item":1}`)},
			// Too large: only counted so when the user is in the sample,
			// since sampling comes first.
			testenv.Request{Target: fmt.Sprintf("/upload/u%d", u), Header: user(u), Body: testenv.Pattern(4096)},
		)
		if u%4 == 0 {
			reqs = append(reqs, testenv.Request{Target: "/private/admin", Header: user(u)})
		}
		convs = append(convs, reqs)
	}
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)
	sent := 0
	var wg sync.WaitGroup
	for _, reqs := range convs {
		sent += len(reqs)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
			defer cancel()
			if _, err := lab.KeepAlive(ctx, lab.ClientNS, prod4, reqs...); err != nil {
				t.Errorf("client: %v", err)
			}
		})
	}
	wg.Wait()

	m := waitEnded(p, float64(sent), up, down)
	checkIdentity(t, m, float64(sent), up, down)
	t.Logf("pipelined: %v requests in %v batches to the healthy target",
		m.Get(t, "shadowtap_replay_pipeline_requests_total", "target", up), m.Get(t, "shadowtap_replay_pipeline_batches_total", "target", up))

	// Every outcome happened, so the identity covered them all.
	for _, reason := range []string{"method", "path", "sampled_out", "too_large"} {
		if m.Get(t, "shadowtap_replay_filtered_total", "reason", reason) == 0 {
			t.Errorf("no request filtered as %s: the load does not exercise it", reason)
		}
	}
	if got := m.Get(t, "shadowtap_replay_filtered_total", "reason", "method"); got != users {
		t.Errorf("filtered by method: %v, want %v (the POSTs)", got, users)
	}
	if got := m.Get(t, "shadowtap_replay_filtered_total", "reason", "path"); got != users/4 {
		t.Errorf("filtered by path: %v, want %v", got, users/4)
	}
	if m.Get(t, "shadowtap_replay_replayed_total", "target", up) == 0 {
		t.Error("nothing replayed to the healthy target")
	}
	if f, a := m.Get(t, "shadowtap_replay_failed_total", "target", down, "reason", "connect"), m.Get(t, "shadowtap_replay_accepted_total"); f != a || a == 0 {
		t.Errorf("the target that is down: %v connect failures, want every accepted request (%v)", f, a)
	}
	if d, f := m.Get(t, "shadowtap_replay_dropped_total", "target", up), m.Get(t, "shadowtap_replay_failed_total", "target", up); d+f != 0 {
		t.Errorf("the healthy target: %v dropped, %v failed; want none", d, f)
	}

	// Consistent sampling: a user's pages all reach the shadow or none do,
	// and the too-large upload is counted for exactly the users in the sample.
	got := map[string]int{}
	for _, ex := range shadow.Exchanges() {
		if strings.HasPrefix(ex.Target, "/page/") {
			got[ex.Header.Get("X-User")]++
		}
	}
	in := 0
	for u := range users {
		switch n := got[fmt.Sprintf("u%d", u)]; n {
		case 0:
		case pages:
			in++
		default:
			t.Errorf("user u%d: %d of %d pages replayed; sampling must keep a user's session whole", u, n, pages)
		}
	}
	if tl := m.Get(t, "shadowtap_replay_filtered_total", "reason", "too_large"); tl != float64(in) {
		t.Errorf("too large: %v, want one per user in the sample (%d)", tl, in)
	}
	if sampled := m.Get(t, "shadowtap_replay_filtered_total", "reason", "sampled_out"); sampled != float64((users-in)*(pages+1)) {
		t.Errorf("sampled out: %v, want %d (pages and uploads of the %d users outside the sample)", sampled, (users-in)*(pages+1), users-in)
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// slowServer answers every request after delay (or when the client gives
// up), counting the requests it received.
func slowServer(t *testing.T, lab *testenv.Lab, port int, delay time.Duration) *atomic.Int64 {
	t.Helper()
	ln, err := lab.Listen(lab.ShadowNS, "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &http.Server{
		ReadHeaderTimeout: 30 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			select {
			case <-time.After(delay):
				fmt.Fprintln(w, "late")
			case <-r.Context().Done():
			}
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &n
}

// TestShadowDownOrSlow checks that a shadow that refuses connections or
// answers after 2 s (beyond --timeout) never slows capture: every mirrored
// request is still parsed and nothing is lost in the ring buffer; the
// requests not answered are counted as dropped or failed; and, after a
// warm-up round, another round of the same load leaves no more goroutines
// and no more memory behind than the one before.
func TestShadowDownOrSlow(t *testing.T) {
	// shadowtap inherits this: with a low GC target the heap in use stays
	// close to what is live, so the leak check below is not lost in the
	// garbage that the default target lets pile up between collections.
	t.Setenv("GOGC", "25")
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)

	tests := []struct {
		name     string
		port     int
		slow     bool
		failWhy  string // the failed_total reason the shadow causes
		dropsToo bool   // requests must be dropped before they are sent
	}{
		{name: "down", port: shadowPort + 1, failWhy: "connect"},
		{name: "slow", port: shadowPort + 2, slow: true, failWhy: "timeout", dropsToo: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var received *atomic.Int64
			if tc.slow {
				received = slowServer(t, lab, tc.port, 2*time.Second)
			}
			target := shadowTarget(lab, tc.port)
			p := startRun(t, lab, newPinRoot(t), "--target", target,
				"--timeout", "500ms", "--max-inflight", "4", "--queue", "8")

			// Rounds of the same load: 16 keep-alive clients of 16
			// requests with 64 KiB responses (multi-segment, so the
			// parser and the flows hold real data). The first three rounds
			// warm up queues, pools and the heap target (the heap in use
			// grows for three rounds, then stays flat when nothing leaks);
			// the last two must leave the same footprint.
			const clients, perClient, rounds = 16, 16, 5
			var goroutines, heap [rounds]float64
			for round := range rounds {
				var wg sync.WaitGroup
				for c := range clients {
					wg.Go(func() {
						var reqs []testenv.Request
						for i := range perClient {
							reqs = append(reqs, testenv.Request{Target: fmt.Sprintf("/size/65536?r=%d&c=%d&i=%d", round, c, i)})
						}
						ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
						defer cancel()
						if _, err := lab.KeepAlive(ctx, lab.ClientNS, prod4, reqs...); err != nil {
							t.Errorf("client %d: %v", c, err)
						}
					})
				}
				wg.Wait()
				sent := float64((round + 1) * clients * perClient)
				m := waitEnded(p, sent, target)
				checkIdentity(t, m, sent, target)
				if lost := m.Get(t, "shadowtap_capture_packets_total", "outcome", "lost_ringbuf"); lost != 0 {
					t.Errorf("round %d: %v events lost in the ring buffer: capture did not keep up", round, lost)
				}
				// The slow shadow does answer, after 2 s: on a loaded machine
				// an answer may beat the 500 ms timer, so only "down" is
				// sure to answer nothing.
				if got := m.Get(t, "shadowtap_replay_replayed_total"); !tc.slow && got != 0 {
					t.Errorf("round %d: %v requests counted as answered by a shadow that is down", round, got)
				}
				if got := m.Get(t, "shadowtap_replay_failed_total", "reason", tc.failWhy); got == 0 {
					t.Errorf("round %d: no request failed with %s", round, tc.failWhy)
				}
				// What the slow shadow cannot take is dropped before it is
				// sent: shed by session as overload, or, before overload
				// control has taken the measure of the shadow, at the full
				// queue (which one depends on the timing).
				if tc.dropsToo && m.Get(t, "shadowtap_replay_dropped_total", "reason", "queue")+m.Get(t, "shadowtap_replay_dropped_total", "reason", "overload") == 0 {
					t.Errorf("round %d: no request dropped at the full queue or shed as overload", round)
				}
				if !m.Has("go_goroutines") || !m.Has("go_memstats_heap_inuse_bytes") {
					t.Fatal("/metrics has no go_goroutines or go_memstats_heap_inuse_bytes")
				}
				goroutines[round] = m.Get(t, "go_goroutines")
				heap[round] = m.Get(t, "go_memstats_heap_inuse_bytes")
				t.Logf("round %d: %v goroutines, heap in use %.1f MiB, RSS %.1f MiB", round, goroutines[round],
					heap[round]/(1<<20), m.Get(t, "process_resident_memory_bytes")/(1<<20))
			}
			// A leak of one goroutine per request would add 256.
			last := rounds - 1
			if goroutines[last] > goroutines[last-1]+8 {
				t.Errorf("goroutines grew from %v to %v between two identical rounds", goroutines[last-1], goroutines[last])
			}
			// A round carries 16 MiB of responses; keeping them would add at
			// least that to the heap in use (not RSS: under -race RSS also
			// holds the detector's shadow memory).
			if heap[last] > heap[last-1]+16<<20 {
				t.Errorf("heap in use grew from %.1f to %.1f MiB between two identical rounds", heap[last-1]/(1<<20), heap[last]/(1<<20))
			}
			if received != nil && received.Load() == 0 {
				t.Error("the slow shadow received nothing: the test does not exercise timeouts")
			}
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
		})
	}
}
