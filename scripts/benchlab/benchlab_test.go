package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

const exposition = `# HELP shadowtap_capture_packets_total Mirror packets by capture outcome.
# TYPE shadowtap_capture_packets_total counter
shadowtap_capture_packets_total{outcome="emit"} 1.5e+06
shadowtap_capture_packets_total{outcome="lost_ringbuf"} 3
shadowtap_capture_packets_total{outcome="pass_not_vxlan"} 2
shadowtap_flow_queue_full_events_total 0
shadowtap_http_requests_total 250000
shadowtap_replay_requests_total 250000
shadowtap_replay_replayed_total{class="2xx",target="http://10.83.0.2:8080"} 249990
shadowtap_replay_replayed_total{class="5xx",target="http://10.83.0.2:8080"} 5
shadowtap_replay_dropped_total{reason="queue_full",target="http://10.83.0.2:8080"} 5
shadowtap_replay_dropped_total{reason="rate_limit",target="http://10.83.0.2:8080"} 0
shadowtap_replay_failed_total{reason="timeout",target="http://10.83.0.2:8080"} 0
shadowtap_replay_queued{target="http://10.83.0.2:8080"} 0
shadowtap_replay_inflight{target="http://10.83.0.2:8080"} 1
`

func TestCountersFromMetrics(t *testing.T) {
	sc, err := testenv.ParseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if miss := missingMetrics(sc); len(miss) != 0 {
		t.Errorf("missing %v", miss)
	}
	c := countersFrom(sc)
	if c.seen() != 1.5e6+5 || c.lost() != 3 || c.pending != 1 || c.ended() != 250000 {
		t.Errorf("counters: seen %v lost %v pending %v ended %v", c.seen(), c.lost(), c.pending, c.ended())
	}
}

// TestProcReadings reads this process's and the machine's figures the way
// the benchmark reads shadowtap's: after burning some CPU they must be
// positive and consistent.
func TestProcReadings(t *testing.T) {
	before, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	sys0, err := readSysCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the reading moves by 50 ms (a busy machine gives this
	// process less of each wall second, so wait on the reading, not a timer).
	var after time.Duration
	x := 0
	for deadline := time.Now().Add(30 * time.Second); ; {
		for range 1 << 20 {
			x++
		}
		if after, err = selfCPU(); err != nil {
			t.Fatal(err)
		}
		if after-before >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time read %v after 30 s of busy loop (x=%d)", after-before, x)
		}
	}
	sys1, _ := readSysCPU()
	if d := sys1.sub(sys0); d.Busy <= 0 || d.Total < d.Busy {
		t.Errorf("machine CPU over the loop: %+v", d)
	}
	rss, err := procPeakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("peak RSS %d, %v: want at least 1 MiB", rss, err)
	}
	if m := describeMachine(context.Background()); m.CPUModel == "" || m.CPUs < 1 {
		t.Errorf("machine %+v", m)
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"--rates", "25k,1.5M,300", "--modes", "socket"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.rates) != 3 || o.rates[0] != 25e3 || o.rates[1] != 1.5e6 || o.rates[2] != 300 || o.modes[0] != "socket" {
		t.Errorf("rates %v modes %v", o.rates, o.modes)
	}
	q, err := parseFlags([]string{"--quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.rates) != 1 || q.step != 2*time.Second || len(q.modes) != 2 {
		t.Errorf("quick: %v %v %v", q.rates, q.step, q.modes)
	}
	for _, bad := range [][]string{{"--modes", "pcap"}, {"--rates", "0"}, {"--rates", "x"}, {"--mix", "nope=1"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestJudge(t *testing.T) {
	gen := genResult{Summary: mirrorgen.Summary{Packets: 1000, RequestsSent: 100, Elapsed: time.Second}}
	before := counters{outcomes: map[string]float64{"emit": 10}}
	after := counters{outcomes: map[string]float64{"emit": 1010}, parsed: 101, replayReqs: 101, replayed: 101}
	s := newStepResult("xdp", 1000, gen, before, after)
	if !s.Lossless {
		t.Fatalf("lossless step judged lossy: %v", s.Why)
	}
	after.outcomes["lost_ringbuf"] = 1
	after.replayed, after.dropped = 100, 1
	s = newStepResult("xdp", 1000, gen, before, after)
	if s.Lossless || len(s.Why) != 3 {
		t.Errorf("lossy step: lossless=%v why=%q", s.Lossless, s.Why)
	}
	gen.Refused = 5
	after = counters{outcomes: map[string]float64{"emit": 1005}, parsed: 100, replayed: 100}
	s = newStepResult("socket", 1000, gen, before, after)
	if s.Lossless {
		t.Error("refused frames judged lossless")
	}
}
