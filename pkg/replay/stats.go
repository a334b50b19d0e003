package replay

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Class is an HTTP status class.
type Class uint8

const (
	ClassNone  Class = iota // no status: production's response is absent
	Class1xx                // 100-199
	Class2xx                // 200-299
	Class3xx                // 300-399
	Class4xx                // 400-499
	Class5xx                // 500-599
	ClassOther              // a status outside 100-599
	NumClasses
)

// ClassOf returns the class of an HTTP status code.
func ClassOf(status int) Class {
	if status < 100 || status > 599 {
		return ClassOther
	}
	return Class(status / 100)
}

func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case Class1xx, Class2xx, Class3xx, Class4xx, Class5xx:
		return string([]byte{'0' + byte(c), 'x', 'x'})
	default:
		return "other"
	}
}

// Stats holds the replayer's outcome counters. All fields are updated
// atomically; read them with Snapshot.
type Stats struct {
	requests       atomic.Uint64
	filteredMethod atomic.Uint64
	filteredPath   atomic.Uint64
	sampledOut     atomic.Uint64
	tooLarge       atomic.Uint64
	bodyBudget     atomic.Uint64
	accepted       atomic.Uint64
	keyMissing     atomic.Uint64 // sampled on the client address because the key was absent
	comparing      bool
	targets        []*targetStats
}

// targetStats are the counters of one target.
type targetStats struct {
	name     string
	baseline bool
	replayed [NumClasses]atomic.Uint64
	dropped  [numDrop]atomic.Uint64
	failed   [numFail]atomic.Uint64
	discard  [numDiscard]atomic.Uint64 // connections, not requests
	inflight atomic.Int64
	// Pipelining (Config.Pipeline; not outcomes): writes that carried
	// several requests, the requests they carried, and whether the target
	// stopped being sent batches (0 or 1).
	batches, batched, pipeFallbacks atomic.Uint64
	queued                          func() int // jobs in the queue, duplicates included
	// request body bytes of the jobs in the queue, duplicates included
	queuedBytes func() int64
	dup         dupStats

	// With a comparison stage: answers (and failures) handed to it in an
	// exchange, counted uncompared by replay, and waiting in a join.
	compared, uncompared atomic.Uint64
	awaiting             atomic.Int64
}

// dupStats count the duplicates of Multiply: the copies of a request beyond
// the first. Each ends in one outcome, as first copies do, but is never
// compared.
type dupStats struct {
	due      atomic.Uint64 // copies beyond the first the multiplier asked for
	replayed [NumClasses]atomic.Uint64
	dropped  [numDrop]atomic.Uint64 // never dropMultiply
	failed   [numFail]atomic.Uint64
	queued   atomic.Int64
	inflight atomic.Int64
}

type dropReason uint8

const (
	dropQueue    dropReason = iota // the target's queue was full
	dropRate                       // beyond MaxRPS
	dropStopped                    // arrived after Drain stopped intake
	dropMultiply                   // a multiplier below 1 sent this request 0 times
	dropOverload                   // its session was shed by overload control (overload.go)
	numDrop
)

var dropNames = [numDrop]string{"queue", "rate", "stopped", "multiply", "overload"}

type failReason uint8

const (
	failConnect  failReason = iota // could not connect
	failTimeout                    // Timeout passed before the end of the response
	failDrain                      // cancelled by Drain's deadline or Run's context
	failInvalid                    // the mirrored request cannot be rebuilt
	failError                      // any other error (reset, malformed response)
	failTooLarge                   // the response head exceeded MaxResponseHeaderBytes
	numFail
)

var failNames = [numFail]string{"connect", "timeout", "drain", "invalid", "error", "response_too_large"}

// discardReason says why a kept connection was closed before its reuse.
type discardReason uint8

const (
	discardUnsolicited discardReason = iota // bytes arrived that no request asked for
	discardClosed                           // the shadow closed it while idle
	numDiscard
)

var discardNames = [numDiscard]string{"unsolicited", "closed"}

// StatsSnapshot is a plain copy of Stats.
type StatsSnapshot struct {
	Requests         uint64 // exchanges given to Request
	FilteredMethod   uint64 // method not in Methods
	FilteredPath     uint64 // path not included, or excluded
	SampledOut       uint64 // outside the sample
	TooLarge         uint64 // the parser flagged the request too large to replay
	BodyBudget       uint64 // the parser dropped the body: beyond the process's body budget (--body-budget)
	Accepted         uint64 // passed every filter: offered to every target
	SampleKeyMissing uint64 // sampled on the client address: key header or cookie absent (not an outcome)
	Comparing        bool   // a comparison stage is configured (Config.Verdict)
	Targets          []TargetSnapshot
}

// TargetSnapshot is the outcome counts of one target.
type TargetSnapshot struct {
	Target string
	// Replayed counts the shadow's answers by status class (index Class).
	Replayed                                  [NumClasses]uint64
	DroppedQueue, DroppedRate, DroppedStopped uint64
	DroppedMultiply                           uint64 // Multiply below 1: sent 0 times
	DroppedOverload                           uint64 // shed by overload control, whole sessions
	FailedConnect, FailedTimeout, FailedDrain uint64
	FailedInvalid, FailedError                uint64
	FailedResponseTooLarge                    uint64
	Queued, InFlight                          uint64 // not yet ended
	// QueuedBytes is the request body bytes of the jobs in the queue
	// (duplicates included), at most Config.QueueBytes.
	QueuedBytes uint64
	// Kept connections closed before their reuse (not request outcomes).
	DiscardedUnsolicited, DiscardedClosed uint64
	// Pipelining (Config.Pipeline; not request outcomes): writes that
	// carried several requests, the requests they carried, and 1 once the
	// target ended a connection in the middle of a batch and is sent one
	// request at a time since.
	PipelineBatches, PipelinedRequests, PipelineFallbacks uint64
	// Baseline is the --baseline target.
	Baseline bool
	// With a comparison stage, every answered or failed request ends in
	// one of: Compared (handed to the stage in an exchange, answer or
	// failure), Uncompared (counted by replay: untracked, budget, invalid)
	// or Awaiting (its exchange still waits for production's response or
	// another target's answer).
	Compared, Uncompared, Awaiting uint64
	// Duplicates are the copies beyond the first sent with Multiply; the
	// fields above count first copies only.
	Duplicates DuplicateSnapshot
}

// DuplicateSnapshot is the outcome counts of one target's duplicates: the
// copies of a request beyond the first that Multiply sends. Each copy ends
// in exactly one outcome; none is compared.
type DuplicateSnapshot struct {
	Due                                       uint64 // copies beyond the first the multiplier asked for
	Replayed                                  [NumClasses]uint64
	DroppedQueue, DroppedRate, DroppedStopped uint64
	FailedConnect, FailedTimeout, FailedDrain uint64
	FailedInvalid, FailedError                uint64
	FailedResponseTooLarge                    uint64
	Queued, InFlight                          uint64 // not yet ended
}

// ReplayedTotal is the number of duplicates the target answered.
func (d DuplicateSnapshot) ReplayedTotal() uint64 {
	var n uint64
	for _, v := range d.Replayed {
		n += v
	}
	return n
}

// Dropped is the number of duplicates not sent.
func (d DuplicateSnapshot) Dropped() uint64 {
	return d.DroppedQueue + d.DroppedRate + d.DroppedStopped
}

// Failed is the number of duplicates sent or attempted without an answer.
func (d DuplicateSnapshot) Failed() uint64 {
	return d.FailedConnect + d.FailedTimeout + d.FailedDrain + d.FailedInvalid + d.FailedError + d.FailedResponseTooLarge
}

// ReplayedTotal is the number of requests the target answered.
func (t TargetSnapshot) ReplayedTotal() uint64 {
	var n uint64
	for _, v := range t.Replayed {
		n += v
	}
	return n
}

// Dropped is the number of requests not sent to the target.
func (t TargetSnapshot) Dropped() uint64 {
	return t.DroppedQueue + t.DroppedRate + t.DroppedStopped + t.DroppedMultiply + t.DroppedOverload
}

// Failed is the number of requests sent or attempted without an answer.
func (t TargetSnapshot) Failed() uint64 {
	return t.FailedConnect + t.FailedTimeout + t.FailedDrain + t.FailedInvalid + t.FailedError + t.FailedResponseTooLarge
}

// Check verifies the accounting identities (see the package documentation).
// It is exact only when the replayer is quiescent, e.g. after Drain.
func (s StatsSnapshot) Check() error {
	var errs []error
	if sum := s.FilteredMethod + s.FilteredPath + s.SampledOut + s.TooLarge + s.BodyBudget + s.Accepted; sum != s.Requests {
		errs = append(errs, fmt.Errorf("requests %d != filtered_method %d + filtered_path %d + sampled_out %d + too_large %d + body_budget %d + accepted %d (= %d)",
			s.Requests, s.FilteredMethod, s.FilteredPath, s.SampledOut, s.TooLarge, s.BodyBudget, s.Accepted, sum))
	}
	for _, t := range s.Targets {
		if sum := t.ReplayedTotal() + t.Dropped() + t.Failed() + t.Queued + t.InFlight; sum != s.Accepted {
			errs = append(errs, fmt.Errorf("target %s: accepted %d != replayed %d + dropped %d + failed %d + queued %d + in flight %d (= %d)",
				t.Target, s.Accepted, t.ReplayedTotal(), t.Dropped(), t.Failed(), t.Queued, t.InFlight, sum))
		}
		d := t.Duplicates
		if sum := d.ReplayedTotal() + d.Dropped() + d.Failed() + d.Queued + d.InFlight; sum != d.Due {
			errs = append(errs, fmt.Errorf("target %s: duplicates %d != replayed %d + dropped %d + failed %d + queued %d + in flight %d (= %d)",
				t.Target, d.Due, d.ReplayedTotal(), d.Dropped(), d.Failed(), d.Queued, d.InFlight, sum))
		}
		if !s.Comparing {
			continue
		}
		if sum := t.Compared + t.Uncompared + t.Awaiting; sum != t.ReplayedTotal()+t.Failed() {
			errs = append(errs, fmt.Errorf("target %s: replayed %d + failed %d != compared %d + uncompared %d + awaiting %d (= %d)",
				t.Target, t.ReplayedTotal(), t.Failed(), t.Compared, t.Uncompared, t.Awaiting, sum))
		}
	}
	return errors.Join(errs...)
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	out := StatsSnapshot{
		Requests:         s.requests.Load(),
		FilteredMethod:   s.filteredMethod.Load(),
		FilteredPath:     s.filteredPath.Load(),
		SampledOut:       s.sampledOut.Load(),
		TooLarge:         s.tooLarge.Load(),
		BodyBudget:       s.bodyBudget.Load(),
		Accepted:         s.accepted.Load(),
		SampleKeyMissing: s.keyMissing.Load(),
		Comparing:        s.comparing,
		Targets:          make([]TargetSnapshot, len(s.targets)),
	}
	for i, t := range s.targets {
		ts := &out.Targets[i]
		ts.Target = t.name
		for c := range t.replayed {
			ts.Replayed[c] = t.replayed[c].Load()
		}
		ts.DroppedQueue = t.dropped[dropQueue].Load()
		ts.DroppedRate = t.dropped[dropRate].Load()
		ts.DroppedStopped = t.dropped[dropStopped].Load()
		ts.DroppedMultiply = t.dropped[dropMultiply].Load()
		ts.DroppedOverload = t.dropped[dropOverload].Load()
		ts.FailedConnect = t.failed[failConnect].Load()
		ts.FailedTimeout = t.failed[failTimeout].Load()
		ts.FailedDrain = t.failed[failDrain].Load()
		ts.FailedInvalid = t.failed[failInvalid].Load()
		ts.FailedError = t.failed[failError].Load()
		ts.FailedResponseTooLarge = t.failed[failTooLarge].Load()
		ts.DiscardedUnsolicited = t.discard[discardUnsolicited].Load()
		ts.DiscardedClosed = t.discard[discardClosed].Load()
		ts.PipelineBatches, ts.PipelinedRequests = t.batches.Load(), t.batched.Load()
		ts.PipelineFallbacks = t.pipeFallbacks.Load()
		ts.Duplicates = t.dup.snapshot()
		// The queue holds both; the duplicates in it are counted apart.
		ts.Queued = uint64(max(int64(t.queued())-int64(ts.Duplicates.Queued), 0))
		if t.queuedBytes != nil {
			ts.QueuedBytes = uint64(max(t.queuedBytes(), 0))
		}
		if n := t.inflight.Load(); n > 0 {
			ts.InFlight = uint64(n)
		}
		ts.Baseline = t.baseline
		ts.Compared, ts.Uncompared = t.compared.Load(), t.uncompared.Load()
		if n := t.awaiting.Load(); n > 0 {
			ts.Awaiting = uint64(n)
		}
	}
	return out
}

func (d *dupStats) snapshot() DuplicateSnapshot {
	var out DuplicateSnapshot
	out.Due = d.due.Load()
	for c := range d.replayed {
		out.Replayed[c] = d.replayed[c].Load()
	}
	out.DroppedQueue = d.dropped[dropQueue].Load()
	out.DroppedRate = d.dropped[dropRate].Load()
	out.DroppedStopped = d.dropped[dropStopped].Load()
	out.FailedConnect = d.failed[failConnect].Load()
	out.FailedTimeout = d.failed[failTimeout].Load()
	out.FailedDrain = d.failed[failDrain].Load()
	out.FailedInvalid = d.failed[failInvalid].Load()
	out.FailedError = d.failed[failError].Load()
	out.FailedResponseTooLarge = d.failed[failTooLarge].Load()
	out.Queued = uint64(max(d.queued.Load(), 0))
	out.InFlight = uint64(max(d.inflight.Load(), 0))
	return out
}
