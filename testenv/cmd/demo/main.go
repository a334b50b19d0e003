// Command demo is `make demo`: it brings the mirror lab up, starts the lab's
// production app, a shadow app that differs from it the way a migration does
// (the cookie incident: Domain dropped from the session cookie; a route
// answering 500; a dropped header; a changed JSON field; a slower route; and
// key-order-only and compression-only changes that must not count) and a
// baseline running production's code, runs shadowtap with XDP on the lab's
// receiver interface, drives users from the client namespace, and ends the
// way a migration team would: `shadowtap report` in the terminal,
// `shadowtap verdict` as a canary pipeline runs it (its failing criteria and
// exit status), and demo-report.html. It cleans up after itself, on Ctrl-C
// too.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
	"github.com/shadowtap/shadowtap/testenv"
)

func main() {
	bin := flag.String("bin", "bin/shadowtap", "shadowtap binary")
	duration := flag.Duration("duration", 20*time.Second, "how long to drive traffic")
	users := flag.Int("users", 8, "concurrent users")
	htmlOut := flag.String("html", "demo-report.html", "where to write the HTML report")
	flag.Parse()
	if err := run(*bin, *duration, *users, *htmlOut); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const (
	appPort      = 8080
	baselinePort = 8081
)

// gate is the canary pipeline's criteria the demo ends with. In the lab
// every route answers within a millisecond, so the shadow's own few
// milliseconds of replay make large ratios: --latency-slack asks for a
// route to be 40ms slower too (the lab's slow route is 80ms slower).
var gate = []string{"--max", "cookie=0", "--max", "status=0.5", "--max-latency-ratio", "2", "--latency-slack", "40ms",
	"--min-exchanges", "200", "--min-route-exchanges", "20"}

func run(bin string, duration time.Duration, users int, htmlOut string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Geteuid() != 0 {
		return errors.New("run as root (sudo make demo): the lab needs network namespaces and XDP")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	work, err := os.MkdirTemp("", "shadowtap-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("bringing the mirror lab up (client, prod, recv, shadow namespaces)")
	lab, err := testenv.Up(ctx, testenv.Options{Name: testenv.UniqueName("stdemo")})
	if err != nil {
		return err
	}
	defer func() {
		step("removing the lab")
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: cleanup:", err)
		}
	}()

	for _, a := range []struct {
		ns   string
		port int
		kind testenv.AppKind
	}{{lab.ProdNS, appPort, testenv.AppProduction}, {lab.ShadowNS, appPort, testenv.AppShadow}, {lab.ShadowNS, baselinePort, testenv.AppBaseline}} {
		app, err := testenv.StartApp(ctx, lab, a.ns, fmt.Sprintf(":%d", a.port), a.kind)
		if err != nil {
			return err
		}
		defer app.Close()
	}
	step(fmt.Sprintf("production app on %s:%d; shadow (new stack) on %s:%d; baseline (old code) on %s:%d",
		lab.ProdAddr4, appPort, lab.ShadowAddr4, appPort, lab.ShadowAddr4, baselinePort))
	fmt.Println("    what the shadow does differently:")
	for _, r := range testenv.AppRoutes() {
		fmt.Printf("      %-20s %s\n", r.Route, r.Why)
	}

	metricsAddr := net.JoinHostPort(lab.RecvShadowAddr4.String(), "9464")
	verdictFile, diffLog := filepath.Join(work, "verdict.json"), filepath.Join(work, "diff.jsonl")
	args := []string{"run",
		"--iface", lab.RecvIface, "--ports", strconv.Itoa(appPort),
		"--vni", strconv.Itoa(int(lab.VNI)), "--source", lab.MirrorSourcePrefix().String(),
		"--target", fmt.Sprintf("http://%s:%d", lab.ShadowAddr4, appPort),
		"--baseline", fmt.Sprintf("http://%s:%d", lab.ShadowAddr4, baselinePort),
		"--diff-log", diffLog, "--verdict-out", verdictFile,
		"--metrics-addr", metricsAddr, "--log-interval", "5s",
		"--pin-root", "/sys/fs/bpf/shadowtap-" + lab.Name, "--no-systemd", "--drain-timeout", "5s",
	}
	step("starting: " + bin + " " + strings.Join(args, " "))
	st := lab.NsenterCommand(context.WithoutCancel(ctx), lab.RecvNS, bin, args...)
	st.Stdout = os.Stdout
	st.Stderr = prefixWriter("shadowtap | ")
	if err := st.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- st.Wait() }()
	stopShadowtap := func() error {
		if st.ProcessState != nil {
			return nil
		}
		_ = st.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(15 * time.Second):
			_ = st.Process.Kill()
			return errors.New("shadowtap did not stop within 15s of SIGTERM")
		}
	}
	defer stopShadowtap()

	scrape := newScraper(lab, metricsAddr)
	if err := waitReady(ctx, scrape, exited); err != nil {
		return err
	}

	step(fmt.Sprintf("driving %d users for %s over every route", users, duration))
	driveCtx, cancelDrive := context.WithTimeout(ctx, duration)
	defer cancelDrive()
	var sent, failed atomic.Int64
	done := make(chan struct{})
	go func() { drive(driveCtx, lab, users, &sent, &failed); close(done) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
progress:
	for {
		select {
		case <-done:
			break progress
		case err := <-exited:
			return fmt.Errorf("shadowtap exited early: %v", err)
		case <-tick.C:
			m, _ := scrape.get()
			fmt.Printf("progress: client sent %d | shadowtap parsed %.0f, replayed %.0f, compared %.0f, differing %.0f\n",
				sent.Load(), m.Sum("shadowtap_http_requests_total"), m.Sum("shadowtap_replay_replayed_total"),
				m.Sum(verdict.MetricCompared), m.Sum(verdict.MetricDiffering))
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	step("traffic done; letting the last replays finish, then stopping shadowtap (it writes --verdict-out)")
	time.Sleep(2 * time.Second)
	if err := stopShadowtap(); err != nil {
		return fmt.Errorf("shadowtap: %w", err)
	}
	fmt.Printf("client: %d requests sent, %d failed\n", sent.Load(), failed.Load())
	if err := checkNotFlagged(verdictFile); err != nil {
		fmt.Println("demo: WARNING:", err)
	}

	step("shadowtap report --from " + verdictFile + " --diff-log " + diffLog)
	if _, err := shadowtap(bin, append([]string{"report", "--from", verdictFile, "--diff-log", diffLog}, gate...)...); err != nil {
		return err
	}
	abs, err := filepath.Abs(htmlOut)
	if err != nil {
		return err
	}
	if code, err := shadowtap(bin, append([]string{"report", "--from", verdictFile, "--diff-log", diffLog, "--html", abs}, gate...)...); err != nil || code != 0 {
		return fmt.Errorf("writing %s: exit %d: %v", abs, code, err)
	}

	step("the canary gate: shadowtap verdict --from " + verdictFile + " " + strings.Join(gate, " "))
	code, err := shadowtap(bin, append([]string{"verdict", "--from", verdictFile}, gate...)...)
	if err != nil {
		return err
	}
	meaning := map[int]string{0: "pass: raise the canary weight", 1: "fail: do not raise the weight", 2: "error", 3: "not enough data yet"}[code]
	fmt.Printf("\nshadowtap verdict exit status: %d (%s)\n", code, meaning)
	fmt.Printf("HTML report: %s (open it in a browser; it loads nothing from the network)\n", abs)
	return nil
}

// drive sends users' keep-alive visits, each a few requests on random routes.
func drive(ctx context.Context, lab *testenv.Lab, users int, sent, failed *atomic.Int64) {
	routes := testenv.AppRoutes()
	prod := testenv.HostPort(lab.ProdAddr4, appPort)
	var wg sync.WaitGroup
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(u), 9))
			for i := 0; ctx.Err() == nil; i++ {
				var reqs []testenv.Request
				for n := 2 + rng.IntN(6); n > 0; n-- {
					reqs = append(reqs, routes[rng.IntN(len(routes))].Request(u*100000+i*10+n))
				}
				c, err := lab.KeepAlive(ctx, lab.ClientNS, prod, reqs...)
				switch {
				case err != nil && ctx.Err() == nil:
					failed.Add(int64(len(reqs)))
				case c != nil:
					sent.Add(int64(len(c.Exchanges)))
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
}

// checkNotFlagged says whether the routes whose shadow answers differ only
// in JSON key order or compression came out without differences, as they
// must.
func checkNotFlagged(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading --verdict-out: %w", err)
	}
	var d verdict.Document
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("reading --verdict-out: %w", err)
	}
	var clean, flagged []string
	for _, r := range testenv.AppRoutes() {
		if r.Kind != "" || r.Latency {
			continue
		}
		for _, dr := range d.Routes {
			if dr.Route != r.Route {
				continue
			}
			if dr.Differing == 0 {
				clean = append(clean, fmt.Sprintf("%s (%d exchanges)", r.Route, dr.Exchanges))
			} else {
				flagged = append(flagged, fmt.Sprintf("%s: %d of %d differ %v", r.Route, dr.Differing, dr.Exchanges, dr.Kinds))
			}
		}
	}
	fmt.Printf("not flagged, as they must not be (key order, compression only): %s\n", strings.Join(clean, ", "))
	if len(flagged) > 0 {
		return fmt.Errorf("flagged although only key order or compression differ: %s", strings.Join(flagged, "; "))
	}
	return nil
}

// shadowtap runs a shadowtap command with the demo's output and returns its
// exit status.
func shadowtap(bin string, args ...string) (int, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", bin, args[0], err)
	}
	return 0, nil
}

func step(s string) { fmt.Printf("==> %s\n", s) }

// prefixWriter copies lines to stderr with a prefix.
func prefixWriter(prefix string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(os.Stderr, prefix+sc.Text())
		}
	}()
	return pw
}

func waitReady(ctx context.Context, s *scraper, exited <-chan error) error {
	deadline := time.After(30 * time.Second)
	for {
		if s.ready() {
			step("shadowtap is attached and ready")
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("shadowtap exited before it was ready: %v", err)
		case <-deadline:
			return errors.New("shadowtap was not ready within 30s")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// scraper reads shadowtap's metrics from inside the receiver namespace.
type scraper struct {
	client *http.Client
	base   string
}

func newScraper(lab *testenv.Lab, addr string) *scraper {
	return &scraper{
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(lab.RecvNS)}},
		base:   "http://" + addr,
	}
}

func (s *scraper) ready() bool {
	resp, err := s.client.Get(s.base + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *scraper) get() (testenv.Metrics, error) {
	resp, err := s.client.Get(s.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return testenv.ParseMetrics(resp.Body)
}
