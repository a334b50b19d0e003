package replay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

var (
	_ httpx.Sink        = (*Replayer)(nil)
	_ httpx.HeadDecider = (*Replayer)(nil)
)

// Replayer is the replay stage. It implements httpx.Sink.
type Replayer struct {
	cfg       Config
	log       *slog.Logger
	methods   [][]byte
	sampleKey SampleKey
	threshold uint64 // of sampleScale
	rw        rewriter
	targets   []*target
	hashCopy  bool // some target's multiplier has a fraction: dispatch hashes the request's identity
	stats     Stats
	now       func() time.Time // rate limiter clock; replaced in tests

	intake  sync.RWMutex
	stopped bool // guarded by intake: queues closed, no more sends

	cmp compareState // with Config.Verdict only
	adm *admission   // overload shedding (overload.go)

	runMu      sync.Mutex
	started    bool
	startedCh  chan struct{} // closed when started is set
	cancelWork context.CancelFunc
	done       chan struct{} // closed when the workers have exited

	latency *prometheus.HistogramVec
	ttfb    *prometheus.HistogramVec
}

// target is one shadow endpoint with its queue. Each of its workers keeps
// its own keep-alive connection to it (see conn).
type target struct {
	url       *url.URL
	basePath  string // without trailing slash
	name      string
	baseline  bool          // the --baseline target (old code)
	addr      string        // host:port to dial
	tlsConfig *tls.Config   // nil: plain http
	limiter   *rate.Limiter // nil: unlimited
	mul       multiplier    // copies of each request (Config.Multiply)
	queue     chan job
	qbytes    atomic.Int64 // request body bytes of the jobs in queue, at most Config.QueueBytes
	stats     *targetStats
	latency   prometheus.Observer
	ttfb      prometheus.Observer
	// noPipe: the target ended a connection in the middle of a batch of
	// pipelined requests; it is sent one request at a time from then on.
	noPipe atomic.Bool
}

// job is one request for one target. The job holds a reference on ex.
type job struct {
	ex  *httpx.Exchange
	j   *join     // nil when not compared (always for duplicates)
	at  time.Time // when it was dispatched, with Config.ReplayDelay only
	nth int       // copy number (Config.Multiply): 1 the first, 2… duplicates
}

// dup reports whether jb is a duplicate: a copy beyond the first, never
// compared and counted apart.
func (jb job) dup() bool { return jb.nth > 1 }

// New checks cfg, applies its defaults and returns a Replayer. Call Run to
// start sending; requests given before that wait in the queues.
func New(cfg Config, log *slog.Logger) (*Replayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	key, err := ParseSampleKey(cfg.SampleKey)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	r := &Replayer{
		cfg:       cfg,
		log:       log,
		sampleKey: key,
		threshold: uint64(math.Round(cfg.SamplePercent / 100 * sampleScale)),
		rw:        newRewriter(&cfg),
		now:       time.Now,
		done:      make(chan struct{}),
		startedCh: make(chan struct{}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shadowtap_replay_duration_seconds",
			Help:    "Time from sending a replayed request to the end of the shadow's response body.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"target"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shadowtap_replay_ttfb_seconds",
			Help:    "Time from sending a replayed request to the end of the shadow's response head (status line and headers read).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"target"}),
	}
	for _, m := range cfg.Methods {
		r.methods = append(r.methods, []byte(strings.ToUpper(m)))
	}
	if cfg.Verdict != nil {
		r.cmp.joins = make(map[*httpx.Exchange]*join)
	}
	for _, u := range cfg.Targets {
		r.targets = append(r.targets, r.newTarget(u, cfg.Multiply))
	}
	if cfg.Baseline != nil {
		t := r.newTarget(cfg.Baseline, 1)
		t.baseline = true
		r.targets = append(r.targets, t)
	}
	for _, t := range r.targets {
		t.stats.baseline = t.baseline
		r.stats.targets = append(r.stats.targets, t.stats)
		r.hashCopy = r.hashCopy || t.mul.frac > 0
	}
	r.stats.comparing = cfg.Verdict != nil
	r.adm = newAdmission(func() time.Time { return r.now() }, r.targetLoads)
	return r, nil
}

// newTarget builds the target of URL u, sent each request mul times unless
// Config.TargetMultiply names it.
func (r *Replayer) newTarget(u *url.URL, mul float64) *target {
	cfg := &r.cfg
	name := u.Redacted()
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	t := &target{
		url:      u,
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		name:     name,
		addr:     net.JoinHostPort(u.Hostname(), port),
		queue:    make(chan job, cfg.Queue),
		stats:    &targetStats{name: name},
		latency:  r.latency.WithLabelValues(name),
		ttfb:     r.ttfb.WithLabelValues(name),
	}
	if u.Scheme == "https" {
		t.tlsConfig = &tls.Config{}
		if cfg.TLS != nil {
			t.tlsConfig = cfg.TLS.Clone()
		}
		t.tlsConfig.ServerName = serverName(cfg.Host, u)
		t.tlsConfig.NextProtos = []string{"http/1.1"}
		t.tlsConfig.ClientSessionCache = tls.NewLRUClientSessionCache(cfg.MaxInflight)
		if t.tlsConfig.InsecureSkipVerify {
			r.log.Warn("TLS certificate verification is off (--insecure-skip-verify): the shadow's identity is not checked, anything on the path can pose as it and read the replayed requests",
				"target", name)
		}
	}
	if f, ok := cfg.TargetMultiply[u.String()]; ok {
		mul = f
	}
	t.mul = newMultiplier(mul)
	if !t.mul.one() {
		r.log.Info("load multiplication: each replayed request is sent to the target this many times on average; the copies beyond the first are duplicates, never compared",
			"target", name, "multiply", mul)
	}
	t.stats.queued = func() int { return len(t.queue) }
	t.stats.queuedBytes = t.qbytes.Load
	if cfg.MaxRPS > 0 {
		t.limiter = rate.NewLimiter(rate.Limit(cfg.MaxRPS), max(1, int(math.Ceil(cfg.MaxRPS))))
	}
	return t
}

// serverName is the TLS server name for target u: the host name of the
// Host override when set (what a vhost-routing TLS ingress expects), else
// the URL's host.
func serverName(host string, u *url.URL) string {
	if host == "" {
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// Stats returns the live counters.
func (r *Replayer) Stats() *Stats { return &r.stats }

// Request is called by the parser for every complete request. It decides
// whether to replay it (reusing the decision WantBody made at the head) and
// queues it to every target; it never blocks.
func (r *Replayer) Request(ex *httpx.Exchange) {
	s := &r.stats
	s.requests.Add(1)
	d := decision(ex.Mark)
	if d == 0 {
		d = r.decide(ex)
	}
	switch {
	case d == decMethod:
		s.filteredMethod.Add(1)
	case d == decPath:
		s.filteredPath.Add(1)
	case d == decSampledOut:
		s.sampledOut.Add(1)
	case ex.Req.OverBudget:
		s.bodyBudget.Add(1)
	case ex.Req.TooLarge:
		s.tooLarge.Add(1)
	default:
		s.accepted.Add(1)
		if !r.admitted(ex) {
			return // shed by overload control, counted
		}
		r.dispatch(ex)
	}
}

// decision is the filters' verdict on a request, kept in Exchange.Mark
// between WantBody and Request (0: not decided yet).
type decision uint8

const (
	decReplay decision = iota + 1
	decMethod
	decPath
	decSampledOut
)

// decide applies the method, path and sampling filters, in that order.
func (r *Replayer) decide(ex *httpx.Exchange) decision {
	if !r.methodAllowed(ex.Req.Method) {
		return decMethod
	}
	if _, path, _ := splitTarget(ex.Req.Target); !r.pathAllowed(path) {
		return decPath
	}
	if !r.sampled(ex) {
		return decSampledOut
	}
	return decReplay
}

// WantBody implements httpx.HeadDecider: the parser asks at the head, and
// keeps the body only for a request that will be replayed. The decision is
// kept in ex.Mark for Request.
func (r *Replayer) WantBody(ex *httpx.Exchange) bool {
	d := r.decide(ex)
	ex.Mark = uint8(d)
	return d == decReplay
}

func (r *Replayer) methodAllowed(m []byte) bool {
	for _, a := range r.methods {
		if bytes.Equal(a, m) {
			return true
		}
	}
	return false
}

func (r *Replayer) pathAllowed(path []byte) bool {
	if len(r.cfg.IncludePath) > 0 {
		in := false
		for _, re := range r.cfg.IncludePath {
			if re.Match(path) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, re := range r.cfg.ExcludePath {
		if re.Match(path) {
			return false
		}
	}
	return true
}

func (r *Replayer) sampled(ex *httpx.Exchange) bool {
	switch {
	case r.threshold >= sampleScale:
		return true
	case r.threshold == 0:
		return false
	}
	var buf [64]byte
	key, fallback := sampleKeyOf(r.sampleKey, ex, buf[:])
	if fallback {
		r.stats.keyMissing.Add(1)
	}
	return sampledIn(key, r.threshold)
}

// dispatch offers an accepted request to every target without blocking:
// as many copies as the target's multiplier says (usually one). Only the
// first copy joins the comparison. When a copy cannot be queued (queue
// full, rate spent, intake stopped), it and the copies after it are
// dropped for that reason: the rest would fare the same.
func (r *Replayer) dispatch(ex *httpx.Exchange) {
	var j *join
	if r.cfg.Verdict != nil {
		j = r.track(ex)
	}
	var at time.Time
	if r.cfg.ReplayDelay > 0 {
		at = time.Now()
	}
	var h uint64
	if r.hashCopy {
		h = identityHash(ex)
	}
	sent := 0
	now := r.now()
	r.intake.RLock()
	for _, t := range r.targets {
		n := t.mul.copies(h)
		if n == 0 {
			t.stats.dropped[dropMultiply].Add(1)
			continue
		}
		if n > 1 {
			t.stats.dup.due.Add(uint64(n - 1))
		}
		if reason, ok := r.enqueue(t, job{ex: ex, j: j, at: at, nth: 1}, now); !ok {
			t.stats.dropped[reason].Add(1)
			if n > 1 {
				t.stats.dup.dropped[reason].Add(uint64(n - 1))
			}
			continue
		}
		sent++
		for k := 2; k <= n; k++ {
			if reason, ok := r.enqueue(t, job{ex: ex, at: at, nth: k}, now); !ok {
				t.stats.dup.dropped[reason].Add(uint64(n - k + 1))
				break
			}
		}
	}
	r.intake.RUnlock()
	if j != nil {
		if sent == 0 {
			// Nothing to compare: no target was sent the request.
			r.untrack(ex)
			return
		}
		r.part(j) // dispatch's hold
	}
}

// enqueue offers one copy of a request to t's queue without blocking, or
// says why it could not. The caller holds r.intake for reading.
func (r *Replayer) enqueue(t *target, jb job, now time.Time) (dropReason, bool) {
	if r.stopped {
		return dropStopped, false
	}
	var res *rate.Reservation
	if t.limiter != nil {
		res = t.limiter.ReserveN(now, 1)
		if !res.OK() || res.DelayFrom(now) > 0 {
			res.CancelAt(now)
			return dropRate, false
		}
	}
	n := int64(len(jb.ex.Req.Body))
	if n > 0 && t.qbytes.Add(n) > r.cfg.QueueBytes {
		// Full in bytes: as full as in entries.
		t.qbytes.Add(-n)
		if res != nil {
			res.CancelAt(now)
		}
		return dropQueue, false
	}
	jb.ex.Retain()
	if jb.j != nil {
		jb.j.left.Add(1) // before the worker can answer
	}
	if jb.dup() {
		t.stats.dup.queued.Add(1) // before the worker can take it
	}
	select {
	case t.queue <- jb:
		return 0, true
	default:
		t.qbytes.Add(-n)
		if jb.dup() {
			t.stats.dup.queued.Add(-1)
		}
		if jb.j != nil {
			jb.j.left.Add(-1)
		}
		jb.ex.Release()
		if res != nil {
			res.CancelAt(now) // give the token back: nothing was sent
		}
		return dropQueue, false
	}
}

// dequeued gives back the queue bytes of a job taken from t's queue.
func (t *target) dequeued(jb job) {
	if n := int64(len(jb.ex.Req.Body)); n > 0 {
		t.qbytes.Add(-n)
	}
}

// Response is called by the parser once per request, after Request, with
// production's response (or ex.Resp nil and ex.Reason). With a comparison
// stage it records production's side of the exchange; it never blocks.
func (r *Replayer) Response(ex *httpx.Exchange) {
	if r.cfg.Verdict == nil {
		return
	}
	r.cmp.mu.Lock()
	j, ok := r.cmp.joins[ex]
	if ok {
		delete(r.cmp.joins, ex)
	}
	r.cmp.mu.Unlock()
	if !ok {
		return
	}
	r.production(j, ex)
	r.part(j)
}

// Run starts MaxInflight workers per target and returns when they have
// stopped: after Drain, or when ctx is cancelled (which stops intake and
// cancels what is queued and in flight, counted as failed drain). Cancel
// ctx only after Drain for a graceful stop. Run may be called once.
func (r *Replayer) Run(ctx context.Context) error {
	r.runMu.Lock()
	if r.started {
		r.runMu.Unlock()
		return errors.New("replay: Run called twice or after Drain")
	}
	r.started = true
	close(r.startedCh)
	wctx, cancel := context.WithCancel(ctx)
	r.cancelWork = cancel
	var wg sync.WaitGroup
	for _, t := range r.targets {
		for range r.cfg.MaxInflight {
			wg.Go(func() { r.worker(wctx, t) })
		}
	}
	r.runMu.Unlock()
	r.log.Info("replay started", "targets", len(r.targets), "max_inflight", r.cfg.MaxInflight, "queue", r.cfg.Queue)

	stop := context.AfterFunc(ctx, r.stopIntake)
	wg.Wait()
	stop()
	cancel()
	close(r.done) // each worker closed its connection as it exited
	s := r.stats.Snapshot()
	r.log.Info("replay stopped", "requests", s.Requests, "accepted", s.Accepted)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

// Drain stops intake (later requests count as dropped "stopped"), waits for
// queued and in-flight requests to finish, and when ctx ends first cancels
// them (counted as failed "drain"). If Run has not been called, Drain waits
// for it until ctx ends. It returns once every worker has exited.
func (r *Replayer) Drain(ctx context.Context) error {
	r.stopIntake()
	select {
	case <-r.startedCh:
	case <-ctx.Done():
		r.runMu.Lock()
		if !r.started {
			// Never run: nothing will send what is queued.
			r.started = true
			close(r.startedCh)
			r.runMu.Unlock()
			for _, t := range r.targets {
				for jb := range t.queue {
					t.dequeued(jb)
					if jb.dup() {
						t.stats.dup.queued.Add(-1)
					}
					r.drained(t, jb)
					jb.ex.Release()
				}
			}
			close(r.done)
			return fmt.Errorf("replay: drain before Run: %w", ctx.Err())
		}
		r.runMu.Unlock()
	}
	r.runMu.Lock()
	cancel := r.cancelWork
	r.runMu.Unlock()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
	}
	if cancel != nil {
		cancel()
	}
	<-r.done
	var cancelled uint64
	for _, t := range r.stats.Snapshot().Targets {
		cancelled += t.FailedDrain
	}
	r.log.Warn("replay drain deadline passed: cancelled the rest", "failed_drain", cancelled)
	return fmt.Errorf("replay: drain: %w", ctx.Err())
}

// stopIntake makes later requests count as dropped and closes the queues so
// the workers end once they are empty.
func (r *Replayer) stopIntake() {
	r.intake.Lock()
	defer r.intake.Unlock()
	if r.stopped {
		return
	}
	r.stopped = true
	for _, t := range r.targets {
		close(t.queue)
	}
}

func (r *Replayer) worker(ctx context.Context, t *target) {
	c := newConn(&r.cfg, t)
	defer c.close()
	if r.cfg.Pipeline > 1 {
		r.pipelineWorker(ctx, t, c)
		return
	}
	for jb := range t.queue {
		t.take(jb)
		r.replay(ctx, t, c, jb)
		t.end(jb)
	}
}

// take counts a job taken from t's queue as in flight.
func (t *target) take(jb job) {
	t.dequeued(jb)
	if jb.dup() {
		t.stats.dup.inflight.Add(1)
		t.stats.dup.queued.Add(-1)
		return
	}
	t.stats.inflight.Add(1)
}

// end releases a job whose outcome has been counted.
func (t *target) end(jb job) {
	jb.ex.Release()
	if jb.dup() {
		t.stats.dup.inflight.Add(-1)
		return
	}
	t.stats.inflight.Add(-1)
}

// replay sends one request to one target over the worker's connection and
// counts its outcome. It reads jb.ex's buffers only until it returns (a
// body written in the background has been written or abandoned by then:
// see conn.close), so jb.ex may be released then.
func (r *Replayer) replay(ctx context.Context, t *target, c *conn, jb job) {
	r.hold(ctx, jb)
	if ctx.Err() != nil {
		r.drained(t, jb)
		return
	}
	ex := jb.ex
	start := time.Now()
	req, err := r.rw.build(c.head, t.url.Host, t.basePath, ex, jb.nth)
	if err != nil {
		r.fail(ctx, t, jb, failInvalid, err)
		return
	}
	c.head = req.head[:0]
	resp, err := c.roundTrip(ctx, &req, start)
	if err != nil {
		r.fail(ctx, t, jb, classifyErr(ctx, err), err)
		return
	}
	// roundTrip returns once the final response head (status line and
	// headers, after any 1xx interim responses) has been read: that is the
	// "time to first byte" measured. It includes the time to read the head.
	head := time.Since(start)
	b, err := r.readBody(resp.Body, c.buf, jb.j, resp.ContentLength)
	if err != nil {
		// Not resp.Body.Close: it would read the rest from the connection.
		c.close()
		r.fail(ctx, t, jb, classifyErr(ctx, err), err)
		return
	}
	resp.Body.Close() // at EOF: nothing left to read
	total := time.Since(start)
	c.done(resp)
	r.answered(t, jb, resp, b, head, total)
}

// answered counts a request the target answered (resp, whose body b was
// read to its end), observes its time to the head and to the end of the
// body, and hands the answer over for comparison.
func (r *Replayer) answered(t *target, jb job, resp *http.Response, b body, head, total time.Duration) {
	// Duplicates are load like any other: the histograms include them.
	t.latency.Observe(total.Seconds())
	t.ttfb.Observe(head.Seconds())
	if jb.dup() {
		t.stats.dup.replayed[ClassOf(resp.StatusCode)].Add(1)
		return
	}
	t.stats.replayed[ClassOf(resp.StatusCode)].Add(1)
	if r.cfg.Verdict != nil {
		r.result(t, jb.j, verdict.Answer{Response: &verdict.Response{
			Status: resp.StatusCode, Header: resp.Header,
			Body: b.kept, BodyLen: b.n, BodyComplete: b.complete, BodyHash: b.hash,
			Latency: head,
		}}, "")
	}
}

// hold waits until jb is due (Config.ReplayDelay after it was dispatched)
// or ctx ends.
func (r *Replayer) hold(ctx context.Context, jb job) {
	d := r.cfg.ReplayDelay
	if d <= 0 {
		return
	}
	// Held so the replica can catch up with production's writes; the
	// request stays counted in flight meanwhile.
	if wait := time.Until(jb.at.Add(d)); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
	}
}

// drainBufSize is each worker's buffer for reading response bodies: larger
// than the connection's 4 KiB read buffer, so a large body takes fewer read
// calls (bufio reads into it directly).
const drainBufSize = 32 << 10

// classifyErr says why a request failed; ctx is the worker's context.
func classifyErr(ctx context.Context, err error) failReason {
	if ctx.Err() != nil {
		return failDrain
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return failConnect
	}
	if reason, ok := connFailReason(err); ok {
		return reason
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return failTimeout
	}
	return failError
}

// drained counts a request cancelled before it was sent: failed "drain".
func (r *Replayer) drained(t *target, jb job) {
	if jb.dup() {
		t.stats.dup.failed[failDrain].Add(1)
		return
	}
	t.stats.failed[failDrain].Add(1)
	r.result(t, jb.j, failAnswer(failDrain, nil), "")
}

func (r *Replayer) fail(ctx context.Context, t *target, jb job, reason failReason, err error) {
	switch {
	case jb.dup():
		t.stats.dup.failed[reason].Add(1)
	case reason == failInvalid:
		t.stats.failed[reason].Add(1)
		r.result(t, jb.j, verdict.Answer{}, UncomparedInvalid)
	default:
		t.stats.failed[reason].Add(1)
		r.result(t, jb.j, failAnswer(reason, err), "")
	}
	ex := jb.ex
	if !r.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	// *url.Error repeats the URL with its query; log the cause and the path only.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	_, path, _ := splitTarget(ex.Req.Target)
	r.log.Debug("replay failed", "target", t.name, "reason", failNames[reason],
		"method", string(ex.Req.Method), "path", string(path), "copy", jb.nth, "err", err)
}
