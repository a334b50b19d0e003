package verdict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the engine. Start from DefaultConfig.
type Config struct {
	Baseline        string   // name of the --baseline target ("" = none)
	IgnoreHeaders   []string // --ignore-header, added to DefaultIgnoredHeaders
	IgnoreJSONPaths []string // --ignore-json-path: "PATH" or "ROUTE=PATH" (ROUTE as "GET /users/{id}")
	Routes          []string // --route templates, e.g. "/users/{id}/posts", tried before the automatic rules
	MaxRoutes       int      // --max-routes (500): routes beyond are counted under "other"
	LatencyRoutes   int      // routes with their own latency histograms in /metrics (the rest: "other")
	RedactHeaders   []string // --redact-header: values never written
	DiffLog         string   // --diff-log file ("" = none)
	DiffLogExamples int      // at most this many lines per route and kind per minute
	DiffLogMaxBytes int64    // rotate the diff log beyond this size (one old file kept, FILE.1)
	Queue           int      // exchanges waiting to be compared; beyond, counted uncompared "busy"
	MaxPaths        int      // JSON paths reported per exchange (20)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxRoutes: 500, LatencyRoutes: 25, DiffLogExamples: 5, DiffLogMaxBytes: 100 << 20, Queue: 4096, MaxPaths: 20}
}

// DefaultIgnoredHeaders is the default noise list: headers that differ
// between any two servers (or are compared by their own kind: Set-Cookie).
func DefaultIgnoredHeaders() []string {
	return []string{"Date", "Server", "Age", "Expires", "Last-Modified", "ETag", "X-Request-Id",
		"X-Amzn-Trace-Id", "Via", "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length",
		"Content-Encoding", "Set-Cookie"}
}

// Reasons an exchange is counted uncompared (besides production's missing
// reasons, which replay gives: gap, closed, too_large, ...).
const (
	ReasonBusy         = "busy"          // the engine's queue was full
	ReasonStopped      = "stopped"       // shadowtap was stopping
	ReasonNoProduction = "no_production" // production's response was not seen, no reason given
)

// maxReasons bounds the distinct uncompared reasons per target (labels).
const maxReasons = 32

// timelineMinutes is how many minutes the document's timeline keeps.
const timelineMinutes = 720

// Engine is the comparison stage. Submit never blocks; Run compares.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time // replaced in tests
	router *router

	ignoreHeaders map[string]bool     // canonical
	ignoredList   []string            // sorted, for the document
	jsonPaths     []string            // for every route
	routePaths    map[string][]string // "GET /users/{id}" or "/users/{id}" -> every-route paths plus its own
	redact        map[string]bool     // canonical header names whose values are never written

	queue  chan *Exchange
	intake sync.RWMutex
	closed bool // guarded by intake: queue closed

	runMu   sync.Mutex
	ran     bool          // Run was called, or Close was (a later Run is an error)
	running bool          // Run was called: runDone will be closed
	runDone chan struct{} // closed when Run returns

	procMu sync.Mutex // one exchange processed at a time

	mu       sync.Mutex // guards what follows
	started  time.Time
	targets  map[string]*targetState
	noise    *noiseBook // see noiseBook on locking
	overflow uint64     // noise keys not learned (route full)
	timeline []Minute   // oldest first, at most timelineMinutes

	compared, differing atomic.Uint64

	dl *diffLog // nil without --diff-log
}

// targetState is one target's figures.
type targetState struct {
	name       string
	routes     map[string]*routeState // by label
	order      []*routeState          // by first appearance: index < LatencyRoutes has its own latency series
	own        int                    // routes with their own label (not "other")
	uncompared map[string]uint64
	unverified uint64 // compared, body not verified

	// The legacy replay families.
	pairs           [numClasses][numClasses]uint64
	statusMismatch  uint64
	bodyLenMismatch uint64
}

// routeState is one target's figures for one route label.
type routeState struct {
	route       string
	rank        int
	exchanges   uint64
	differing   uint64
	kinds       map[Kind]uint64
	noise       map[Kind]uint64
	noiseFields map[string]*NoiseField // source + " " + generalized key
	prod        Histogram
	shadow      Histogram
}

// New checks cfg and returns an engine. It opens the diff log, if any.
func New(cfg Config, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	def := DefaultConfig()
	for _, f := range []struct {
		name string
		v    *int
		d    int
	}{
		{"max routes", &cfg.MaxRoutes, def.MaxRoutes},
		{"latency routes", &cfg.LatencyRoutes, def.LatencyRoutes},
		{"diff log examples", &cfg.DiffLogExamples, def.DiffLogExamples},
		{"queue", &cfg.Queue, def.Queue},
		{"max JSON paths", &cfg.MaxPaths, def.MaxPaths},
	} {
		if *f.v < 0 {
			return nil, fmt.Errorf("verdict: %s must not be negative (%d)", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	if cfg.DiffLogMaxBytes < 0 {
		return nil, fmt.Errorf("verdict: diff log max bytes must not be negative (%d)", cfg.DiffLogMaxBytes)
	}
	if cfg.DiffLogMaxBytes == 0 {
		cfg.DiffLogMaxBytes = def.DiffLogMaxBytes
	}
	rt, err := newRouter(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("verdict: --route: %w", err)
	}
	e := &Engine{
		cfg: cfg, log: log, now: time.Now, router: rt,
		ignoreHeaders: make(map[string]bool),
		routePaths:    make(map[string][]string),
		redact:        make(map[string]bool),
		queue:         make(chan *Exchange, cfg.Queue),
		runDone:       make(chan struct{}),
		targets:       make(map[string]*targetState),
		noise:         newNoiseBook(cfg.MaxRoutes),
	}
	for _, h := range append(DefaultIgnoredHeaders(), cfg.IgnoreHeaders...) {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, errors.New("verdict: --ignore-header: empty header name")
		}
		e.ignoreHeaders[http.CanonicalHeaderKey(h)] = true
	}
	for h := range e.ignoreHeaders {
		e.ignoredList = append(e.ignoredList, h)
	}
	sort.Strings(e.ignoredList)
	for _, h := range append(alwaysRedacted(), cfg.RedactHeaders...) {
		e.redact[http.CanonicalHeaderKey(strings.TrimSpace(h))] = true
	}
	own := make(map[string][]string)
	for _, s := range cfg.IgnoreJSONPaths {
		route, path, err := parseIgnoreJSONPath(s)
		if err != nil {
			return nil, fmt.Errorf("verdict: --ignore-json-path: %w", err)
		}
		if route == "" {
			e.jsonPaths = append(e.jsonPaths, path)
		} else {
			own[route] = append(own[route], path)
		}
	}
	for route, paths := range own {
		e.routePaths[route] = append(append([]string(nil), e.jsonPaths...), paths...)
	}
	if cfg.DiffLog != "" {
		if e.dl, err = openDiffLog(cfg.DiffLog, cfg.DiffLogMaxBytes, cfg.DiffLogExamples, log); err != nil {
			return nil, fmt.Errorf("verdict: %w", err)
		}
	}
	e.started = e.now().UTC()
	return e, nil
}

// parseIgnoreJSONPath splits an --ignore-json-path value: "PATH" (every
// route) or "ROUTE=PATH", ROUTE written as in the route labels ("GET
// /users/{id}") or as a path alone ("/users/{id}": any method). PATH is a
// JSON path, starting with $.
func parseIgnoreJSONPath(s string) (route, path string, err error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "=$"); i >= 0 && !strings.HasPrefix(s, "$") {
		route, path = strings.TrimSpace(s[:i]), s[i+1:]
		if m, p, ok := strings.Cut(route, " "); ok {
			route = normalizeMethod(m) + " " + strings.TrimSpace(p)
			if !strings.HasPrefix(strings.TrimSpace(p), "/") {
				return "", "", fmt.Errorf("%q: the route must be METHOD /path or /path", s)
			}
		} else if !strings.HasPrefix(route, "/") {
			return "", "", fmt.Errorf("%q: the route must be METHOD /path or /path", s)
		}
		if err := ValidateJSONPath(path); err != nil {
			return "", "", fmt.Errorf("%q: %w", s, err)
		}
		return route, path, nil
	}
	if !strings.HasPrefix(s, "$") {
		return "", "", fmt.Errorf("%q: want a JSON path ($.a.b) or ROUTE=$.a.b", s)
	}
	if err := ValidateJSONPath(s); err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	return "", s, nil
}

// Submit hands over one replayed exchange (the engine owns it and its bodies
// from now on). It never blocks: when the queue is full the exchange is
// counted uncompared, reason "busy".
func (e *Engine) Submit(x *Exchange) {
	if x == nil {
		return
	}
	e.intake.RLock()
	if e.closed {
		e.intake.RUnlock()
		e.countUncompared(x, ReasonStopped)
		return
	}
	select {
	case e.queue <- x:
		e.intake.RUnlock()
		return
	default:
	}
	e.intake.RUnlock()
	e.countUncompared(x, ReasonBusy)
}

// isBaseline says whether an answer is the baseline's.
func (e *Engine) isBaseline(a *Answer) bool {
	return a.Baseline || e.cfg.Baseline != "" && a.Target == e.cfg.Baseline
}

// countUncompared counts x uncompared for every target but the baseline.
func (e *Engine) countUncompared(x *Exchange, reason string) {
	defer x.done()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range x.Answers {
		if a := &x.Answers[i]; !e.isBaseline(a) {
			e.uncomparedLocked(e.target(a.Target), reason)
		}
	}
}

func (e *Engine) uncomparedLocked(t *targetState, reason string) {
	if reason == "" {
		reason = "unknown"
	}
	if _, ok := t.uncompared[reason]; !ok && len(t.uncompared) >= maxReasons {
		reason = "other"
	}
	t.uncompared[reason]++
}

// Uncompared counts an exchange for target that replay could not hand over,
// with the reason (e.g. "budget").
func (e *Engine) Uncompared(target, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.uncomparedLocked(e.target(target), reason)
}

// target returns a target's state, creating it. Called with mu held.
func (e *Engine) target(name string) *targetState {
	t := e.targets[name]
	if t == nil {
		t = &targetState{name: name, routes: make(map[string]*routeState), uncompared: make(map[string]uint64)}
		e.targets[name] = t
	}
	return t
}

// route returns the state of a template on a target: its own while the
// target has fewer than MaxRoutes, else "other". Called with mu held.
func (e *Engine) route(t *targetState, tmpl string) *routeState {
	if r := t.routes[tmpl]; r != nil {
		return r
	}
	label := tmpl
	if t.own >= e.cfg.MaxRoutes {
		label = OtherRoute
		if r := t.routes[label]; r != nil {
			return r
		}
	} else {
		t.own++
	}
	r := &routeState{route: label, rank: len(t.order), kinds: make(map[Kind]uint64), noise: make(map[Kind]uint64),
		noiseFields: make(map[string]*NoiseField), prod: NewHistogram(), shadow: NewHistogram()}
	t.routes[label] = r
	t.order = append(t.order, r)
	return r
}

// ErrClosed is what Run returns when Close came first: Close has then
// compared the queue itself, and there is nothing left to run.
var ErrClosed = errors.New("verdict: engine closed before Run")

// Run compares submitted exchanges until Close has been called and the
// queue is empty, or ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	e.runMu.Lock()
	if e.ran {
		running := e.running
		e.runMu.Unlock()
		if !running {
			return ErrClosed
		}
		return errors.New("verdict: Run called twice")
	}
	e.ran, e.running = true, true
	e.runMu.Unlock()
	defer close(e.runDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case x, ok := <-e.queue:
			if !ok {
				e.flush()
				return nil
			}
			e.process(x)
		case <-tick.C:
			e.flush()
		case <-ctx.Done():
			e.flush()
			return nil
		}
	}
}

func (e *Engine) flush() {
	if e.dl != nil {
		e.dl.Flush()
	}
}

// Close stops intake (later Submits count as uncompared "stopped"), lets Run
// finish the queue (up to ctx), and flushes and closes the diff log.
func (e *Engine) Close(ctx context.Context) error {
	e.intake.Lock()
	if !e.closed {
		e.closed = true
		close(e.queue)
	}
	e.intake.Unlock()

	e.runMu.Lock()
	running := e.running
	e.ran = true // a later Run returns an error
	e.runMu.Unlock()

	var err error
	if running {
		select {
		case <-e.runDone:
			// Run left on its context's end: what it left is not compared.
			for x := range e.queue {
				e.countUncompared(x, ReasonStopped)
			}
		case <-ctx.Done():
			err = fmt.Errorf("verdict: closing: exchanges still queued: %w", ctx.Err())
		}
	} else {
		// No Run: compare what was queued here.
		for x := range e.queue {
			if ctx.Err() != nil {
				e.countUncompared(x, ReasonStopped)
				continue
			}
			e.process(x)
		}
	}
	if e.dl != nil {
		if cerr := e.dl.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("verdict: %w", cerr)
		}
	}
	return err
}

// Totals returns compared and differing exchanges so far (for the summary line).
func (e *Engine) Totals() (compared, differing uint64) {
	return e.compared.Load(), e.differing.Load()
}

// shadowResult is what one answer came to, before it is counted.
type shadowResult struct {
	answer     *Answer
	stopped    bool
	kept       []Difference
	noise      []noiseHit
	unverified bool
	route      string // the label it was counted under (set under mu)
}

// stoppedError says whether an answer's Error means shadowtap was stopping.
func stoppedError(s string) bool { return s == "stopped" || s == "drain" }

// compareOne compares production's response with an answer: the one place
// that calls the comparison.
func compareOne(prod, other *Response, opt *CompareOptions) (diffs []Difference, bodyUnverified bool) {
	res := CompareDetailed(prod, other, opt)
	return res.Diffs, res.BodyUnverified
}

// options returns the comparison options for a route template.
func (e *Engine) options(tmpl string, x *Exchange) CompareOptions {
	paths := e.jsonPaths
	if p, ok := e.routePaths[tmpl]; ok {
		paths = p
	} else if _, path, ok := strings.Cut(tmpl, " "); ok {
		if p, ok := e.routePaths[path]; ok {
			paths = p
		}
	}
	return CompareOptions{IgnoreHeaders: e.ignoreHeaders, IgnoreJSONPaths: paths, Host: x.Host,
		Method: x.Method, MaxPaths: e.cfg.MaxPaths, Path: x.Path, RedactHeaders: e.redact}
}

// process compares one exchange and counts the results.
func (e *Engine) process(x *Exchange) {
	defer x.done()
	e.procMu.Lock()
	defer e.procMu.Unlock()
	tmpl := e.router.Template(x.Method, x.Path)
	prod := x.Production
	if prod == nil {
		reason := x.ProductionMissing
		if reason == "" {
			reason = ReasonNoProduction
		}
		e.mu.Lock()
		for i := range x.Answers {
			a := &x.Answers[i]
			t := e.target(a.Target)
			if a.Response != nil {
				t.pairs[classNone][classOf(a.Response.Status)]++
			}
			if !e.isBaseline(a) {
				e.uncomparedLocked(t, reason)
			}
		}
		e.mu.Unlock()
		return
	}
	opt := e.options(tmpl, x)

	// The baseline first: what differs between production and the old code
	// is noise for this exchange and, from now on, for the route.
	var exNoise map[string]bool
	var learned []Difference
	baselineAnswered := false
	for i := range x.Answers {
		a := &x.Answers[i]
		if !e.isBaseline(a) || a.Response == nil {
			continue
		}
		baselineAnswered = true
		bd, _ := compareOne(prod, a.Response, &opt)
		for _, d := range bd {
			if exNoise == nil {
				exNoise = make(map[string]bool, len(bd))
			}
			exNoise[d.Key()] = true
		}
		learned = append(learned, bd...)
	}

	results := make([]shadowResult, 0, len(x.Answers))
	for i := range x.Answers {
		a := &x.Answers[i]
		if e.isBaseline(a) {
			continue
		}
		r := shadowResult{answer: a}
		switch {
		case a.Response == nil && stoppedError(a.Error):
			r.stopped = true
		case a.Response == nil:
			msg := a.Error
			if msg == "" {
				msg = "error"
			}
			r.kept = []Difference{{Kind: KindShadowError, Field: "error", Shadow: msg,
				Explanation: "the shadow did not answer (" + msg + ") while production answered " + statusText(prod.Status)}}
		default:
			diffs, unverified := compareOne(prod, a.Response, &opt)
			r.unverified = unverified
			r.kept, r.noise = filterNoise(diffs, exNoise, e.noise, tmpl)
		}
		results = append(results, r)
	}

	when := x.Time
	if when.IsZero() {
		when = e.now()
	}
	e.mu.Lock()
	if baselineAnswered {
		e.overflow += uint64(e.noise.learn(tmpl, learned))
	}
	for i := range x.Answers {
		if a := &x.Answers[i]; a.Response != nil {
			e.target(a.Target).countLegacy(prod, a.Response)
		}
	}
	for i := range results {
		e.countLocked(tmpl, when, prod, &results[i])
	}
	e.mu.Unlock()

	if e.dl == nil {
		return
	}
	now := e.now()
	for i := range results {
		if r := &results[i]; len(r.kept) > 0 {
			e.dl.Write(now, e.logLine(x, when, prod, r))
		}
	}
}

func statusText(code int) string {
	return fmt.Sprintf("%d", code)
}

// countLocked counts one answer's result. Called with mu held.
func (e *Engine) countLocked(tmpl string, when time.Time, prod *Response, r *shadowResult) {
	t := e.target(r.answer.Target)
	if r.stopped {
		e.uncomparedLocked(t, ReasonStopped)
		return
	}
	rs := e.route(t, tmpl)
	r.route = rs.route
	rs.exchanges++
	e.compared.Add(1)
	if r.unverified {
		t.unverified++
	}
	rs.prod.Observe(max(prod.Latency, 0))
	if r.answer.Response != nil {
		rs.shadow.Observe(max(r.answer.Response.Latency, 0))
	}
	for _, n := range r.noise {
		rs.noise[n.kind]++
		k := n.source + " " + n.gkey
		f := rs.noiseFields[k]
		if f == nil {
			if len(rs.noiseFields) >= maxNoisePerRoute {
				continue
			}
			f = &NoiseField{Kind: n.kind, Field: fieldOfKey(n.gkey), Source: n.source}
			rs.noiseFields[k] = f
		}
		f.Count++
	}
	kinds := kindsOf(r.kept)
	m := e.minute(when)
	if m != nil {
		m.Exchanges++
	}
	if len(kinds) == 0 {
		return
	}
	rs.differing++
	e.differing.Add(1)
	for _, k := range kinds {
		rs.kinds[k]++
	}
	if m != nil {
		m.Differing++
		for _, k := range kinds {
			m.Kinds[k]++
		}
	}
}

// kindsOf returns the distinct kinds of diffs, in ExchangeKinds order.
func kindsOf(diffs []Difference) []Kind {
	if len(diffs) == 0 {
		return nil
	}
	var out []Kind
	for _, k := range ExchangeKinds() {
		for _, d := range diffs {
			if d.Kind == k {
				out = append(out, k)
				break
			}
		}
	}
	for _, d := range diffs { // a kind Compare may add later
		known := false
		for _, k := range out {
			known = known || k == d.Kind
		}
		if !known {
			out = append(out, d.Kind)
		}
	}
	return out
}

// minute returns the timeline's bucket for a time, creating it; nil when
// the time is older than the timeline keeps. Called with mu held.
func (e *Engine) minute(t time.Time) *Minute {
	start := t.UTC().Truncate(time.Minute)
	i := len(e.timeline)
	for i > 0 && e.timeline[i-1].Start.After(start) {
		i--
	}
	if i > 0 && e.timeline[i-1].Start.Equal(start) {
		return &e.timeline[i-1]
	}
	if len(e.timeline) >= timelineMinutes && i == 0 {
		return nil // older than everything kept
	}
	e.timeline = append(e.timeline, Minute{})
	copy(e.timeline[i+1:], e.timeline[i:])
	e.timeline[i] = Minute{Start: start, Kinds: make(map[Kind]uint64)}
	if len(e.timeline) > timelineMinutes {
		e.timeline = append(e.timeline[:0], e.timeline[1:]...)
		i--
	}
	return &e.timeline[i]
}

// logLine builds the diff log line of one differing answer.
func (e *Engine) logLine(x *Exchange, when time.Time, prod *Response, r *shadowResult) *DiffLogLine {
	path := x.Path
	if x.Query != "" {
		path += "?" + redactQuery(x.Query)
	}
	line := &DiffLogLine{
		Schema: SchemaVersion, Time: when.UTC(), Target: r.answer.Target, Route: r.route,
		Method: x.Method, Path: path, Kinds: kindsOf(r.kept),
		Production:  Side{Status: prod.Status, LatencyMS: ms(prod.Latency)},
		Differences: redactDifferences(r.kept, e.redact),
	}
	if s := r.answer.Response; s != nil {
		line.Shadow = Side{Status: s.Status, LatencyMS: ms(s.Latency)}
	} else {
		line.Shadow = Side{Error: r.answer.Error}
		if line.Shadow.Error == "" {
			line.Shadow.Error = "error"
		}
	}
	return line
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Status classes of the legacy replay families.
const (
	classNone = iota
	class1xx
	class2xx
	class3xx
	class4xx
	class5xx
	classOther
	numClasses
)

var classNames = [numClasses]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx", "other"}

func classOf(status int) int {
	if status < 100 || status > 599 {
		return classOther
	}
	return status / 100
}

// countLegacy counts an answer in the legacy replay families.
func (t *targetState) countLegacy(prod, other *Response) {
	t.pairs[classOf(prod.Status)][classOf(other.Status)]++
	if prod.Status != other.Status {
		t.statusMismatch++
	}
	if prod.BodyLen != other.BodyLen {
		t.bodyLenMismatch++
	}
}

// targetNames returns the targets' names, sorted; e.mu is held.
func (e *Engine) targetNames() []string {
	names := make([]string, 0, len(e.targets))
	for n := range e.targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Document returns the current /verdict document.
func (e *Engine) Document() *Document {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := &Document{
		Schema: SchemaVersion, Generated: e.now().UTC(), Started: e.started, Receivers: 1,
		Totals: Totals{Kinds: make(map[Kind]uint64), Noise: make(map[Kind]uint64), Uncompared: make(map[string]uint64)},
		Routes: []Route{}, Timeline: make([]Minute, 0, len(e.timeline)),
		Ignored: Ignored{Headers: append([]string{}, e.ignoredList...),
			JSONPaths: append([]string{}, e.cfg.IgnoreJSONPaths...), Baseline: e.cfg.Baseline},
	}
	names := e.targetNames()
	for _, n := range names {
		t := e.targets[n]
		for reason, c := range t.uncompared {
			d.Totals.Uncompared[reason] += c
		}
		start := len(d.Routes)
		for _, rs := range t.order {
			rt := Route{Target: n, Route: rs.route, Exchanges: rs.exchanges, Differing: rs.differing,
				Kinds: copyKinds(rs.kinds), Noise: copyKinds(rs.noise),
				NoiseFields: docNoiseFields(rs.noiseFields, e.noise.fields(rs.route)),
				Latency:     RouteLatency{Production: cloneHist(rs.prod), Shadow: cloneHist(rs.shadow)}}
			d.Totals.Exchanges += rt.Exchanges
			d.Totals.Differing += rt.Differing
			for k, c := range rt.Kinds {
				d.Totals.Kinds[k] += c
			}
			for k, c := range rt.Noise {
				d.Totals.Noise[k] += c
			}
			d.Routes = append(d.Routes, rt)
		}
		rs := d.Routes[start:]
		sort.Slice(rs, func(i, j int) bool { return rs[i].Route < rs[j].Route })
	}
	for _, m := range e.timeline {
		m.Kinds = copyKinds(m.Kinds)
		d.Timeline = append(d.Timeline, m)
	}
	return d
}

func copyKinds(m map[Kind]uint64) map[Kind]uint64 {
	out := make(map[Kind]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// cloneHist copies a histogram (its slices too) and fills its quantiles.
func cloneHist(h Histogram) Histogram {
	h.Bounds = append([]float64(nil), h.Bounds...)
	h.Counts = append([]uint64(nil), h.Counts...)
	h.Finish()
	return h
}

// Collectors returns the engine's Prometheus collectors.
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{newCollector(e)}
}

// WriteFile writes the document to path atomically (temporary file, rename).
func (e *Engine) WriteFile(path string) error {
	b, err := json.MarshalIndent(e.Document(), "", "  ")
	if err != nil {
		return fmt.Errorf("verdict: encoding the document: %w", err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("verdict: writing %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("verdict: writing %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("verdict: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("verdict: writing %s: %w", path, err)
	}
	return nil
}

// Handler serves GET /verdict: the document as JSON. Other methods get 405.
func (e *Engine) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: GET /verdict", http.StatusMethodNotAllowed)
			return
		}
		b, err := json.MarshalIndent(e.Document(), "", "  ")
		if err != nil {
			http.Error(w, "encoding the verdict document failed", http.StatusInternalServerError)
			e.log.Error("verdict: encoding the document", "err", err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(append(b, '\n'))
	})
}
