package verdict

import (
	"net/http"
	"time"
)

// Kind is a kind of difference. The names are an interface: metric labels,
// the diff log, the /verdict document and the docs use them.
type Kind string

// Exchange-level kinds, and the route-level latency finding.
const (
	KindStatus      Kind = "status"       // status codes differ
	KindHeader      Kind = "header"       // a compared header is missing on one side or differs
	KindCookie      Kind = "cookie"       // a Set-Cookie differs in scope, flags or lifetime, or is set on one side only
	KindBody        Kind = "body"         // decoded bodies differ (JSON structurally)
	KindShadowError Kind = "shadow_error" // the shadow did not answer while production did
	KindLatency     Kind = "latency"      // route level: the shadow is slower (judged by `shadowtap verdict`)
)

// ExchangeKinds returns the kinds an exchange can differ by, in report order.
func ExchangeKinds() []Kind {
	return []Kind{KindStatus, KindHeader, KindCookie, KindBody, KindShadowError}
}

// Difference is one field that differs between production's response and
// another answer. Values of secrets (cookie values, Authorization, redacted
// headers) never appear in Production or Shadow.
type Difference struct {
	Kind Kind `json:"kind"`
	// Field names what differs: "status"; a canonical header name
	// ("Cache-Control"); a cookie name and attribute ("sid; Domain", or the
	// cookie name alone when it is set on one side only); an RFC 9535
	// normalized JSON path ("$.items[3].price") or "body" for other media.
	Field       string `json:"field"`
	Production  string `json:"production"`            // production's value ("" when absent)
	Shadow      string `json:"shadow"`                // the other side's value ("" when absent)
	Explanation string `json:"explanation,omitempty"` // one line on the consequence (cookies always have one)
}

// Key identifies the field for noise learning: a field that differs between
// production and the baseline is noise for the same key on the shadow.
func (d Difference) Key() string { return string(d.Kind) + " " + d.Field }

// Response is one side's answer as the comparison needs it.
type Response struct {
	Status int
	Header http.Header // canonical keys; Set-Cookie lines as received
	// Body holds the body with transfer coding removed (de-chunked) but
	// content coding (gzip, br, ...) still applied, at most the compare
	// limit. BodyComplete says whether it is the whole body; when it is not,
	// BodyHash (FNV-1a 64 of the whole body as in Body) and BodyLen are all
	// that can be compared.
	Body         []byte
	BodyLen      int64
	BodyComplete bool
	BodyHash     uint64
	// Latency: production's from the mirror (capture time of the request's
	// last segment to the response's first); the shadow's from the request
	// written to the first response byte.
	Latency time.Duration
}

// Answer is one target's answer to a replayed request.
type Answer struct {
	Target   string    // the target's name (its URL, redacted)
	Baseline bool      // the --baseline target (old code): its differences from production are noise
	Response *Response // nil when the target did not answer
	// Error says why Response is nil: "connect", "timeout", "reset",
	// "error" (the shadow's fault: a shadow_error difference) or "stopped"
	// (shadowtap was shutting down: not compared).
	Error string
}

// Exchange is one replayed request with production's response and every
// target's answer, as replay hands it to the engine.
type Exchange struct {
	Time   time.Time // capture time of the request's last byte
	Method string
	Path   string // request path, without the query
	Query  string // raw query (values are redacted before they are written anywhere)
	Host   string // the request's Host header: Location headers naming it are compared without scheme and host
	// Production is nil when production's response was not seen;
	// ProductionMissing then says why (gap, closed, too_large, gave_up,
	// overflow, untracked): the exchange is counted uncompared for that reason.
	Production        *Response
	ProductionMissing string
	Answers           []Answer
	// Done, if set, is called once when the engine no longer needs the
	// exchange: after comparing it, or when it is counted uncompared
	// ("busy", "stopped"). Replay releases the bodies' share of
	// --compare-budget then, so the budget covers the engine's queue too.
	Done func()
}

// done calls x.Done once.
func (x *Exchange) done() {
	if x.Done != nil {
		f := x.Done
		x.Done = nil
		f()
	}
}
