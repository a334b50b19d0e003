package httpx

import (
	"context"
	"log/slog"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
)

type gaveUpKind uint8

const (
	gaveUpNotHTTP gaveUpKind = iota
	gaveUpUpgrade
	gaveUpConnect
)

func (k gaveUpKind) String() string {
	switch k {
	case gaveUpUpgrade:
		return "upgrade"
	case gaveUpConnect:
		return "connect"
	}
	return "not_http"
}

// factory holds what every connection of a pipeline shares.
type factory struct {
	cfg     Config
	sink    Sink
	decider HeadDecider // sink's, when it implements it
	stats   *Stats
	log     *slog.Logger
	pool    *pool
}

// NewFactory returns the flow.HandlerFactory that parses each connection's
// two directions and hands exchanges to sink. stats is shared by all
// connections and shards (nil: counted nowhere); log may be nil.
func NewFactory(cfg Config, sink Sink, stats *Stats, log *slog.Logger) flow.HandlerFactory {
	if stats == nil {
		stats = new(Stats)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &factory{cfg: cfg.withDefaults(), sink: sink, stats: stats, log: log, pool: newPool()}
	f.decider, _ = sink.(HeadDecider)
	stats.budget.Store(f.cfg.BodyBudget)
	return f.newConn
}

func (f *factory) newConn(key flow.Key, _ uint64, midStream bool) flow.Handler {
	c := &conn{f: f, key: key}
	c.req.init(c, false)
	c.resp.init(c, true)
	if midStream {
		// Joined in the middle: both directions look for a start line and
		// pairing waits for a quiet point (see the package doc).
		c.req.st, c.resp.st = stResync, stResync
		c.uncertain = true
	}
	f.stats.conns.Add(1)
	return c
}

// debug logs an event of a connection. Only addresses and the direction are
// logged, never header values.
func (f *factory) debug(msg string, c *conn, resp bool) {
	if !f.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	dir := event.Request
	if resp {
		dir = event.Response
	}
	f.log.LogAttrs(context.Background(), slog.LevelDebug, msg,
		slog.String("client", c.key.Client.String()),
		slog.String("server", c.key.Server.String()),
		slog.Uint64("vni", uint64(c.key.VNI)),
		slog.String("dir", dir.String()))
}

// conn is the flow.Handler of one connection: two parsers and the pairing
// of their messages.
type conn struct {
	f         *factory
	key       flow.Key
	req, resp half

	pend      queue // emitted requests waiting for their responses, oldest first
	seq       uint64
	skip      int         // responses still to come for requests ended by overflow
	uncertain bool        // pairing lost: new requests pair only from a quiet point
	early     []*Exchange // final responses that came before their requests completed, oldest first
	ahead     int         // responses ahead of their requests beyond MaxPending, dropped: their requests end with RespGap
	dead      bool

	n     tally     // per-message counts not yet added to the shared Stats
	spare *Exchange // released during this handler call, for the next message; see recycle
}

// recycle drops the parser's reference to ex. When it was the only one, ex
// is kept for the next message of this connection instead of going through
// the pool, until the end of the handler call (endCall): a segment of
// pipelined requests then reuses one exchange without a pool round trip.
func (c *conn) recycle(ex *Exchange) {
	if c.spare != nil || ex.refs.Load() != 1 {
		ex.Release()
		return
	}
	ex.reset()
	c.spare = ex
}

// next returns an exchange for a new message.
func (c *conn) next() *Exchange {
	if ex := c.spare; ex != nil {
		c.spare = nil
		return ex
	}
	return c.f.pool.get()
}

// endCall ends a handler call: the spare exchange goes back to the pool
// and the counts to the shared Stats.
func (c *conn) endCall() {
	if c.spare != nil {
		c.spare.Release()
		c.spare = nil
	}
	c.n.flush(c.f.stats)
}

// Data implements flow.Handler.
func (c *conn) Data(dir event.Direction, b []byte, ts uint64) {
	if dir == event.Response {
		c.resp.data(b, ts)
	} else {
		c.req.data(b, ts)
	}
	c.endCall()
}

// Gap implements flow.Handler: the message in progress in dir is dropped and
// dir resynchronises.
func (c *conn) Gap(dir event.Direction, _ uint64) {
	p := &c.req
	if dir == event.Response {
		p = &c.resp
	}
	if p.st == stDead || p.st == stPaused {
		return
	}
	if p.inMessage() {
		if p.resp {
			c.f.stats.respGap.Add(1)
		} else {
			c.f.stats.reqGap.Add(1)
		}
	}
	p.lost()
	c.endCall()
}

// Close implements flow.Handler.
func (c *conn) Close(_ flow.CloseReason, _ uint64) {
	if c.resp.st == stUntilClose {
		c.resp.complete(c.resp.last)
	}
	if c.req.inMessage() {
		c.f.stats.reqIncomplete.Add(1)
	}
	if c.resp.inMessage() {
		c.f.stats.respIncomplete.Add(1)
	}
	c.req.drop()
	c.resp.drop()
	c.req.st, c.resp.st = stDead, stDead
	c.dropEarly()
	c.flush(RespClosed)
	c.dead = true
	c.req.line, c.resp.line, c.pend = nil, nil, queue{}
	c.endCall()
}

// requestStarts is called when a request begins; it says whether the
// request may be paired with a response.
func (c *conn) requestStarts() bool {
	if !c.uncertain {
		return true
	}
	// Quiet point: nothing is owed on the response side and it sits between
	// two messages, so the next response starts after this request did.
	if c.pend.len() == 0 && len(c.early) == 0 && c.ahead == 0 && c.skip == 0 && c.resp.st == stIdle {
		c.uncertain = false
		return true
	}
	return false
}

// nextRespMethod is the method of the request the next response answers,
// or nil when unknown.
func (c *conn) nextRespMethod() []byte {
	switch {
	case c.skip > 0:
		return nil
	case c.pend.len() > 0:
		return c.pend.front().Req.Method
	case c.req.m != nil && c.req.head:
		return c.req.m.Method
	}
	return nil
}

// requestDone emits a complete request and queues it for its response.
func (c *conn) requestDone(ex *Exchange, pairable bool) {
	ex.Conn, ex.Seq = c.key, c.seq
	c.seq++
	r := &ex.Req
	c.n.requests++
	c.f.sink.Request(ex)
	if string(r.Method) == "CONNECT" && c.req.st == stIdle {
		c.req.st = stPaused // tunnel bytes may follow
		if !pairable {
			c.finish(ex, RespGap)
			c.giveUp(gaveUpConnect)
			return
		}
	}
	switch {
	case !pairable:
		c.finish(ex, RespGap)
	case len(c.early) > 0:
		h := c.early[0]
		c.early[0] = nil
		c.early = c.early[:copy(c.early, c.early[1:])]
		c.pair(ex, h)
	case c.ahead > 0:
		// Its response came before it and was dropped.
		c.ahead--
		c.finish(ex, RespGap)
	default:
		if c.pend.len() >= c.f.cfg.MaxPending {
			old := c.pend.pop()
			c.skip++
			c.finish(old, RespOverflow)
		}
		c.pend.push(ex)
	}
}

// responseDone pairs a complete response (held in h.resp) with its request.
func (c *conn) responseDone(h *Exchange) {
	r := &h.resp
	if r.Status >= 100 && r.Status < 200 && r.Status != 101 {
		c.n.interim++
		c.recycle(h)
		return
	}
	c.n.responses++
	switch {
	case c.skip > 0:
		c.skip--
	case c.pend.len() > 0:
		ex := c.pend.pop()
		c.pair(ex, h)
		return
	case !c.uncertain && c.ahead == 0 && len(c.early) < c.f.cfg.MaxPending && (c.req.m == nil || c.req.pairable):
		// On a connection whose order is certain, a response with no
		// request waiting answers one still arriving or not yet seen
		// (the directions were reordered): hold it for that request.
		c.early = append(c.early, h)
		return
	case !c.uncertain && (c.req.m == nil || c.req.pairable):
		// Too many responses ahead of their requests: drop this one, and
		// make sure its request does not take a later response.
		c.ahead++
	}
	c.n.unpaired++
	upgraded := r.Status == 101
	h.Release()
	if upgraded {
		c.giveUp(gaveUpUpgrade)
	}
}

// pair gives ex the response held in h and ends the exchange.
func (c *conn) pair(ex, h *Exchange) {
	ex.resp, h.resp = h.resp, ex.resp
	ex.sb, h.sb = h.sb, ex.sb
	c.recycle(h)
	ex.Resp = &ex.resp
	ex.Reason = RespOK
	if ex.resp.TooLarge {
		ex.Reason = RespTooLarge
	}
	upgraded := ex.resp.Status == 101
	connect := string(ex.Req.Method) == "CONNECT"
	c.n.answered++
	c.f.sink.Response(ex)
	c.recycle(ex)
	switch {
	case upgraded:
		c.giveUp(gaveUpUpgrade)
	case connect:
		c.giveUp(gaveUpConnect)
	}
}

// finish ends an exchange without a response.
func (c *conn) finish(ex *Exchange, why NoResponse) {
	switch why {
	case RespGap:
		c.n.noRespGap++
	case RespClosed:
		c.n.noRespClosed++
	case RespGaveUp:
		c.n.noRespGaveUp++
	case RespOverflow:
		c.n.noRespOverflow++
	}
	ex.Resp, ex.Reason = nil, why
	c.f.sink.Response(ex)
	c.recycle(ex)
}

func (c *conn) flush(why NoResponse) {
	for c.pend.len() > 0 {
		c.finish(c.pend.pop(), why)
	}
}

func (c *conn) dropEarly() {
	c.ahead = 0
	for i, h := range c.early {
		c.n.unpaired++
		h.Release()
		c.early[i] = nil
	}
	c.early = c.early[:0]
}

// requestsLost: request bytes were lost (gap, malformed, head too large). The
// requests already queued keep their place (their responses come first), but
// an unknown number of requests may have gone with the bytes, so requests
// from here on pair only from a quiet point.
func (c *conn) requestsLost() {
	c.uncertain = true
	c.dropEarly()
}

// responsesLost: response bytes were lost. Any number of responses may have
// gone with them, so every request waiting, and the one in progress, ends
// with RespGap; later requests pair only from a quiet point.
func (c *conn) responsesLost() {
	c.uncertain = true
	c.skip = 0
	c.req.pairable = false
	c.dropEarly()
	c.flush(RespGap)
}

// giveUp stops parsing the connection.
func (c *conn) giveUp(kind gaveUpKind) {
	if c.dead {
		return
	}
	c.dead = true
	st := c.f.stats
	switch kind {
	case gaveUpUpgrade:
		st.gaveUpUpgrade.Add(1)
	case gaveUpConnect:
		st.gaveUpConn.Add(1)
	default:
		st.gaveUpNotHTTP.Add(1)
	}
	if c.req.inMessage() {
		st.reqIncomplete.Add(1)
	}
	if c.resp.inMessage() {
		st.respIncomplete.Add(1)
	}
	c.req.drop()
	c.resp.drop()
	c.req.st, c.resp.st = stDead, stDead
	c.dropEarly()
	c.flush(RespGaveUp)
	if c.f.log.Enabled(context.Background(), slog.LevelDebug) {
		c.f.log.LogAttrs(context.Background(), slog.LevelDebug, "httpx: connection given up",
			slog.String("client", c.key.Client.String()),
			slog.String("server", c.key.Server.String()),
			slog.String("why", kind.String()))
	}
}
