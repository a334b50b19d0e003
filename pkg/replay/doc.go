// Package replay is the last stage of the data path: it receives the HTTP
// exchanges rebuilt by pkg/httpx (it is an httpx.Sink), decides which requests
// may be repeated (method, path, consistent sampling, size), rewrites them for
// the shadow fleet (Host kept, X-Forwarded-*, hop-by-hop headers removed,
// marker header) and sends each to every configured target through a bounded
// per-target queue, rate limited. Each of a target's MaxInflight workers
// drives its own keep-alive connection synchronously (no http.Client or
// http.Transport): the request is written by (*http.Request).Write and the
// response read by http.ReadResponse, with http.Transport's guards (a bound
// on the response head, no reuse of a connection that received bytes
// nobody asked for, an answer heard during the upload: see conn.go). It
// measures
// the shadow's answers (status, bytes, time to first byte, total time) and
// compares their status classes and body lengths with production's.
//
// # Timing
//
// Both histograms start when the worker begins sending the request (after it
// left the queue). shadowtap_replay_ttfb_seconds ("time to first byte") ends
// when the shadow's response head (status line and headers, after any 1xx
// interim responses, 101 excepted) has been read;
// shadowtap_replay_duration_seconds ends when the response body has been read
// to its end. Both are observed for replayed requests only, not failed ones.
//
// The Sink methods never block the parser: where a target cannot keep up,
// requests are dropped and counted.
//
// # Accounting
//
// Every exchange given to Request ends in exactly one outcome. Globally:
//
//	Requests = FilteredMethod + FilteredPath + SampledOut + TooLarge + Accepted
//
// Every accepted request is offered to every target, so for each target:
//
//	Accepted = Replayed (by status class) + Dropped (queue, rate, stopped)
//	         + Failed (connect, timeout, drain, invalid, error, response_too_large)
//	         + Queued + InFlight
//
// Queued and InFlight are zero once Drain has returned; Snapshot reads the
// counters one by one, so the identity is exact only when the replayer is
// quiescent. StatsSnapshot.Check verifies it.
package replay
