package verdict

import "time"

// SchemaVersion is the version of the /verdict document and of the diff
// log's lines. A change that removes or renames a field bumps it.
const SchemaVersion = 1

// Document is the /verdict document: served at GET /verdict on the metrics
// address and written by --verdict-out. `shadowtap report` and `shadowtap
// verdict` read it, and merge several (one per receiver) with Merge.
type Document struct {
	Schema    int       `json:"schema"`    // SchemaVersion
	Generated time.Time `json:"generated"` // when the document was made
	Started   time.Time `json:"started"`   // when the engine started (earliest of the merged documents)
	Receivers int       `json:"receivers"` // documents merged into this one (1 for a receiver's own)
	Totals    Totals    `json:"totals"`
	Routes    []Route   `json:"routes"`   // one per target and route, sorted by target then route
	Timeline  []Minute  `json:"timeline"` // compared and differing exchanges per minute, oldest first
	Ignored   Ignored   `json:"ignored"`  // the noise rules that applied before any baseline learning
}

// Totals sums every route of every target.
type Totals struct {
	Exchanges  uint64            `json:"exchanges"`  // compared exchanges
	Differing  uint64            `json:"differing"`  // compared exchanges with at least one difference after noise
	Kinds      map[Kind]uint64   `json:"kinds"`      // differing exchanges by kind (an exchange may count under several)
	Noise      map[Kind]uint64   `json:"noise"`      // differences discarded as noise learned from the baseline, by kind
	Uncompared map[string]uint64 `json:"uncompared"` // exchanges that could not be compared, by reason
}

// Route is one target's figures for one route template.
type Route struct {
	Target      string          `json:"target"`
	Route       string          `json:"route"` // "GET /users/{id}/posts", or "other" beyond --max-routes
	Exchanges   uint64          `json:"exchanges"`
	Differing   uint64          `json:"differing"`
	Kinds       map[Kind]uint64 `json:"kinds"`
	Noise       map[Kind]uint64 `json:"noise"`
	NoiseFields []NoiseField    `json:"noise_fields"` // the fields learned as noise on this route (at most 20)
	Latency     RouteLatency    `json:"latency"`
}

// RouteLatency holds both sides' latency histograms for a route.
type RouteLatency struct {
	Production Histogram `json:"production"`
	Shadow     Histogram `json:"shadow"`
}

// NoiseField is a field ignored on a route because it differed between
// production and the baseline.
type NoiseField struct {
	Kind   Kind   `json:"kind"`
	Field  string `json:"field"`
	Count  uint64 `json:"count"`  // shadow differences discarded because of it
	Source string `json:"source"` // "baseline" (learned on the route) or "baseline-exchange" (the baseline's answer to the same request differed)
}

// Minute is one minute of the timeline.
type Minute struct {
	Start     time.Time       `json:"start"`
	Exchanges uint64          `json:"exchanges"`
	Differing uint64          `json:"differing"`
	Kinds     map[Kind]uint64 `json:"kinds"`
}

// Ignored lists the noise rules given by defaults and flags.
type Ignored struct {
	Headers   []string `json:"headers"`    // default noise list plus --ignore-header
	JSONPaths []string `json:"json_paths"` // --ignore-json-path, as given (ROUTE=PATH or PATH)
	Baseline  string   `json:"baseline"`   // the --baseline target, "" when none
}

// DiffLogLine is one line of the --diff-log JSONL file: one differing
// exchange for one target. Query values are redacted; values of
// Authorization, Cookie, Set-Cookie and --redact-header headers are never
// written.
type DiffLogLine struct {
	Schema      int          `json:"schema"` // SchemaVersion
	Time        time.Time    `json:"time"`
	Target      string       `json:"target"`
	Route       string       `json:"route"`
	Method      string       `json:"method"`
	Path        string       `json:"path"` // with the query, its values replaced by "REDACTED"
	Kinds       []Kind       `json:"kinds"`
	Production  Side         `json:"production"`
	Shadow      Side         `json:"shadow"`
	Differences []Difference `json:"differences"`
}

// Side is one side's status and latency in a diff log line.
type Side struct {
	Status    int     `json:"status"`     // 0 when it did not answer
	LatencyMS float64 `json:"latency_ms"` // milliseconds
	Error     string  `json:"error,omitempty"`
}
