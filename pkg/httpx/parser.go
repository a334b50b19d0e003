package httpx

import (
	"bytes"
)

// state of one direction's parser.
type state uint8

const (
	stIdle       state = iota // between messages, synchronised
	stHead                    // reading a head
	stBody                    // Content-Length body
	stChunkSize               // chunk-size line (with extensions)
	stChunkData               // chunk data
	stChunkEnd                // CRLF after chunk data
	stTrailer                 // trailer section of a chunked body
	stUntilClose              // response body delimited by the end of the connection
	stResync                  // scanning for the next start line
	stPaused                  // ignoring input (request side after CONNECT)
	stDead                    // connection given up
)

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 4096

// half parses one direction of a connection.
type half struct {
	c    *conn
	resp bool
	st   state

	ex   *Exchange // message in progress (for a response: a holder of resp/sb)
	b    *bufs     // its buffers
	m    *Request  // request in progress (nil on the response side)
	r    *Response // response in progress (nil on the request side)
	head bool      // the head of the message in progress is parsed

	nl       uint8   // head end detection: 1 after LF, 2 after LF CR
	resume   int     // head bytes already parsed (lines), 0: none; see wholeHead
	resumeFr framing // framing of the lines parsed
	resumeAt int     // cap of the head buffer they were parsed in
	headHint int     // length of the last head parsed by wholeHead
	early    int     // first-line check: method bytes (request) or "HTTP/1." bytes matched (response); -1 done
	remain   int64   // body or chunk bytes still to come
	bodyLen  int64
	bodyHash uint64 // FNV-1a 64 of the response body so far, once it is longer than ResponseBodyKeep
	hashing  bool   // the body went beyond ResponseBodyKeep: bodyHash is running
	tooLarge bool
	skipBody bool  // request: the body is measured, not kept (unwanted, or over the budget)
	overBdgt bool  // request: the body went beyond the body budget
	reserved bool  // request: the whole Content-Length body is held of the budget already
	headHeld int64 // bytes of the head in progress taken from the budget (beyond headFree)
	chunked  bool
	cr       bool   // CR seen (chunk end, chunk-size line)
	csDigits int    // chunk-size digits
	csVal    uint64 // chunk size
	csExt    bool   // in chunk extensions
	csLen    int    // chunk-size line length
	trLine   int    // bytes on the current trailer line
	trTotal  int    // trailer bytes

	mt      matcher
	line    []byte // resync candidate line
	lineTs  uint64
	skipped int64 // bytes skipped since the last resync

	parsedAny bool // a message was parsed or resynchronised on this direction
	pairable  bool // request side: the request in progress may be paired
	upgrade   bool // request side: the last request carried Upgrade
	last      uint64
}

func (p *half) init(c *conn, resp bool) {
	p.c, p.resp = c, resp
	p.mt = matcher{resp: resp, max: c.f.cfg.MaxHeaderBytes}
	if resp && p.mt.max > maxStatusLine {
		p.mt.max = maxStatusLine
	}
}

func (p *half) inMessage() bool {
	return p.st >= stHead && p.st <= stUntilClose
}

// data consumes in-order bytes of this direction.
func (p *half) data(b []byte, ts uint64) {
	for len(b) > 0 {
		switch p.st {
		case stIdle:
			i := 0
			for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
				i++
			}
			b = b[i:]
			if len(b) == 0 {
				return
			}
			p.begin(ts)
		case stHead:
			b = p.headBytes(b, ts)
		case stBody, stChunkData:
			b = p.bodyBytes(b, ts)
		case stChunkSize:
			b = p.chunkSize(b, ts)
		case stChunkEnd:
			c := b[0]
			b = b[1:]
			switch {
			case c == '\r' && !p.cr:
				p.cr = true
			case c == '\n':
				p.st, p.csDigits, p.csVal, p.csExt, p.csLen, p.cr = stChunkSize, 0, 0, false, 0, false
			default:
				p.malformed(ts)
			}
		case stTrailer:
			b = p.trailer(b, ts)
		case stUntilClose:
			p.last = ts
			p.appendBody(b)
			return
		case stResync:
			b = p.resync(b, ts)
		default: // stPaused, stDead
			return
		}
	}
}

// begin starts a message at a synchronised position.
func (p *half) begin(ts uint64) {
	p.ex = p.c.next()
	if p.resp {
		p.b, p.r = &p.ex.sb, &p.ex.resp
		p.r.Start = ts
	} else {
		p.b, p.m = &p.ex.qb, &p.ex.Req
		p.m.Start = ts
		p.pairable = p.c.requestStarts()
	}
	p.st, p.head, p.nl, p.early, p.resume = stHead, false, 0, 0, 0
	p.remain, p.bodyLen, p.tooLarge, p.chunked, p.cr = 0, 0, false, false, false
	p.skipBody, p.overBdgt, p.reserved = false, false, false
	p.bodyHash, p.hashing = 0, false
	p.last = ts
}

// drop abandons the message in progress.
func (p *half) drop() {
	p.unholdHead()
	if p.ex != nil {
		p.ex.Release()
		p.ex, p.b, p.m, p.r = nil, nil, nil, nil
	}
	p.head = false
}

// toResync starts scanning for the next start line.
func (p *half) toResync() {
	p.drop()
	p.st = stResync
	p.line = p.line[:0]
	p.mt.reset()
	p.skipped = 0
}

// firstLine checks, as the bytes come, that a synchronised message starts
// like HTTP: a token then SP (request), or "HTTP/1." (response). It reports
// false on bytes that cannot start a message.
func (p *half) firstLine(b []byte) bool {
	for _, c := range b {
		if p.resp {
			if c != "HTTP/1."[p.early] {
				return false
			}
			p.early++
			if p.early == 7 {
				p.early = -1
				return true
			}
			continue
		}
		if c == ' ' {
			if p.early == 0 {
				return false
			}
			p.early = -1
			return true
		}
		if !tchar[c] || p.early >= maxMethod {
			return false
		}
		p.early++
	}
	return true
}

func (p *half) headBytes(b []byte, ts uint64) []byte {
	if len(p.b.head) == 0 && fastHeads {
		// A head that wholeHead parses has a start line that firstLine
		// accepts, so it goes first.
		if rest, ok := p.wholeHead(b, ts); ok {
			return rest
		}
	}
	if p.early >= 0 && !p.firstLine(b) {
		p.notStart(ts)
		return nil
	}
	i, end := 0, -1
	for i < len(b) {
		switch p.nl {
		case 1:
			if b[i] == '\n' {
				end = i
			} else if b[i] == '\r' {
				p.nl = 2
				i++
				continue
			}
		case 2:
			if b[i] == '\n' {
				end = i
			}
		}
		if end >= 0 {
			break
		}
		p.nl = 0
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			i = len(b)
			break
		}
		i += j + 1
		p.nl = 1
	}
	n := len(b)
	if end >= 0 {
		n = end + 1
	}
	if len(p.b.head)+n > p.c.f.cfg.MaxHeaderBytes {
		p.headTooLarge(ts, false)
		return nil
	}
	if end < 0 && !p.holdHead(len(p.b.head)+n) {
		p.headTooLarge(ts, true)
		return nil
	}
	p.b.appendHead(b[:n])
	if end >= 0 {
		p.headDone(ts)
	}
	return b[n:]
}

// fastHeads enables wholeHead; tests turn it off to compare the two paths.
var fastHeads = true

// wholeHead is the fast path of headBytes for a head that starts at b[0]:
// it parses the head within the bytes at hand, which finds its end in the
// same pass, and keeps a copy. It reports false, having changed nothing,
// when the head does not parse within b (malformed, or too large);
// headBytes then finds the end of the head line by line as before and
// parses the copy.
//
// A head that parses is exactly the one headBytes would find: every line
// before the blank line starts with a token character, so no earlier LF is
// followed by LF or CRLF.
//
// When the head buffer has room (it keeps its capacity from message to
// message), what may be the head is copied into it first and parsed there,
// so the views are into it at once; otherwise b is parsed and the views are
// moved to the copy (rebase).
//
// A head that goes on beyond b (the last of a segment) is copied whole, as
// headBytes would, and the lines parsed are kept (p.resume) so that headDone
// parses only the rest.
func (p *half) wholeHead(b []byte, ts uint64) ([]byte, bool) {
	src := b
	// Copy a little more than the last head was long.
	if lim := min(len(b), cap(p.b.head), maxCopyAhead, p.headHint+p.headHint/4+64); lim > 0 {
		src = append(p.b.head[:0], b[:lim]...) // within capacity: no allocation
	}
	var r Request
	var q Response
	var fields []Field
	var fr framing
	var n int
	var err error
	for {
		if p.resp {
			fields, fr, n, err = parseResponseHeadIn(&q, src, p.b.fields[:0])
		} else {
			fields, fr, n, err = parseRequestHeadIn(&r, src, p.b.fields[:0])
		}
		if err != errIncomplete || len(src) == len(b) {
			break
		}
		src = b // the head goes on beyond the copy: parse b itself
	}
	end := n
	switch {
	case err == nil && n <= p.c.f.cfg.MaxHeaderBytes:
	case err == errIncomplete && len(b) <= p.c.f.cfg.MaxHeaderBytes && p.holdHead(len(b)):
		// b holds no end of head (its lines so far are all fields), so
		// headBytes would copy it all, its scan state after b's last bytes.
		end = len(b)
		switch {
		case b[len(b)-1] == '\n':
			p.nl = 1
		case len(b) >= 2 && b[len(b)-2] == '\n' && b[len(b)-1] == '\r':
			p.nl = 2
		}
	default:
		clear(fields) // no views into b may stay behind
		return nil, false
	}
	if len(src) > 0 && &src[0] != &b[0] {
		p.b.head = src[:end] // parsed in the copy
	} else {
		if p.b.grow(b[:end]) {
			// as appendHead, but the fields parsed are moved below
			clear(fields[len(fields):cap(fields)])
		}
		head := p.b.head
		r.Method, r.Target, r.Proto = rebase(head, b, r.Method), rebase(head, b, r.Target), rebase(head, b, r.Proto)
		q.Proto, q.Reason = rebase(head, b, q.Proto), rebase(head, b, q.Reason)
		for i := range fields {
			f := &fields[i]
			f.Name, f.Value = rebase(head, b, f.Name), rebase(head, b, f.Value)
		}
	}
	if p.resp {
		p.r.Proto, p.r.Status, p.r.Reason = q.Proto, q.Status, q.Reason
	} else {
		p.m.Method, p.m.Target, p.m.Proto = r.Method, r.Target, r.Proto
	}
	p.b.fields = fields
	if err != nil {
		p.resume, p.resumeFr, p.resumeAt = n, fr, cap(p.b.head)
		p.early = -1 // the start line is complete and valid
		return nil, true
	}
	p.headHint = n
	p.head = true
	p.framed(fr, ts)
	return b[n:], true
}

// maxCopyAhead bounds the bytes wholeHead copies before it knows where the
// head ends, so that a buffer grown by one large head does not make every
// later head copy a whole segment.
const maxCopyAhead = 1024

// rebase returns the view of dst that v is of src, dst holding a copy of a
// prefix of src that covers v. v is a reslice of src that keeps its end of
// capacity, so its offset in src is cap(src)-cap(v).
func rebase(dst, src, v []byte) []byte {
	if v == nil {
		return nil
	}
	off := cap(src) - cap(v)
	return dst[off : off+len(v)]
}

// notStart handles bytes that cannot start a message on a synchronised
// stream: the connection's first message gives it up as not HTTP; later it
// is a malformed message.
func (p *half) notStart(ts uint64) {
	if !p.parsedAny {
		p.drop()
		kind := gaveUpNotHTTP
		if !p.resp && p.upgrade {
			kind = gaveUpUpgrade
		}
		p.c.giveUp(kind)
		return
	}
	p.malformed(ts)
}

// malformed drops the message in progress and resynchronises; pairing
// becomes uncertain as after a gap.
func (p *half) malformed(ts uint64) {
	st := p.c.f.stats
	if p.resp {
		st.respMalformed.Add(1)
	} else {
		st.reqMalformed.Add(1)
		if p.upgrade {
			// Bytes of the upgraded protocol overtook the 101.
			p.drop()
			p.c.giveUp(gaveUpUpgrade)
			return
		}
	}
	p.c.f.debug("httpx: malformed message", p.c, p.resp)
	p.lost()
}

// lost resynchronises this direction after losing bytes of it (gap,
// malformed message, head beyond the limit) and makes pairing uncertain.
func (p *half) lost() {
	p.toResync()
	if p.resp {
		p.c.responsesLost()
	} else {
		p.c.requestsLost()
	}
}

// headFree is the part of a head in progress that does not count against
// the budget: a head that arrives whole, or whose first segment is not
// longer, takes nothing from it.
const headFree = 2048

// holdHead makes the budget cover a head in progress of size bytes beyond
// headFree, or reports false when it cannot.
func (p *half) holdHead(size int) bool {
	need := int64(size-headFree) - p.headHeld
	if need <= 0 {
		return true
	}
	if !p.c.f.cfg.BodyBudget.take(need) {
		return false
	}
	p.headHeld += need
	return true
}

// unholdHead gives back the budget of the head in progress: it is
// complete, or dropped.
func (p *half) unholdHead() {
	if p.headHeld != 0 {
		p.c.f.cfg.BodyBudget.give(p.headHeld)
		p.headHeld = 0
	}
}

// headTooLarge ends a message whose head went beyond MaxHeaderBytes, or,
// overBudget, whose head in progress the budget could not cover.
func (p *half) headTooLarge(ts uint64, overBudget bool) {
	p.unholdHead()
	st := p.c.f.stats
	if overBudget {
		st.headsOverBudget.Add(1)
	}
	ex := p.ex
	p.ex, p.b, p.m, p.r = nil, nil, nil, nil
	if p.resp {
		st.respTooLarge.Add(1)
		ex.sb.head = ex.sb.head[:0]
		ex.resp = Response{TooLarge: true, Start: ex.resp.Start, End: ts}
		p.st = stResync
		p.c.responseDone(ex)
	} else {
		st.reqTooLarge.Add(1)
		ex.qb.head = ex.qb.head[:0]
		ex.Req = Request{TooLarge: true, OverBudget: overBudget, Start: ex.Req.Start, End: ts}
		p.st = stResync
		p.c.requestDone(ex, p.pairable)
	}
	if p.st == stResync { // not given up meanwhile
		p.lost()
	}
}

// headDone parses a complete head and chooses how the body is framed.
func (p *half) headDone(ts uint64) {
	var fr framing
	var err error
	p.head = true
	switch {
	case p.resume > 0 && cap(p.b.head) == p.resumeAt:
		// The start line and the first fields were parsed by wholeHead in
		// this buffer (not moved since: same capacity); parse the rest.
		p.b.fields, fr, _, err = parseFields(p.b.head[p.resume:], p.b.fields, p.resumeFr)
		if err == nil && !p.resp {
			err = requestFraming(p.b.fields, fr)
		}
	case p.resp:
		p.b.fields, fr, err = parseResponseHead(p.r, p.b.head, p.b.fields[:0])
	default:
		p.b.fields, fr, err = parseRequestHead(p.m, p.b.head, p.b.fields[:0])
	}
	p.resume = 0
	if err != nil {
		p.notStart(ts)
		return
	}
	p.framed(fr, ts)
}

// framed chooses how the body of the message whose head was just parsed is
// framed.
func (p *half) framed(fr framing, ts uint64) {
	p.unholdHead() // the head is complete
	cfg := &p.c.f.cfg
	if p.resp {
		p.r.Head, p.r.Fields = p.b.head, p.b.fields
		method := p.c.nextRespMethod()
		s := p.r.Status
		switch {
		case s < 200 || s == 204 || s == 304 || string(method) == "HEAD":
			p.complete(ts)
			return
		case string(method) == "CONNECT" && s < 300:
			p.complete(ts) // a tunnel follows; the pairing gives the connection up
			return
		case fr.chunked:
			p.chunked = true
		case fr.te:
			p.st = stUntilClose
			return
		case fr.length >= 0:
			p.remain = fr.length
		default:
			p.st = stUntilClose
			return
		}
	} else {
		p.m.Head, p.m.Fields = p.b.head, p.b.fields
		p.upgrade = fr.upgrade
		if d := p.c.f.decider; d != nil {
			// Decided at the head: a body that will not be used is
			// measured as it comes, never kept.
			p.ex.Conn = p.c.key
			p.skipBody = !d.WantBody(p.ex)
		}
		switch {
		case fr.chunked:
			p.chunked = true
		case fr.length >= 0:
			p.remain = fr.length
		}
	}
	if p.chunked {
		p.st, p.csDigits, p.csVal, p.csExt, p.csLen, p.cr = stChunkSize, 0, 0, false, 0, false
		return
	}
	if p.remain > cfg.MaxBodyBytes {
		p.tooLarge = true
	}
	if !p.resp && p.remain > 0 && !p.tooLarge && !p.skipBody {
		// A body of known length that will be kept: take its share of
		// the budget and its buffer at once, so that it is not copied
		// from buffer to larger buffer as it grows.
		if !p.ex.holdBody(cfg.BodyBudget, p.remain) {
			p.skipBody, p.overBdgt = true, true
		} else {
			p.reserved = true
			if int64(cap(p.b.body)) < p.remain {
				p.b.body = make([]byte, 0, p.remain)
			}
		}
	}
	if p.remain == 0 {
		p.complete(ts)
		return
	}
	p.st = stBody
}

func (p *half) appendBody(b []byte) {
	p.bodyLen += int64(len(b))
	if p.tooLarge {
		return
	}
	if p.bodyLen > p.c.f.cfg.MaxBodyBytes {
		p.tooLarge = true
		p.dropBody()
		return
	}
	if !p.resp {
		switch {
		case p.reserved:
		case p.skipBody:
			if !p.overBdgt {
				p.c.n.bodySkippedBytes += uint64(len(b))
			}
			return
		case !p.ex.holdBody(p.c.f.cfg.BodyBudget, int64(len(b))):
			// Beyond the process's budget for held bodies: the
			// body is dropped, the rest measured.
			p.skipBody, p.overBdgt = true, true
			p.dropBody()
			return
		}
	} else {
		keep := p.c.f.cfg.ResponseBodyKeep
		if keep == 0 {
			return // measured, not kept
		}
		room := keep - int64(len(p.b.body))
		if int64(len(b)) > room {
			// Beyond what is kept: only the hash of the whole body can
			// be compared. Body holds every byte so far until now.
			if !p.hashing {
				p.bodyHash, p.hashing = HashAdd(HashInit, p.b.body), true
			}
			p.bodyHash = HashAdd(p.bodyHash, b)
			b = b[:max(room, 0)]
		}
	}
	p.b.body = append(p.b.body, b...)
}

// dropBody forgets the body kept so far: its buffer, when larger than the
// pool keeps, goes to the GC, and a request's share of the body budget is
// given back.
func (p *half) dropBody() {
	if cap(p.b.body) > maxPooledBuf {
		p.b.body = nil
	} else {
		p.b.body = p.b.body[:0]
	}
	if !p.resp {
		p.ex.unholdBody()
		p.reserved = false
	}
}

func (p *half) bodyBytes(b []byte, ts uint64) []byte {
	n := int64(len(b))
	if n > p.remain {
		n = p.remain
	}
	p.appendBody(b[:n])
	p.remain -= n
	if p.remain == 0 {
		if p.st == stChunkData {
			p.st, p.cr = stChunkEnd, false
		} else {
			p.complete(ts)
		}
	}
	return b[n:]
}

func (p *half) chunkSize(b []byte, ts uint64) []byte {
	for i, c := range b {
		p.csLen++
		if p.csLen > maxChunkLine {
			p.malformed(ts)
			return nil
		}
		switch {
		case c == '\n':
			if p.csDigits == 0 {
				p.malformed(ts)
				return nil
			}
			if p.csVal == 0 {
				p.st, p.trLine, p.trTotal = stTrailer, 0, 0
				return b[i+1:]
			}
			p.st, p.remain = stChunkData, int64(p.csVal)
			return b[i+1:]
		case p.cr:
			p.malformed(ts) // CR not followed by LF
			return nil
		case c == '\r':
			p.cr = true
		case p.csExt:
			// chunk extensions are skipped
		case c == ';' || c == ' ' || c == '\t':
			p.csExt = true
		default:
			v := unhex(c)
			if v < 0 || p.csDigits >= 15 {
				p.malformed(ts)
				return nil
			}
			p.csVal = p.csVal<<4 | uint64(v)
			p.csDigits++
		}
	}
	return nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (p *half) trailer(b []byte, ts uint64) []byte {
	for i, c := range b {
		p.trTotal++
		if p.trTotal > p.c.f.cfg.MaxHeaderBytes {
			p.malformed(ts)
			return nil
		}
		switch c {
		case '\n':
			if p.trLine == 0 {
				p.complete(ts)
				return b[i+1:]
			}
			p.trLine = 0
		case '\r':
		default:
			p.trLine++
		}
	}
	return nil
}

// complete hands the finished message to the connection.
func (p *half) complete(ts uint64) {
	ex, b := p.ex, p.b
	p.ex, p.b, p.m, p.r, p.head = nil, nil, nil, nil, false
	p.st = stIdle
	p.parsedAny = true
	var body []byte
	if len(b.body) > 0 && !p.tooLarge {
		body = b.body
	}
	if p.resp {
		r := &ex.resp
		r.End, r.Body, r.BodyLen, r.TooLarge = ts, body, p.bodyLen, p.tooLarge
		r.BodyComplete, r.BodyHash = false, 0
		if keep := p.c.f.cfg.ResponseBodyKeep; keep > 0 && !p.tooLarge {
			r.BodyComplete = !p.hashing
			if p.hashing {
				r.BodyHash = p.bodyHash
			}
		}
		if p.tooLarge {
			p.c.f.stats.respTooLarge.Add(1)
		}
		p.c.responseDone(ex)
		return
	}
	r := &ex.Req
	r.End, r.Body, r.Chunked, r.TooLarge = ts, body, p.chunked, p.tooLarge
	r.BodyLen, r.OverBudget = p.bodyLen, p.overBdgt && !p.tooLarge
	r.BodySkipped = p.skipBody && !p.overBdgt
	switch {
	case p.tooLarge:
		p.c.f.stats.reqTooLarge.Add(1)
	case r.OverBudget:
		p.c.n.overBudget++
	case r.BodySkipped && p.bodyLen > 0:
		p.c.n.bodySkipped++
	}
	p.c.requestDone(ex, p.pairable)
}

// resync scans for the next start line without buffering more than one
// candidate line.
func (p *half) resync(b []byte, ts uint64) []byte {
	var skipped int64
	defer func() {
		if skipped > 0 {
			if p.resp {
				p.c.f.stats.respSkipped.Add(uint64(skipped))
			} else {
				p.c.f.stats.reqSkipped.Add(uint64(skipped))
			}
		}
	}()
	max := p.c.f.cfg.MaxResyncBytes
	for i := 0; i < len(b); i++ {
		if len(p.line) == 0 {
			j := i
			if p.resp {
				k := bytes.IndexByte(b[i:], 'H')
				if k < 0 {
					j = len(b)
				} else {
					j = i + k
				}
			} else {
				for j < len(b) && !methodStart[b[j]] {
					j++
				}
			}
			skipped += int64(j - i)
			p.skipped += int64(j - i)
			if p.skipped > max {
				p.c.giveUp(gaveUpNotHTTP)
				return nil
			}
			if j == len(b) {
				return nil
			}
			i = j
			p.lineTs = ts
			p.mt.reset()
		}
		p.line = append(p.line, b[i])
		r := p.mt.check(p.line, len(p.line)-1)
		if r == mFail {
			n := p.restart()
			skipped += int64(n)
			p.skipped += int64(n)
			if p.skipped > max {
				p.c.giveUp(gaveUpNotHTTP)
				return nil
			}
			if len(p.line) == 0 {
				continue
			}
			// the remaining candidate may already be complete
			if p.line[len(p.line)-1] == '\n' {
				r = mDone
			}
		}
		if r == mDone {
			p.resynced()
			return b[i+1:]
		}
	}
	return nil
}

// restart drops bytes from the front of a failed candidate until what is
// left can still begin a start line; it returns how many bytes it dropped.
func (p *half) restart() int {
	line := p.line
	for j := 1; j < len(line); j++ {
		if !p.mt.startByte(line[j]) {
			continue
		}
		p.mt.reset()
		ok := true
		for k := j; k < len(line); k++ {
			if r := p.mt.check(line[j:], k-j); r == mFail || (r == mDone && k < len(line)-1) {
				ok = false
				break
			}
		}
		if ok {
			p.line = line[:copy(line, line[j:])]
			return j
		}
	}
	p.line = line[:0]
	p.mt.reset()
	return len(line)
}

// resynced starts a message with the candidate start line just found.
func (p *half) resynced() {
	st := p.c.f.stats
	if p.resp {
		st.respResyncs.Add(1)
	} else {
		st.reqResyncs.Add(1)
	}
	p.begin(p.lineTs)
	p.b.appendHead(p.line)
	p.line = p.line[:0]
	p.nl, p.early, p.skipped = 1, -1, 0
	p.parsedAny = true
}
