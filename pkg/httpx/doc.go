// Package httpx is the pipeline stage after reassembly (pkg/flow): an
// incremental HTTP/1.x parser for both directions of a connection that pairs
// production's responses with their requests and hands Exchanges to the
// replay stage through a Sink.
//
// NewFactory returns the flow.HandlerFactory; each connection gets a
// request-direction and a response-direction parser that consume whatever
// bytes arrive and keep only the current message: its head (at most
// Config.MaxHeaderBytes) and its body (at most Config.MaxBodyBytes; beyond,
// the message is TooLarge and the rest of the body is skipped unbuffered).
// Exchanges and their buffers come from a pool, so steady-state parsing does
// not allocate. Every outcome is counted in Stats.
//
// # Framing
//
// Requests: chunked (Transfer-Encoding: chunked only), else Content-Length,
// else no body. Responses: none for 1xx, 204, 304 and answers to HEAD;
// chunked when the last coding is chunked; else Content-Length; else the body
// runs until the connection closes and is delivered at Close. 1xx responses
// other than 101 (100-continue, 103) are interim: counted and skipped. A 101,
// or the answer to CONNECT, ends parsing of the connection (counted), as do
// bytes that cannot start the connection's first message (e.g. a TLS
// ClientHello). A malformed message later on is dropped (counted) and handled
// like a gap.
//
// # Gaps and resynchronisation
//
// Gap(dir) drops the message in progress in dir (counted) and dir scans for
// the next start line: a request line with a known method (METHOD SP target
// SP HTTP/1.x CRLF), or a status line (HTTP/1.x SP 3DIGIT ...). Scanning keeps
// one candidate line at most and gives the connection up after
// Config.MaxResyncBytes without finding one. A connection joined mid-stream
// starts in this state.
//
// # Pairing
//
// Responses pair with requests in order. Lost bytes make the order uncertain,
// and a wrong pair is worse than none, so:
//
//   - Response-side loss (gap, malformed response, head too large): any
//     number of responses may have been lost, so every request waiting for a
//     response, and the one in progress, ends with RespGap.
//   - Request-side loss: requests already complete keep their place (their
//     responses come first), but an unknown number of requests may have been
//     lost, whose responses will come.
//   - After either, the connection is uncertain: a new request is paired only
//     if it starts at a quiet point, when no request is waiting, no response
//     is owed, and the response parser is synchronised between two messages.
//     Requests that start otherwise end with RespGap; responses with no
//     request to pair are counted as unpaired and dropped. Pairing resumes on
//     the first request after a quiet point. This assumes the client does not
//     pipeline across the loss; a mid-stream join is handled the same way.
//   - A final response that completes while its request is still arriving
//     (an early answer to Expect: 100-continue, or reordering between the
//     directions) is held and paired when the request completes. On a
//     connection whose order is certain, so is a response that completes
//     before its request has started (the directions reordered: several
//     socket readers, an NLB): up to Config.MaxPending are held, and the
//     requests of any beyond end with RespGap.
//   - More than Config.MaxPending waiting requests: the oldest ends with
//     RespOverflow and its response, when it comes, is skipped.
//   - Close: a body-until-close response is completed; every waiting request
//     ends with RespClosed.
package httpx
