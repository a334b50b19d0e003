package verdict

import (
	"context"
	"log/slog"
	"net/http"
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

// Engine is the comparison stage. Submit never blocks; Run compares.
type Engine struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns an engine.
func New(cfg Config, log *slog.Logger) (*Engine, error) {
	return &Engine{cfg: cfg, log: log}, nil
}

// Submit hands over one replayed exchange (the engine owns it and its bodies
// from now on). It never blocks: when the queue is full the exchange is
// counted uncompared, reason "busy".
func (e *Engine) Submit(x *Exchange) {}

// Uncompared counts an exchange for target that replay could not hand over,
// with the reason (e.g. "budget").
func (e *Engine) Uncompared(target, reason string) {}

// Run compares submitted exchanges until Close has been called and the
// queue is empty, or ctx ends.
func (e *Engine) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Close stops intake (later Submits count as uncompared "stopped"), lets Run
// finish the queue (up to ctx), and flushes and closes the diff log.
func (e *Engine) Close(ctx context.Context) error { return nil }

// Document returns the current /verdict document.
func (e *Engine) Document() *Document {
	return &Document{Schema: SchemaVersion, Generated: time.Now(), Receivers: 1}
}

// WriteFile writes the document to path atomically (temporary file, rename).
func (e *Engine) WriteFile(path string) error { return nil }

// Handler serves GET /verdict.
func (e *Engine) Handler() http.Handler { return http.NotFoundHandler() }

// Collectors returns the engine's Prometheus collectors.
func (e *Engine) Collectors() []prometheus.Collector { return nil }

// Totals returns compared and differing exchanges so far (for the summary line).
func (e *Engine) Totals() (compared, differing uint64) { return 0, 0 }
