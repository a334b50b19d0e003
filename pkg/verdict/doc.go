// Package verdict is the comparison stage, the last one of the data path:
//
//	... --> replay (pkg/replay) --> verdict --> metrics, diff log, /verdict
//
// Replay hands it, for every replayed request, production's response (rebuilt
// from the mirror by pkg/httpx: no extra call to production) and each target's
// answer; replay keeps no comparison logic of its own. The engine compares
// what users would notice — status, headers, Set-Cookie scope, decoded bodies
// (JSON structurally) — per route template, subtracts noise (a default list,
// ignore flags, and what differs between production and a --baseline running
// the old code), and keeps per-route latency histograms for both sides.
//
// Its outputs are data other tools read: Prometheus series, a JSONL diff log
// and a versioned JSON document served at GET /verdict and written by
// --verdict-out. `shadowtap report` and `shadowtap verdict` read those.
//
// The engine never blocks replay: Submit hands an exchange to a bounded queue
// and counts it uncompared (reason "busy") when the queue is full. One Run
// goroutine compares. For every target but the baseline, each exchange
// handed over ends in exactly one of compared (by route) or uncompared (by
// reason: busy, stopped, production's missing reason, or replay's own via
// Uncompared), so the counts add up.
//
// Everything is bounded whatever the traffic: routes per target
// (--max-routes, then "other"), latency series (the first LatencyRoutes
// routes of a target, then "other"), noise fields per route, uncompared
// reasons per target, the timeline (720 minutes), the diff log (lines per
// route and kind per minute, bytes with one rotated file) and route labels
// (256 bytes, valid UTF-8).
package verdict
