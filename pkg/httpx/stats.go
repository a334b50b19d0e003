package httpx

import "sync/atomic"

// Config bounds the parser. Zero fields take their defaults.
type Config struct {
	// MaxHeaderBytes bounds a message head (start line and header fields,
	// and separately a chunked body's trailer). Default 64 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes bounds the body kept for a message; beyond it the message
	// is TooLarge and the rest of its body is skipped unbuffered. Default 16 MiB.
	MaxBodyBytes int64
	// MaxPending bounds the requests of one connection waiting for their
	// responses (pipelining). Beyond it the oldest ends with RespOverflow and
	// its response, when it comes, is skipped. Default 64.
	MaxPending int
	// MaxResyncBytes bounds the bytes skipped in one direction while looking
	// for the next message start after a gap or a mid-stream join; beyond it
	// the connection is given up as not HTTP. Default MaxHeaderBytes+MaxBodyBytes.
	MaxResyncBytes int64
	// ResponseBodyKeep keeps at most this many bytes of each production
	// response body in Response.Body (de-chunked, content coding still
	// applied) and, for a longer body, hashes the whole of it
	// (Response.BodyHash, FNV-1a 64), for the comparison stage. 0, the default, keeps nothing and hashes nothing:
	// the body is only measured (Response.BodyLen is always counted), which
	// saves most of the parser's copying and memory. KeepWholeBody keeps
	// every body up to MaxBodyBytes.
	ResponseBodyKeep int64
	// BodyBudget bounds the bytes of request bodies held across the
	// process (see Budget): share one among every factory of a process.
	// Nil: a budget of DefaultBodyBudget for this factory.
	BodyBudget *Budget
}

// KeepWholeBody as Config.ResponseBodyKeep keeps whole response bodies (up
// to MaxBodyBytes).
const KeepWholeBody int64 = 1<<63 - 1

func (c Config) withDefaults() Config {
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 64
	}
	if c.MaxResyncBytes <= 0 {
		c.MaxResyncBytes = int64(c.MaxHeaderBytes) + c.MaxBodyBytes
	}
	if c.ResponseBodyKeep < 0 {
		c.ResponseBodyKeep = 0
	}
	if c.BodyBudget == nil {
		c.BodyBudget = NewBudget(DefaultBodyBudget)
	}
	return c
}

// Stats counts every outcome of the parser. One Stats is shared by all
// shards; the counters are atomic. A connection adds its per-message counts
// at the end of each handler call, so a Snapshot taken during a call may
// lack the messages of that call.
//
// Accounting, once every connection is closed:
//
//	Requests  = Answered + NoRespGap + NoRespClosed + NoRespGaveUp + NoRespOverflow
//	Responses = Answered + ResponsesUnpaired
//
// Requests and Responses include the TooLarge ones; Responses excludes the
// skipped interim (1xx) responses, counted in Interim.
type Stats struct {
	conns                                    atomic.Uint64
	requests, responses                      atomic.Uint64
	reqTooLarge, respTooLarge                atomic.Uint64
	reqGap, respGap                          atomic.Uint64
	reqMalformed, respMalformed              atomic.Uint64
	reqIncomplete, respIncomplete            atomic.Uint64
	reqResyncs, respResyncs                  atomic.Uint64
	reqSkipped, respSkipped                  atomic.Uint64
	gaveUpNotHTTP, gaveUpUpgrade, gaveUpConn atomic.Uint64
	unpaired, interim, answered              atomic.Uint64
	noRespGap, noRespClosed, noRespGaveUp    atomic.Uint64
	noRespOverflow                           atomic.Uint64
	bodySkipped, bodySkippedBytes            atomic.Uint64
	overBudget, headsOverBudget              atomic.Uint64
	budget                                   atomic.Pointer[Budget] // the factory's, for BodyBudgetHeld
}

// StatsSnapshot is a copy of the counters at one moment.
type StatsSnapshot struct {
	Conns uint64 // connections handled

	Requests          uint64 // requests handed to Sink.Request (TooLarge included)
	Responses         uint64 // final responses parsed (TooLarge included, 1xx interim excluded)
	RequestsTooLarge  uint64 // requests beyond MaxHeaderBytes or MaxBodyBytes
	ResponsesTooLarge uint64 // responses beyond the limits

	RequestsGap          uint64 // requests in progress dropped at a gap in the request direction
	ResponsesGap         uint64 // responses in progress dropped at a gap in the response direction
	RequestsMalformed    uint64 // requests dropped as malformed (then resync)
	ResponsesMalformed   uint64 // responses dropped as malformed (then resync)
	RequestsIncomplete   uint64 // requests in progress when the connection closed or was given up
	ResponsesIncomplete  uint64 // responses in progress when the connection closed or was given up
	RequestResyncs       uint64 // request lines found by scanning after a gap or mid-stream join
	ResponseResyncs      uint64 // status lines found by scanning
	RequestSkippedBytes  uint64 // bytes skipped while scanning the request direction
	ResponseSkippedBytes uint64 // bytes skipped while scanning the response direction

	GaveUpNotHTTP uint64 // connections given up: not HTTP (e.g. TLS), or nothing found to resync on
	GaveUpUpgrade uint64 // connections given up after a 101 Switching Protocols
	GaveUpConnect uint64 // connections given up after a CONNECT

	ResponsesUnpaired uint64 // final responses with no request to pair with (dropped)
	Interim           uint64 // 1xx interim responses skipped (100-continue, 103, ...)
	Answered          uint64 // exchanges ended with Resp set (RespOK or RespTooLarge)
	NoRespGap         uint64 // exchanges ended with RespGap (pairing uncertain after a gap)
	NoRespClosed      uint64 // exchanges ended with RespClosed
	NoRespGaveUp      uint64 // exchanges ended with RespGaveUp
	NoRespOverflow    uint64 // exchanges ended with RespOverflow

	// Request bodies not kept (not outcomes: the requests are still
	// handed over and counted in Requests).
	RequestsBodySkipped     uint64 // bodies measured, not kept: the sink did not want them (e.g. a method not replayed)
	RequestBodySkippedBytes uint64 // bytes of those bodies
	RequestsOverBudget      uint64 // bodies dropped because keeping them would have gone beyond Config.BodyBudget
	HeadsOverBudget         uint64 // messages dropped (counted too large) because their head in progress went beyond what Config.BodyBudget had left
	BodyBudgetHeld          uint64 // bytes of request bodies held now (parser and replay), at most the budget
}

// Snapshot returns the current counters.
func (s *Stats) Snapshot() StatsSnapshot {
	out := StatsSnapshot{
		Conns:                s.conns.Load(),
		Requests:             s.requests.Load(),
		Responses:            s.responses.Load(),
		RequestsTooLarge:     s.reqTooLarge.Load(),
		ResponsesTooLarge:    s.respTooLarge.Load(),
		RequestsGap:          s.reqGap.Load(),
		ResponsesGap:         s.respGap.Load(),
		RequestsMalformed:    s.reqMalformed.Load(),
		ResponsesMalformed:   s.respMalformed.Load(),
		RequestsIncomplete:   s.reqIncomplete.Load(),
		ResponsesIncomplete:  s.respIncomplete.Load(),
		RequestResyncs:       s.reqResyncs.Load(),
		ResponseResyncs:      s.respResyncs.Load(),
		RequestSkippedBytes:  s.reqSkipped.Load(),
		ResponseSkippedBytes: s.respSkipped.Load(),
		GaveUpNotHTTP:        s.gaveUpNotHTTP.Load(),
		GaveUpUpgrade:        s.gaveUpUpgrade.Load(),
		GaveUpConnect:        s.gaveUpConn.Load(),
		ResponsesUnpaired:    s.unpaired.Load(),
		Interim:              s.interim.Load(),
		Answered:             s.answered.Load(),
		NoRespGap:            s.noRespGap.Load(),
		NoRespClosed:         s.noRespClosed.Load(),
		NoRespGaveUp:         s.noRespGaveUp.Load(),
		NoRespOverflow:       s.noRespOverflow.Load(),

		RequestsBodySkipped:     s.bodySkipped.Load(),
		RequestBodySkippedBytes: s.bodySkippedBytes.Load(),
		RequestsOverBudget:      s.overBudget.Load(),
		HeadsOverBudget:         s.headsOverBudget.Load(),
	}
	if b := s.budget.Load(); b != nil {
		out.BodyBudgetHeld = uint64(max(b.Held(), 0))
	}
	return out
}

// tally counts a connection's per-message events between two flushes. The
// handler counts in these plain fields and adds them to the shared Stats
// once at the end of each call (Data, Gap, Close), which keeps locked
// instructions off the per-message path; a Snapshot sees every call that
// has returned.
type tally struct {
	requests, responses, interim, answered, unpaired      uint32
	noRespGap, noRespClosed, noRespGaveUp, noRespOverflow uint32
	bodySkipped, overBudget                               uint32
	bodySkippedBytes                                      uint64
}

func (t *tally) flush(s *Stats) {
	if *t == (tally{}) {
		return
	}
	add := func(a *atomic.Uint64, n uint32) {
		if n != 0 {
			a.Add(uint64(n))
		}
	}
	add(&s.requests, t.requests)
	add(&s.responses, t.responses)
	add(&s.interim, t.interim)
	add(&s.answered, t.answered)
	add(&s.unpaired, t.unpaired)
	add(&s.noRespGap, t.noRespGap)
	add(&s.noRespClosed, t.noRespClosed)
	add(&s.noRespGaveUp, t.noRespGaveUp)
	add(&s.noRespOverflow, t.noRespOverflow)
	add(&s.bodySkipped, t.bodySkipped)
	add(&s.overBudget, t.overBudget)
	if t.bodySkippedBytes != 0 {
		s.bodySkippedBytes.Add(t.bodySkippedBytes)
	}
	*t = tally{}
}
