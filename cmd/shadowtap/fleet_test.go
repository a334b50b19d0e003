package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/verdict"
	"github.com/shadowtap/shadowtap/testenv"
)

// prometheusBinary returns Debian's Prometheus server, skipping the test
// when it is missing unless SHADOWTAP_REQUIRE_ROOT is set.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SHADOWTAP_PROMETHEUS"), "prometheus", "/usr/bin/prometheus"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv(testenv.RequireRootEnv) != "" {
		t.Fatalf("the prometheus server is not installed and %s is set (scripts/deps.sh installs it)", testenv.RequireRootEnv)
	}
	t.Skip("the prometheus server is not installed (apt-get install prometheus, or scripts/deps.sh)")
	return ""
}

// nsProc is a process a test runs in one of the lab's namespaces, killed at
// cleanup, its output logged when the test fails.
type nsProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startInNS(t *testing.T, lab *testenv.Lab, ns, name string, env []string, args ...string) *nsProc {
	t.Helper()
	p := &nsProc{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = lab.NsenterCommand(context.Background(), ns, name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %s:\n%s", name, strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// nsHTTP is an HTTP client that dials inside ns.
func nsHTTP(lab *testenv.Lab, ns string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: lab.DialContext(ns), DisableKeepAlives: true}}
}

func getOK(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, err
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", waitDeadline, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mirrorTo points production's mirror at the given VXLAN devices: the tc
// rules of the lab, with one mirred action per device.
func mirrorTo(t *testing.T, lab *testenv.Lab, devs ...string) {
	t.Helper()
	tc := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("tc", append([]string{"-n", lab.ProdNS}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("tc %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command("tc", "-n", lab.ProdNS, "qdisc", "del", "dev", testenv.ProdIface, "clsact").Run()
	tc("qdisc", "add", "dev", testenv.ProdIface, "clsact")
	for _, dir := range []string{"ingress", "egress"} {
		args := []string{"filter", "add", "dev", testenv.ProdIface, dir, "protocol", "all", "u32", "match", "u32", "0", "0"}
		for _, d := range devs {
			args = append(args, "action", "mirred", "egress", "mirror", "dev", d)
		}
		tc(args...)
	}
}

// addVXLAN adds a second mirror device in prod, like the lab's vx0 but to
// another UDP port, so that another receiver can get its own copy.
func addVXLAN(t *testing.T, lab *testenv.Lab, dev string, port int) {
	t.Helper()
	for _, args := range [][]string{
		{"ip", "-n", lab.ProdNS, "link", "add", dev, "type", "vxlan", "id", strconv.FormatUint(uint64(lab.VNI), 10),
			"local", lab.MirrorSource4.String(), "remote", lab.RecvAddr4.String(), "dstport", strconv.Itoa(port),
			"dev", testenv.ProdMirrorIface, "nolearning", "ttl", "64"},
		{"ip", "-n", lab.ProdNS, "link", "set", dev, "mtu", strconv.Itoa(lab.ReceiverMTU - 50)},
		{"ip", "netns", "exec", lab.ProdNS, "sysctl", "-qw", "net.ipv6.conf." + dev + ".disable_ipv6=1"},
		{"ip", "netns", "exec", lab.ProdNS, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off"},
		{"ip", "-n", lab.ProdNS, "link", "set", dev, "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// TestFleetPrometheus is issue 9's fleet test: two receivers each see part
// of the traffic (their own mirror sessions, as an NLB spreads flows), a
// third sees all of it, and a real Prometheus server scrapes the two. The
// verdict through PromQL (--prometheus), from both receivers (--from twice,
// merged) and from the receiver that saw everything must give the same
// counts and the same decision — and the counts must be what the lab's
// apps are known to do differently.
func TestFleetPrometheus(t *testing.T) {
	promBin := prometheusBinary(t)
	lab := testenv.NewLab(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, a := range []struct {
		ns   string
		kind testenv.AppKind
	}{{lab.ProdNS, testenv.AppProduction}, {lab.ShadowNS, testenv.AppShadow}} {
		app, err := testenv.StartApp(ctx, lab, a.ns, fmt.Sprintf(":%d", prodPort), a.kind)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close() })
	}

	// Receivers A and B each get one mirror session's copies (UDP 4790,
	// 4791), C gets every copy (UDP 4789, the lab's vx0).
	addVXLAN(t, lab, "vxa", 4790)
	addVXLAN(t, lab, "vxb", 4791)
	type receiver struct {
		name, metrics string
		port          int
	}
	recvs := []receiver{{"A", "127.0.0.1:9464", 4790}, {"B", "127.0.0.1:9465", 4791}, {"C", "127.0.0.1:9466", 4789}}
	scrape := nsHTTP(lab, lab.RecvNS)
	for _, r := range recvs {
		startInNS(t, lab, lab.RecvNS, os.Args[0], []string{mainEnv + "=1"}, "run",
			"--capture", "socket", "--listen-addr", lab.RecvAddr4.String(), "--vxlan-port", strconv.Itoa(r.port), "--sockets", "1",
			"--ports", strconv.Itoa(prodPort), "--vni", strconv.FormatUint(uint64(lab.VNI), 10),
			"--source", lab.MirrorSourcePrefix().String(), "--target", shadowTarget(lab, shadowPort),
			"--metrics-addr", r.metrics, "--no-systemd", "--log-interval", "1s")
		waitFor(t, "receiver "+r.name+" ready", func() (bool, string) {
			_, err := getOK(scrape, "http://"+r.metrics+"/readyz")
			return err == nil, fmt.Sprint(err)
		})
	}

	// Prometheus scrapes A and B, every second, like a fleet's.
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: shadowtap
    static_configs:
      - targets: [%q, %q]
`, recvs[0].metrics, recvs[1].metrics)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	const promAddr = "127.0.0.1:9090"
	startInNS(t, lab, lab.RecvNS, promBin, nil, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr, "--log.level=warn")
	waitFor(t, "Prometheus ready", func() (bool, string) {
		_, err := getOK(scrape, "http://"+promAddr+"/-/ready")
		return err == nil, fmt.Sprint(err)
	})

	// The traffic: every lab route, in keep-alive conversations; the first
	// half mirrored to A and C, the second to B and C.
	routes := testenv.AppRoutes()
	const convsPerPhase, perRoute = 6, 4
	sent := map[string]int{}
	prod := testenv.HostPort(lab.ProdAddr4, prodPort)
	for phase, devs := range [][]string{{"vxa", testenv.VXLANIface}, {"vxb", testenv.VXLANIface}} {
		mirrorTo(t, lab, devs...)
		for c := 0; c < convsPerPhase; c++ {
			var reqs []testenv.Request
			for i := 0; i < perRoute; i++ {
				for _, r := range routes {
					reqs = append(reqs, r.Request(phase*1000+c*perRoute+i))
					sent[r.Route]++
				}
			}
			converse(t, lab, prod, reqs...)
		}
		time.Sleep(500 * time.Millisecond) // the last mirrored segments of the phase reach the receivers
	}
	total := 0
	for _, n := range sent {
		total += n
	}
	half := total / 2

	// Every receiver has compared what it saw: A and B half each, C all.
	compared := func(addr string) (uint64, string) {
		b, err := getOK(scrape, "http://"+addr+"/verdict")
		if err != nil {
			return 0, err.Error()
		}
		var d verdict.Document
		if err := json.Unmarshal(b, &d); err != nil {
			return 0, err.Error()
		}
		var unc uint64
		for _, n := range d.Totals.Uncompared {
			unc += n
		}
		return d.Totals.Exchanges, fmt.Sprintf("%d compared, %d uncompared %v", d.Totals.Exchanges, unc, d.Totals.Uncompared)
	}
	for _, r := range []struct {
		recv receiver
		want int
	}{{recvs[0], half}, {recvs[1], half}, {recvs[2], total}} {
		waitFor(t, fmt.Sprintf("receiver %s to compare %d exchanges", r.recv.name, r.want), func() (bool, string) {
			n, s := compared(r.recv.metrics)
			return n >= uint64(r.want), s
		})
		if n, s := compared(r.recv.metrics); n != uint64(r.want) {
			t.Fatalf("receiver %s: %s; want exactly %d: each of A and B sees its half only", r.recv.name, s, r.want)
		}
	}
	// Then a scrape of both that started after they settled.
	settled := time.Now()
	waitFor(t, "Prometheus to scrape both receivers after they settled", func() (bool, string) {
		b, err := getOK(scrape, "http://"+promAddr+"/api/v1/query?query="+
			"min(timestamp(up%7Bjob%3D%22shadowtap%22%7D))%20and%20count(up%7Bjob%3D%22shadowtap%22%7D%3D%3D1)%3D%3D2")
		if err != nil {
			return false, err.Error()
		}
		var r struct {
			Data struct {
				Result []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &r) != nil || len(r.Data.Result) != 1 || len(r.Data.Result[0].Value) != 2 {
			return false, string(b)
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		ts, _ := strconv.ParseFloat(s, 64)
		return ts > float64(settled.UnixMilli())/1000, string(b)
	})

	criteria := []string{"--json", "--max", "cookie=0", "--max", "status=0.5", "--max-latency-ratio", "2", "--latency-slack", "40ms",
		"--min-exchanges", "100", "--min-route-exchanges", "20"}
	verdictOf := func(name string, source ...string) (*gate.Result, int) {
		t.Helper()
		p := startInNS(t, lab, lab.RecvNS, os.Args[0], []string{mainEnv + "=1"}, append(append([]string{"verdict"}, source...), criteria...)...)
		<-p.done
		code := p.cmd.ProcessState.ExitCode()
		var res gate.Result
		out := p.out.String()
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
			t.Fatalf("%s: verdict --json: %v\n%s", name, err, out)
		}
		return &res, code
	}
	fleet, fleetCode := verdictOf("--prometheus", "--prometheus", "http://"+promAddr)
	both, bothCode := verdictOf("--from A --from B", "--from", "http://"+recvs[0].metrics, "--from", "http://"+recvs[1].metrics)
	one, oneCode := verdictOf("--from C", "--from", "http://"+recvs[2].metrics)

	// What the lab's apps are known to do: every exchange of a route with
	// a kind differs by it (a 500 may differ in its body too); no other
	// route differs; the shadow is slower on the latency route.
	for _, v := range []struct {
		name string
		res  *gate.Result
		code int
	}{{"--prometheus", fleet, fleetCode}, {"--from A --from B", both, bothCode}, {"--from C", one, oneCode}} {
		if v.code != 1 || v.res.Verdict != gate.Fail {
			t.Errorf("%s: exit %d, verdict %s; want 1, fail (reason %q)", v.name, v.code, v.res.Verdict, v.res.Reason)
		}
		if v.res.Exchanges != uint64(total) {
			t.Errorf("%s: %d exchanges compared, want the %d replayed", v.name, v.res.Exchanges, total)
		}
		got := countsOf(v.res)
		for _, r := range routes {
			g, n := got[r.Route], uint64(sent[r.Route])
			switch {
			case g.Exchanges != n:
				t.Errorf("%s: %s: %d exchanges, want %d", v.name, r.Route, g.Exchanges, n)
			case r.Kind == "" && g.Differing != 0:
				t.Errorf("%s: %s (%s): %d differing %v, want none", v.name, r.Route, r.Why, g.Differing, g.Kinds)
			case r.Kind != "" && (g.Differing != n || g.Kinds[verdict.Kind(r.Kind)] != n):
				t.Errorf("%s: %s (%s): %d differing %v, want all %d by %s", v.name, r.Route, r.Why, g.Differing, g.Kinds, n, r.Kind)
			}
		}
		if !hasFailure(v.res, gate.CritLatencyRatio, "latency", "GET /search") || !hasFailure(v.res, gate.CritKind, "cookie", "GET /session") {
			t.Errorf("%s: failures %v lack the slower search or the cookie incident", v.name, failureKeys(v.res, true))
		}
	}
	if fleet.Receivers != 2 || both.Receivers != 2 || one.Receivers != 1 {
		t.Errorf("receivers: prometheus %d, --from A B %d, --from C %d; want 2, 2, 1", fleet.Receivers, both.Receivers, one.Receivers)
	}
	// Through Prometheus and from both receivers: the same figures, counts
	// and decision, latency included (below: the same latency histograms
	// too). The receiver that saw everything replayed the same requests at
	// other moments: the same counts and the same decision on every
	// criterion but latency, which it measured itself (on a loaded machine,
	// under -race, a fast route's p99 there can pass --latency-slack while
	// A's and B's do not; the slower search fails everywhere, checked above).
	for _, cmp := range []struct {
		name    string
		a, b    *gate.Result
		latency bool
	}{{"--prometheus vs --from A --from B", fleet, both, true}, {"--from A --from B vs --from C", both, one, false}} {
		if !reflect.DeepEqual(countsOf(cmp.a), countsOf(cmp.b)) || cmp.a.Differing != cmp.b.Differing ||
			!reflect.DeepEqual(cmp.a.Kinds, cmp.b.Kinds) {
			t.Errorf("%s: counts differ:\n%v %d %v\n%v %d %v", cmp.name, countsOf(cmp.a), cmp.a.Differing, cmp.a.Kinds,
				countsOf(cmp.b), cmp.b.Differing, cmp.b.Kinds)
		}
		if a, b := failureKeys(cmp.a, cmp.latency), failureKeys(cmp.b, cmp.latency); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: decisions differ:\n%v\n%v", cmp.name, a, b)
		}
	}
	// The report reads the same fleet.
	page := filepath.Join(dir, "fleet.html")
	rep := startInNS(t, lab, lab.RecvNS, os.Args[0], []string{mainEnv + "=1"}, "report", "--prometheus", "http://"+promAddr, "--html", page)
	<-rep.done
	if code := rep.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("report --prometheus --html: exit %d: %s", code, rep.out.String())
	} else if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "GET /session") || !strings.Contains(string(b), `id="chart-share"`) {
		t.Errorf("report --prometheus --html: %v; the page lacks the routes or the chart", err)
	}
	for i := range fleet.Routes {
		f := fleet.Routes[i]
		for _, b := range both.Routes {
			if b.Route == f.Route && (b.Production != f.Production || b.Shadow != f.Shadow) {
				t.Errorf("%s: p99 through Prometheus %g/%g, from the receivers %g/%g", f.Route, f.Production, f.Shadow, b.Production, b.Shadow)
			}
		}
	}
}

// routeCounts are a route's counts in a verdict.
type routeCounts struct {
	Exchanges, Differing uint64
	Kinds                map[verdict.Kind]uint64
}

func countsOf(r *gate.Result) map[string]routeCounts {
	out := map[string]routeCounts{}
	for _, rt := range r.Routes {
		k := map[verdict.Kind]uint64{}
		for kind, n := range rt.Kinds {
			if n > 0 {
				k[kind] = n
			}
		}
		out[rt.Route] = routeCounts{Exchanges: rt.Exchanges, Differing: rt.Differing, Kinds: k}
	}
	return out
}

// failureKeys lists the failed criteria, with or without latency ratios.
func failureKeys(r *gate.Result, latency bool) []string {
	var out []string
	for _, f := range r.Failures {
		if f.Criterion == gate.CritLatencyRatio && !latency {
			continue
		}
		out = append(out, f.Criterion+" "+f.Kind+" "+f.Route)
	}
	sort.Strings(out)
	return out
}

func hasFailure(r *gate.Result, crit, kind, route string) bool {
	for _, f := range r.Failures {
		if f.Criterion == crit && f.Kind == kind && f.Route == route {
			return true
		}
	}
	return false
}
