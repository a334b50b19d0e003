package main

import (
	"bufio"
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
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
	if miss := missingMetrics(sc, true); len(miss) != 0 {
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
	if len(q.rates) != 1 || q.step != 2*time.Second || len(q.modes) != 1 {
		t.Errorf("quick: %v %v %v", q.rates, q.step, q.modes)
	}
	d, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.shapes, []string{shapeConn, shapeKeepAlive}) || !slices.Equal(d.variants, []string{variantParse, variantCompare, variantNoCompare}) ||
		d.rates[len(d.rates)-1] != 0 || d.shadow != shadowMinimal {
		t.Errorf("defaults: shapes %v variants %v rates %v shadow %s", d.shapes, d.variants, d.rates, d.shadow)
	}
	for _, bad := range [][]string{{"--modes", "pcap"}, {"--rates", "0"}, {"--rates", "x"}, {"--mix", "nope=1"}, {"extra"},
		{"--shape", "ring"}, {"--variants", "all"}, {"--shadow", "nginx"}} {
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
	// Parse-only: nothing is replayed, every request parsed is enough.
	gen.Refused = 0
	after = counters{outcomes: map[string]float64{"emit": 1010}, parsed: 100}
	s = newStepResult("xdp", 1000, gen, before, after)
	s.Variant = variantParse
	s.judge()
	if !s.Lossless {
		t.Errorf("parse-only step judged lossy: %v", s.Why)
	}
	after.parsed = 99
	s = newStepResult("xdp", 1000, gen, before, after)
	s.Variant = variantParse
	s.judge()
	if s.Lossless {
		t.Error("parse-only step with a request not parsed judged lossless")
	}
}

func TestCPUPerReplayed(t *testing.T) {
	step := func(pkts uint64, cpu time.Duration, replayed float64) stepResult {
		return stepResult{Gen: genResult{Summary: mirrorgen.Summary{Packets: pkts, Elapsed: time.Second}}, CPU: cpu, Replayed: replayed}
	}
	tests := []struct {
		name   string
		e, p   stepResult
		want   float64
		wantOK bool
	}{
		{"same packets", step(1e6, 3*time.Second, 100e3), step(1e6, time.Second, 0), 20, true},
		{"parse-only scaled to the packets", step(1e6, 3*time.Second, 100e3), step(2e6, 2*time.Second, 0), 20, true},
		{"nothing replayed", step(1e6, 3*time.Second, 0), step(1e6, time.Second, 0), 0, false},
	}
	for _, tc := range tests {
		got, ok := cpuPerReplayed(tc.e, tc.p)
		if ok != tc.wantOK || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: %v µs, %v; want %v, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

// TestMinimalShadow drives the minimal shadow as the replayer does: keep-
// alive GETs, a HEAD (no body in the answer), a request with a body, and
// pipelined requests answered in order; unsupported framing closes.
func TestMinimalShadow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveMinimal(ln, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nshadow ok\n"))
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(method string) {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("%s: %d %q close=%v %v", method, resp.StatusCode, b, resp.Close, err)
		}
		if want := string(cannedBody); method == "HEAD" && len(b) != 0 || method != "HEAD" && string(b) != want {
			t.Fatalf("%s: body %q", method, b)
		}
	}
	send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expect("GET")
	send("HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n")
	expect("HEAD")
	send("OPTIONS /c HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello")
	expect("OPTIONS")
	send("GET /d HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\nHEAD /f HTTP/1.1\r\n\r\n")
	expect("GET")
	expect("GET")
	expect("HEAD")
	send("GET /g HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("chunked request: %v, want the connection closed", err)
	}
}

// TestReport: the Markdown report pairs each end-to-end step with the
// parse-only step of the same shape, mode and rate for the CPU per
// replayed request, gives comparison on vs off, and lists overload steps.
func TestReport(t *testing.T) {
	step := func(variant string, rate float64, pkts uint64, cpu time.Duration, replayed float64, shed float64) stepResult {
		s := stepResult{Shape: shapeKeepAlive, Mode: "xdp", Variant: variant, Requested: rate,
			Gen:  genResult{Summary: mirrorgen.Summary{Packets: pkts, RequestsSent: pkts / 5, Elapsed: time.Second}},
			Emit: float64(pkts), Parsed: float64(pkts / 5), CPU: cpu, Replayed: replayed, Admitted: 1,
			DropReasons: map[string]float64{}}
		if shed > 0 {
			s.Dropped, s.DropReasons["overload"], s.Admitted = shed, shed, 0.25
		}
		s.judge()
		return s
	}
	runs := []runResult{
		{Shape: shapeKeepAlive, Mode: "xdp", Variant: variantParse, Steps: []stepResult{
			step(variantParse, 200e3, 200e3, time.Second, 0, 0), step(variantParse, 0, 400e3, 2*time.Second, 0, 0)}},
		{Shape: shapeKeepAlive, Mode: "xdp", Variant: variantCompare, Steps: []stepResult{
			step(variantCompare, 200e3, 200e3, 3*time.Second, 40e3, 0), step(variantCompare, 0, 400e3, 4*time.Second, 20e3, 60e3)}},
		{Shape: shapeKeepAlive, Mode: "xdp", Variant: variantNoCompare, Steps: []stepResult{
			step(variantNoCompare, 200e3, 200e3, 2*time.Second, 40e3, 0)}},
	}
	var b strings.Builder
	printReport(&b, options{shadow: shadowMinimal}, machine{CPUs: 2}, nil, runs)
	out := b.String()
	for _, want := range []string{
		"end to end at 200.0 k: 50.0 µs",               // (3 s - 1 s) / 40 k
		"end to end, --no-compare at 200.0 k: 25.0 µs", // (2 s - 1 s) / 40 k
		"highest lossless rate 200.0 k / 200.0 k pkt/s = 1.00",
		"| xdp | end to end | max | 400.0 k | 0 | 0 | 0 | 80000 / 80000 | 25.0 % | 60000 | 0 | 0.25 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
