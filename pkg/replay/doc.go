// Package replay is the stage after pkg/httpx and before pkg/verdict: it receives the HTTP
// exchanges rebuilt by pkg/httpx (it is an httpx.Sink), decides which requests
// may be repeated (method, path, consistent sampling, size), rewrites them for
// the shadow fleet (Host kept, X-Forwarded-*, hop-by-hop headers removed,
// marker header) and sends each to every configured target through a bounded
// per-target queue, rate limited. Each of a target's MaxInflight workers
// drives its own keep-alive connection synchronously (no http.Client or
// http.Transport): the request is written straight from the mirrored head
// (rewrite.go: the fields in production's order, checked as http.Transport
// checks them) and the response read by http.ReadResponse, with
// http.Transport's guards (a bound
// on the response head, no reuse of a connection that received bytes
// nobody asked for, an answer heard during the upload: see conn.go). It
// measures the shadow's answers (status, bytes, time to first byte, total
// time).
//
// # HTTPS shadows
//
// An https target is reached over TLS (HTTP/1.1 only) with Config.TLS: the
// roots it trusts (a --ca-file replaces the system pool), the client
// certificate it presents (mTLS), or no verification at all
// (--insecure-skip-verify, warned at start). The server name — sent as SNI
// and checked against the certificate — is the --host override's host name
// when set, so a TLS ingress that routes by name sees the name production's
// clients use, and the target URL's host otherwise.
//
// # Load multiplication
//
// With Config.Multiply F (GoReplay's "|200%"), each accepted request is sent
// to a target floor(F) or ceil(F) times: an extra copy when a hash of the
// request's identity (its connection and index on it) falls below the
// fraction of F, so the average is F and a request always gets the same
// count. The first copy is marked X-Shadowtap-Replay: 1 and is the only one
// compared; the others, duplicates marked 2, 3, …, are load only: counted
// apart (shadowtap_replay_duplicates_*), never joined. Below 1 a request may
// be sent 0 times: dropped "multiply" for that target. A copy that cannot be
// queued is dropped with every copy after it (the rest would fare the
// same). Duplicates take queue slots, rate tokens and workers like any
// request, and are observed in the latency histograms.
//
// # Comparison
//
// Replay keeps no comparison logic. With Config.Verdict set (the pipeline
// sets it whenever there are targets), it joins, for every request sent to
// at least one target, production's response (Response, from the mirror)
// with every target's outcome — an answer (status, header, the first
// CompareBodyBytes body bytes, an FNV-1a 64 hash and the length of the whole
// body, time to first byte) or a failure (connect, timeout, reset, error;
// stopped while draining) — and, once all are in, hands one
// verdict.Exchange to the comparison stage. Targets that dropped the request
// (queue, rate, stopped) are not part of it. A --baseline target is one more
// target whose answers are marked Baseline. Bodies held in joins are bounded
// by CompareBudget process-wide: an exchange that does not fit is counted
// uncompared "budget" for each target; a full join table counts
// "untracked", a request that cannot be rebuilt "invalid". Without a
// comparison stage nothing is joined, kept or hashed.
//
// # Timing
//
// Both histograms start when the worker begins sending the request (after it
// left the queue). shadowtap_replay_ttfb_seconds ("time to first byte") ends
// when the shadow's response head (status line and headers, after any 1xx
// interim responses, 101 excepted) has been read;
// shadowtap_replay_duration_seconds ends when the response body has been read
// to its end. Both are observed for replayed requests only, not failed ones.
// With pipelining, an answer's times start at the end of the previous answer
// of its batch (the first's at the batch's write start): see below.
//
// # Pipelining
//
// With Config.Pipeline N > 1 (--pipeline), a worker that finds more jobs
// waiting in its target's queue takes up to N at once, never waiting for
// more, writes their requests in one write and reads the answers in order
// (HTTP/1.1 pipelining, pipeline.go). A batch holds at most 64 KiB of
// requests, each body at most 64 KiB (a larger one is sent alone, as
// without pipelining), and a method other than GET, HEAD, OPTIONS or TRACE
// only as the first of a batch. Each answer ends its job as a single
// request's does. When the target ends a connection (EOF, reset, a
// Connection: close answer) before answering its batch whole, the
// unanswered requests are sent again one at a time on a new connection,
// and the target is sent one request at a time from then on: counted in
// shadowtap_replay_pipeline_fallbacks_total, logged once. A connection
// that has answered whole batches and then ends (a keep-alive request
// limit) is not taken for a target that cannot pipeline.
//
// The Sink methods never block the parser: where a target cannot keep up,
// requests are dropped and counted.
//
// # Bodies
//
// The Replayer is an httpx.HeadDecider: the method, path and sampling
// filters are applied when the request's head is parsed (WantBody, the
// decision kept in Exchange.Mark for Request), so the body of a request
// that will not be replayed is measured by the parser, never kept. The
// bodies kept count against the process's httpx.Budget (--body-budget)
// until every target is done with the request; a body beyond it is dropped
// by the parser and its request counted BodyBudget. Each target's queue is
// bounded in entries (Config.Queue) and in body bytes (Config.QueueBytes);
// a request that does not fit either is dropped "queue" for that target.
//
// # Overload
//
// Before a request is queued, admission control (overload.go) may shed it:
// once a target's queue passes half full, only a fraction of the sampled
// key space is replayed — set from what the slowest target answers over
// what arrives, steered to a quarter-full queue — so whole sessions (sample
// keys) are shed rather than random requests, a session under way keeps
// its decision, and the replay work stays within what the shadow takes.
// Shed requests count as dropped "overload" on every target; the fraction
// is the gauge shadowtap_replay_admitted_ratio.
//
// # Accounting
//
// Every exchange given to Request ends in exactly one outcome. Globally:
//
//	Requests = FilteredMethod + FilteredPath + SampledOut + BodyBudget + TooLarge + Accepted
//
// Every accepted request is offered to every target, so for each target
// (first copies only):
//
//	Accepted = Replayed (by status class) + Dropped (queue, rate, stopped, multiply, overload)
//	         + Failed (connect, timeout, drain, invalid, error, response_too_large)
//	         + Queued + InFlight
//
// and for its duplicates (copies beyond the first, Config.Multiply):
//
//	Duplicates = Replayed (by class) + Dropped (queue, rate, stopped)
//	           + Failed (by reason) + Queued + InFlight
//
// With a comparison stage, for each target:
//
//	Replayed + Failed = Compared + Uncompared + Awaiting
//
// (Awaiting: answers whose exchange still waits for production's response).
//
// Queued, InFlight and Awaiting are zero once Drain has returned and every
// Response has been given; Snapshot reads the counters one by one, so the
// identities are exact only when the replayer is quiescent.
// StatsSnapshot.Check verifies them.
package replay
