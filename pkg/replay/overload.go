package replay

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// Overload shedding (issue 12). When the shadow fleet (or this process)
// cannot replay everything, the replay queues fill; left alone they
// overflow and drop requests at random (reason "queue"), cutting holes in
// every user session, while the replay work crowds out capture. Instead,
// admission control sheds whole sessions before anything is queued.
//
// A request is admitted when the consistent sampling hash of its sample key
// (the hash of --sample, so every receiver agrees) falls in the admitted
// fraction of the sampled key space. The fraction is 1 until a target's
// queue passes the high-water mark. From then on, every overloadInterval,
// it is set to what the slowest target answers divided by what arrives
// (both rates smoothed over a few intervals), corrected by the queue's
// distance to its target fill (above it, less is admitted so the queue
// drains; below it, more, so the fraction grows back as long as the shadow
// keeps up), and smoothed (not when the queue is about to overflow). It
// returns to 1 (and control ends) once the fraction is back to 1 with the
// queues below the low-water mark. A change of the fraction moves the
// boundary between admitted and shed keys a little: nothing flaps.
//
// Capture comes first: when the capture source reports that it falls
// behind (SetCapturePressure: the XDP ring buffer filling up because the
// reader does not get the CPU), the fraction falls multiplicatively each
// interval and does not grow again until capture has caught up.
//
// A session under way keeps its decision while it stays active (requests
// less than sessionIdle apart): a shed session stays shed (for shedHold at
// most, so a key that never pauses is not kept out for ever), so no
// session is replayed from its middle; an admitted one stays admitted
// until the fraction falls sessionBand below its position. Sessions are
// remembered only during control and for sessionIdle after it ends. Shed
// requests are counted dropped "overload" for every target; the fraction
// is exported as shadowtap_replay_admitted_ratio.
const (
	overloadInterval = 25 * time.Millisecond
	overloadHigh     = 0.5    // queue fill at which control starts
	overloadLow      = 0.125  // queue fill below which it may end
	overloadTarget   = 0.25   // queue fill control steers to
	overloadGain     = 1.0    // admitted rate × (1 + gain × (target − fill))
	overloadSmooth   = 0.5    // weight of the new fraction
	overloadUrgent   = 0.75   // queue fill above which the new fraction applies at once, unsmoothed
	overloadRateEWMA = 0.25   // weight of the last interval in the answer and arrival rates
	overloadMin      = 0.0001 // the fraction never falls below this
	overloadMaxGrow  = 1.25   // the fraction grows at most this much per interval

	// Capture pressure (SetCapturePressure): at or above pressureHigh the
	// fraction is multiplied by pressureDecrease each interval; above
	// pressureLow it does not grow.
	pressureHigh     = 0.5
	pressureLow      = 0.25
	pressureDecrease = 0.7

	sessionSets = 1 << 14         // remembered sessions: 4-way sets by hash (64 Ki sessions, 2 MiB, allocated on the first overload)
	sessionWays = 4               // sessions a set holds; the least recently seen is replaced
	sessionIdle = 2 * time.Second // a session idle this long is decided anew
	shedHold    = 5 * time.Second // a shed session under way is decided anew after this long
	sessionBand = 0.15            // an admitted session stays admitted down to this much below its position
)

// targetLoad is one target's queue fill (0..1) and the requests that have
// left its queue so far (answered, failed or in flight).
type targetLoad struct {
	fill   float64
	served uint64
}

// admission is the overload controller. admit is called concurrently by
// the parser's shards; the controller runs in whichever call finds the
// interval elapsed.
type admission struct {
	now      func() time.Time
	probe    func([]targetLoad) []targetLoad
	pressure atomic.Pointer[func() float64] // capture backlog, 0..1; nil: none

	ratioBits atomic.Uint64 // float64 bits of the admitted fraction
	nextTick  atomic.Int64  // unix ns of the next control step
	offered   atomic.Uint64 // requests that reached admission
	active    atomic.Bool   // control on, or sessions still remembered

	mu          sync.Mutex // guards the rest
	controlling bool
	lastTick    int64
	lastOffered uint64
	last, cur   []targetLoad
	served      float64 // smoothed answer rate of the slowest target, /s
	arrived     float64 // smoothed arrival rate, /s
	endedAt     int64   // unix ns when control last ended
	sessions    []sessionSlot
}

// sessionSlot remembers one session's decision.
type sessionSlot struct {
	hash          uint64
	seen, decided int64 // unix ns: last request, last decision
	admitted      bool
}

func newAdmission(now func() time.Time, probe func([]targetLoad) []targetLoad) *admission {
	a := &admission{now: now, probe: probe}
	a.ratioBits.Store(math.Float64bits(1))
	return a
}

// ratio is the admitted fraction of the sample key space now.
func (a *admission) ratio() float64 { return math.Float64frombits(a.ratioBits.Load()) }

// tick runs the controller once the interval has passed.
func (a *admission) tick(now int64) {
	next := a.nextTick.Load()
	if now < next || !a.nextTick.CompareAndSwap(next, now+int64(overloadInterval)) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cur = a.probe(a.cur[:0])
	offered := a.offered.Load()
	dt := time.Duration(now - a.lastTick).Seconds()
	fill := 0.0
	for _, l := range a.cur {
		fill = max(fill, l.fill)
	}
	press := 0.0
	if f := a.pressure.Load(); f != nil {
		press = (*f)()
	}
	r := a.ratio()
	if !a.controlling && (fill >= overloadHigh || press >= pressureHigh) {
		a.controlling = true
		a.active.Store(true)
	}
	if press >= pressureHigh {
		// Capture falls behind: replay work takes the CPU the reader
		// needs. Shed more, whatever the shadow could take.
		r = max(overloadMin, r*pressureDecrease)
		a.ratioBits.Store(math.Float64bits(r))
	} else if a.controlling && len(a.last) == len(a.cur) && dt > 0 && offered > a.lastOffered {
		// The slowest target's answer rate, and what arrived.
		served := math.Inf(1)
		for i, l := range a.cur {
			d := 0.0
			if l.served > a.last[i].served { // in flight and answered may overlap for a moment
				d = float64(l.served - a.last[i].served)
			}
			served = min(served, d/dt)
		}
		arrived := float64(offered-a.lastOffered) / dt
		if a.arrived == 0 { // first interval under control
			a.served, a.arrived = served, arrived
		}
		a.served += overloadRateEWMA * (served - a.served)
		a.arrived += overloadRateEWMA * (arrived - a.arrived)
		want := a.served * (1 + overloadGain*(overloadTarget-fill)) / a.arrived
		if fill < overloadTarget {
			// The queue is short: the shadow is not what limits; a low
			// answer count only means few were sent. Never less.
			want = max(want, r)
		}
		if press > pressureLow {
			want = min(want, r) // capture still lags: no growth
		}
		want = min(want, r*overloadMaxGrow)
		w := overloadSmooth
		if fill >= overloadUrgent && want < r {
			w = 1 // the queue is about to overflow: no time to smooth
		}
		r = min(1, max(overloadMin, r+w*(want-r)))
		if fill <= overloadLow && r > 0.99 {
			r, a.controlling = 1, false
			a.served, a.arrived = 0, 0
			a.endedAt = now
		}
		a.ratioBits.Store(math.Float64bits(r))
	}
	a.last = append(a.last[:0], a.cur...)
	a.lastOffered, a.lastTick = offered, now
	if !a.controlling && a.active.Load() && now-a.endedAt > int64(sessionIdle) {
		// Control ended a while ago: the sessions under way then have had
		// the time to end; replay everything again.
		a.active.Store(false)
	}
}

// admit decides whether a request whose sample key hashes to h is
// replayed; threshold is the sampling threshold (of sampleScale) the key
// already passed.
func (a *admission) admit(h uint64, threshold uint64) bool {
	now, quiet := a.offer()
	return quiet || a.decide(h, threshold, now)
}

// offer counts an offered request, runs the control loop when due and
// reports whether no control is active (every request replayed, no hash
// needed), with the time it read.
func (a *admission) offer() (now int64, quiet bool) {
	now = a.now().UnixNano()
	a.offered.Add(1)
	a.tick(now)
	return now, !a.active.Load() // no overload lately: no session to keep whole
}

// decide is admit while control is active.
func (a *admission) decide(h uint64, threshold uint64, now int64) bool {
	r := a.ratio()
	pos := float64(h % sampleScale)
	limit := r * float64(threshold)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessions == nil {
		a.sessions = make([]sessionSlot, sessionSets*sessionWays)
	}
	set := a.sessions[(h%sessionSets)*sessionWays:][:sessionWays]
	oldest := 0
	for i := range set {
		s := &set[i]
		if s.hash == h && s.seen != 0 && now-s.seen < int64(sessionIdle) {
			switch {
			case s.admitted && pos >= limit*(1+sessionBand):
				s.admitted, s.decided = false, now
			case !s.admitted && now-s.decided >= int64(shedHold):
				// A key that never pauses is not kept out for ever.
				s.admitted, s.decided = pos < limit, now
			}
			s.seen = now
			return s.admitted
		}
		if s.seen < set[oldest].seen {
			oldest = i
		}
	}
	in := pos < limit
	set[oldest] = sessionSlot{hash: h, seen: now, decided: now, admitted: in}
	return in
}

// SetCapturePressure gives overload control a measure of how far capture
// lags (0..1, e.g. the ring buffer's fill): when it passes pressureHigh,
// fewer sessions are replayed so the capture path gets the CPU back. The
// pipeline sets it from the XDP reader's backlog.
func (r *Replayer) SetCapturePressure(f func() float64) { r.adm.pressure.Store(&f) }

// admitted is the hook in Request: it sheds an accepted request of a
// session outside the admitted fraction, counting it dropped "overload" for
// every target, and says whether to dispatch it.
func (r *Replayer) admitted(ex *httpx.Exchange) bool {
	now, quiet := r.adm.offer()
	if quiet {
		return true // the sample key is hashed only while control is active
	}
	var buf [64]byte
	key, _ := sampleKeyOf(r.sampleKey, ex, buf[:])
	if r.adm.decide(hashKey(key), r.threshold, now) {
		return true
	}
	for _, t := range r.targets {
		t.stats.dropped[dropOverload].Add(1)
	}
	return false
}

// targetLoads is the admission probe: each target's queue fill and the
// requests that have left its queue. Only first copies are counted: with
// --multiply a target's duplicates leave the queue with their first copy,
// so the first copies' rate compares with the arrival rate.
func (r *Replayer) targetLoads(out []targetLoad) []targetLoad {
	for _, t := range r.targets {
		l := targetLoad{}
		if c := cap(t.queue); c > 0 {
			l.fill = float64(len(t.queue)) / float64(c)
		}
		for i := range t.stats.replayed {
			l.served += t.stats.replayed[i].Load()
		}
		for i := range t.stats.failed {
			l.served += t.stats.failed[i].Load()
		}
		if n := t.stats.inflight.Load(); n > 0 {
			l.served += uint64(n)
		}
		out = append(out, l)
	}
	return out
}

// admittedCollector exports the admitted fraction.
type admittedCollector struct {
	a    *admission
	desc *prometheus.Desc
}

func newAdmittedCollector(a *admission) *admittedCollector {
	return &admittedCollector{a: a, desc: prometheus.NewDesc("shadowtap_replay_admitted_ratio",
		"Fraction of the sampled key space replayed now: below 1 while the replay queues are overloaded and whole sessions are shed (counted dropped \"overload\").",
		nil, nil)}
}

func (c *admittedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *admittedCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, c.a.ratio())
}
