// Command demo is `make demo`: it brings the mirror lab up, starts a small
// production app and a shadow app that differs from it on purpose, runs
// shadowtap with XDP on the lab's receiver interface, drives a browsing mix
// from the client namespace, shows live progress, and ends with a summary:
// what shadowtap saw, replayed, filtered and dropped, and the shadow's status
// codes next to production's. It cleans up after itself, on Ctrl-C too.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

func main() {
	bin := flag.String("bin", "bin/shadowtap", "shadowtap binary")
	duration := flag.Duration("duration", 20*time.Second, "how long to drive traffic")
	users := flag.Int("users", 8, "concurrent browsing users")
	flag.Parse()
	if err := run(*bin, *duration, *users); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const appPort = 8080

func run(bin string, duration time.Duration, users int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Geteuid() != 0 {
		return errors.New("run as root (sudo make demo): the lab needs network namespaces and XDP")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}

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

	prodStats, shadowStats := newStatusLog(), newStatusLog()
	for _, s := range []struct {
		ns    string
		log   *statusLog
		isNew bool
	}{{lab.ProdNS, prodStats, false}, {lab.ShadowNS, shadowStats, true}} {
		ln, err := lab.Listen(s.ns, "tcp", fmt.Sprintf(":%d", appPort))
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: s.log.wrap(app(s.isNew)), ErrorLog: nil}
		go srv.Serve(ln)
		defer srv.Close()
	}
	step(fmt.Sprintf("production app on %s:%d, shadow app on %s:%d", lab.ProdAddr4, appPort, lab.ShadowAddr4, appPort))

	metricsAddr := net.JoinHostPort(lab.RecvShadowAddr4.String(), "9464")
	args := []string{"run",
		"--iface", lab.RecvIface, "--ports", strconv.Itoa(appPort),
		"--vni", strconv.Itoa(int(lab.VNI)), "--source", lab.MirrorSourcePrefix().String(),
		"--target", fmt.Sprintf("http://%s:%d", lab.ShadowAddr4, appPort),
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

	step(fmt.Sprintf("driving %d users for %s (pages, assets, API calls, search, logins, a CSV report)", users, duration))
	driveCtx, cancelDrive := context.WithTimeout(ctx, duration)
	defer cancelDrive()
	client := newBrowser(lab, users)
	done := make(chan struct{})
	go func() { client.run(driveCtx, fmt.Sprintf("http://%s:%d", lab.ProdAddr4, appPort)); close(done) }()
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
			fmt.Printf("progress: client sent %d requests | shadowtap parsed %.0f, replayed %.0f | shadow answered %d\n",
				client.sent(), m.Sum("shadowtap_http_requests_total"), m.Sum("shadowtap_replay_replayed_total"), shadowStats.total())
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	step("traffic done; letting the last replays finish")
	time.Sleep(2 * time.Second)
	m, err := scrape.get()
	if err != nil {
		return fmt.Errorf("reading shadowtap's metrics: %w", err)
	}
	if err := stopShadowtap(); err != nil {
		return fmt.Errorf("shadowtap: %w", err)
	}
	printSummary(client, m, prodStats, shadowStats)
	return nil
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

// statusLog counts the status codes an app answered, by route.
type statusLog struct {
	mu     sync.Mutex
	counts map[string]map[int]int
}

func newStatusLog() *statusLog { return &statusLog{counts: map[string]map[int]int{}} }

func (s *statusLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		defer func() {
			if p := recover(); p != nil {
				rec.status = 599
				http.Error(w, fmt.Sprint(p), http.StatusInternalServerError)
			}
			s.mu.Lock()
			route := routeOf(r.Method, r.URL.Path)
			if s.counts[route] == nil {
				s.counts[route] = map[int]int{}
			}
			s.counts[route][rec.status]++
			s.mu.Unlock()
		}()
		h.ServeHTTP(rec, r)
	})
}

func (s *statusLog) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		for _, v := range c {
			n += v
		}
	}
	return n
}

func (s *statusLog) get(route string) map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int{}
	for k, v := range s.counts[route] {
		out[k] = v
	}
	return out
}

func (s *statusLog) routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r []string
	for k := range s.counts {
		r = append(r, k)
	}
	return r
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func routeOf(method, path string) string {
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 3)
	switch parts[0] {
	case "product", "static":
		path = "/" + parts[0] + "/…"
	case "api":
		path = "/api/items/…"
	}
	return method + " " + path
}

// browser is the client side: users with a browsing mix, half of them on
// keep-alive connections, half opening a new connection per request.
type browser struct {
	clients []*http.Client
	mu      sync.Mutex
	count   int
	errs    int
}

func newBrowser(lab *testenv.Lab, users int) *browser {
	b := &browser{}
	for i := 0; i < users; i++ {
		tr := &http.Transport{DialContext: lab.DialContext(lab.ClientNS), DisableKeepAlives: i%2 == 1, MaxIdleConnsPerHost: 2}
		b.clients = append(b.clients, &http.Client{
			Transport:     tr,
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		})
	}
	return b
}

func (b *browser) sent() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

func (b *browser) run(ctx context.Context, base string) {
	var wg sync.WaitGroup
	for i, c := range b.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				b.visit(ctx, c, base, rng)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
}

func (b *browser) visit(ctx context.Context, c *http.Client, base string, rng *rand.Rand) {
	var method, path, body string
	switch n := rng.IntN(100); {
	case n < 15:
		method, path = "GET", "/"
	case n < 35:
		method, path = "GET", fmt.Sprintf("/product/%d", rng.IntN(50))
	case n < 55:
		method, path = "GET", []string{"/static/site.css", "/static/app.js"}[rng.IntN(2)]
	case n < 60:
		method, path = "GET", "/static/logo.png"
	case n < 80:
		method, path = "GET", fmt.Sprintf("/api/items/%d", rng.IntN(100))
	case n < 88:
		method, path = "GET", "/search?q=shoes"
	case n < 92:
		method, path, body = "POST", "/login", `{"user":"alice","password":"hunter2"}`
	case n < 95:
		method, path = "GET", "/report.csv"
	default:
		method, path = "HEAD", "/"
	}
	req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	req.Header.Set("User-Agent", "shadowtap-demo/1")
	req.Header.Set("Cookie", "session=demo-secret")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			b.errs++
		}
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	b.count++
}

func printSummary(b *browser, m testenv.Metrics, prod, shadow *statusLog) {
	fmt.Println()
	fmt.Println("==================== shadowtap demo summary ====================")
	fmt.Printf("client requests to production      %8d (errors %d)\n", b.sent(), b.errs)
	fmt.Printf("mirror packets seen by XDP         %8.0f (emitted %0.f, lost %0.f)\n",
		m.Sum("shadowtap_capture_packets_total"), m.Sum("shadowtap_capture_packets_total", "outcome", "emit"), m.Sum("shadowtap_capture_packets_total", "outcome", "lost_ringbuf"))
	const filtered = "shadowtap_replay_filtered_total"
	fmt.Printf("requests rebuilt by shadowtap      %8.0f\n", m.Sum("shadowtap_http_requests_total"))
	fmt.Printf("  replayed to the shadow           %8.0f\n", m.Sum("shadowtap_replay_replayed_total"))
	fmt.Printf("  filtered (method or path)        %8.0f\n", m.Sum(filtered, "reason", "method")+m.Sum(filtered, "reason", "path"))
	fmt.Printf("  sampled out                      %8.0f\n", m.Sum(filtered, "reason", "sampled_out"))
	fmt.Printf("  too large                        %8.0f\n", m.Sum(filtered, "reason", "too_large"))
	fmt.Printf("  dropped (queue full, rate)       %8.0f\n", m.Sum("shadowtap_replay_dropped_total"))
	fmt.Printf("  failed (connect, timeout)        %8.0f\n", m.Sum("shadowtap_replay_failed_total"))
	fmt.Println()
	fmt.Printf("%-22s %-28s %-28s\n", "route", "production answered", "shadow answered")
	routes := prod.routes()
	sort.Strings(routes)
	for _, r := range routes {
		p, s := prod.get(r), shadow.get(r)
		mark := ""
		switch {
		case len(s) == 0:
			mark = "  (not replayed)"
		case fmtCodes(p) != fmtCodes(s):
			mark = "  <- differs"
		}
		fmt.Printf("%-22s %-28s %-28s%s\n", r, fmtCodes(p), fmtCodes(s), mark)
	}
	fmt.Println()
	fmt.Println("shadowtap's own comparison (production's mirrored answer vs the shadow's):")
	var pairs []string
	for _, c := range m {
		if c.Name != "shadowtap_replay_compare_total" || c.Value == 0 {
			continue
		}
		prodClass, shadowClass := c.Labels["production"], c.Labels["shadow"]
		mark := ""
		if prodClass != shadowClass {
			mark = "  <- differs"
		}
		pairs = append(pairs, fmt.Sprintf("  production %-5s shadow %-5s %8.0f%s", prodClass, shadowClass, c.Value, mark))
	}
	sort.Strings(pairs)
	for _, p := range pairs {
		fmt.Println(p)
	}
	fmt.Printf("  status differs %.0f times, body length differs %.0f times\n",
		m.Sum("shadowtap_replay_mismatch_total", "kind", "status"), m.Sum("shadowtap_replay_mismatch_total", "kind", "body_length"))
	fmt.Println()
	fmt.Println("POST /login is not replayed: by default only GET, HEAD and OPTIONS reach the shadow.")
}

func fmtCodes(c map[int]int) string {
	if len(c) == 0 {
		return "-"
	}
	var keys []int
	for k := range c {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d×%d", k, c[k]))
	}
	return strings.Join(parts, " ")
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
