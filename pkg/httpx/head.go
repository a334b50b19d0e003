package httpx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
)

// Errors of head parsing; they only choose a counter, never reach a log with
// header values.
var (
	errStartLine = errors.New("httpx: malformed start line")
	errField     = errors.New("httpx: malformed header field")
	errLength    = errors.New("httpx: bad Content-Length")
	errEncoding  = errors.New("httpx: unsupported Transfer-Encoding")
	// errIncomplete: the bytes end before the head does (parse*In only).
	errIncomplete = errors.New("httpx: head goes on beyond the bytes")
)

// tchar reports the token characters of RFC 9110 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// maxMethod bounds a method token on a synchronised stream.
const maxMethod = 32

// knownMethods are the methods a resync accepts at the start of a request
// line: scanning a body for a request line must not take any token for one.
var knownMethods = [...]string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
}

// methodStart marks the first letters of knownMethods.
var methodStart = func() (t [256]bool) {
	for _, m := range knownMethods {
		t[m[0]] = true
	}
	return t
}()

func knownMethodPrefix(b []byte, whole bool) bool {
	for _, m := range knownMethods {
		if len(b) <= len(m) && string(b) == m[:len(b)] && (!whole || len(b) == len(m)) {
			return true
		}
	}
	return false
}

// framing is what a head says about the body that follows.
type framing struct {
	length  int64 // Content-Length, -1 when absent
	chunked bool  // Transfer-Encoding ends in chunked
	te      bool  // Transfer-Encoding present
	upgrade bool  // an Upgrade field is present
}

// nextLine splits b at the first LF. The line is returned without its CRLF
// or LF; ok is false when there is no LF or the line holds a bare CR.
func nextLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, rest, true
}

// validProto accepts HTTP/1.0 to HTTP/1.9.
func validProto(p []byte) bool {
	return len(p) == 8 && string(p[:7]) == "HTTP/1." && p[7] >= '0' && p[7] <= '9'
}

// parseRequestHead fills r's views from head (which ends with its blank line).
func parseRequestHead(r *Request, head []byte, fields []Field) ([]Field, framing, error) {
	fields, fr, _, err := parseRequestHeadIn(r, head, fields)
	return fields, fr, err
}

// parseRequestHeadIn parses a request head at the start of b, which may go
// on beyond it; n is the length of the head through its blank line. A head
// not complete within b is an error.
func parseRequestHeadIn(r *Request, b []byte, fields []Field) (_ []Field, _ framing, n int, _ error) {
	// The request line, method SP target SP HTTP/1.x [CR] LF, in one pass
	// (no line split first): the method is a token, the target runs to the
	// first byte that cannot be in it, which must be the second SP, and the
	// version is followed by the line end. This accepts exactly the lines
	// that splitting at the first LF and then at the spaces accepts.
	sp1 := 0
	for sp1 < len(b) && tchar[b[sp1]] {
		sp1++
	}
	if sp1 == 0 || sp1 > maxMethod || sp1 == len(b) || b[sp1] != ' ' {
		return fields, framing{}, 0, errStartLine
	}
	sp2 := sp1 + 1 + lowIndex(b[sp1+1:], 0x21)
	if sp2 == sp1+1 || sp2 == len(b) || b[sp2] != ' ' {
		return fields, framing{}, 0, errStartLine // empty target, or a CTL in it, or no second SP
	}
	e := sp2 + 9
	if e >= len(b) || !validProto(b[sp2+1:e]) {
		return fields, framing{}, 0, errStartLine
	}
	if b[e] == '\r' {
		e++
	}
	if e >= len(b) || b[e] != '\n' {
		return fields, framing{}, 0, errStartLine
	}
	rest := b[e+1:]
	r.Method, r.Target, r.Proto = b[:sp1], b[sp1+1:sp2], b[sp2+1:sp2+9]
	fields, fr, n, err := parseFields(rest, fields, framing{length: -1})
	n += len(b) - len(rest)
	if err == nil {
		err = requestFraming(fields, fr)
	}
	return fields, fr, n, err
}

// requestFraming checks the framing fields of a parsed request head.
func requestFraming(fields []Field, fr framing) error {
	if fr.te && !fr.chunked {
		return errEncoding
	}
	if fr.te {
		// Only "chunked" alone is understood on a request (as net/http).
		if v := Get(fields, "Transfer-Encoding"); !bytes.EqualFold(v, []byte("chunked")) {
			return errEncoding
		}
	}
	return nil
}

// parseResponseHead fills r's views from head.
func parseResponseHead(r *Response, head []byte, fields []Field) ([]Field, framing, error) {
	fields, fr, _, err := parseResponseHeadIn(r, head, fields)
	return fields, fr, err
}

// parseResponseHeadIn is parseRequestHeadIn for a response head.
func parseResponseHeadIn(r *Response, b []byte, fields []Field) (_ []Field, _ framing, n int, _ error) {
	line, rest, ok := nextLine(b)
	if !ok || len(line) < 12 || !validProto(line[:8]) || line[8] != ' ' {
		return fields, framing{}, 0, errStartLine
	}
	st := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fields, framing{}, 0, errStartLine
		}
		st = st*10 + int(c-'0')
	}
	if st < 100 {
		return fields, framing{}, 0, errStartLine
	}
	var reason []byte
	if len(line) > 12 {
		if line[12] != ' ' {
			return fields, framing{}, 0, errStartLine
		}
		reason = line[13:]
		for _, c := range reason {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return fields, framing{}, 0, errStartLine
			}
		}
	}
	r.Proto, r.Status, r.Reason = line[:8], st, reason
	fields, fr, n, err := parseFields(rest, fields, framing{length: -1})
	return fields, fr, n + len(b) - len(rest), err
}

// parseFields parses header lines through the blank line, in one pass,
// adding to fields and fr; n is the length of b through the blank line. b
// may go on beyond it. When b ends before the blank line with no error in
// the lines before, the error is errIncomplete, and n is the length of the
// lines parsed: parsing can go on from there with the fields and framing
// returned.
func parseFields(b []byte, fields []Field, fr framing) (_ []Field, _ framing, n int, _ error) {
	all := len(b)
	for {
		i := 0
		for i < len(b) && tchar[b[i]] {
			i++
		}
		if i == len(b) || i == 0 && b[0] == '\r' && len(b) == 1 {
			return fields, fr, all - len(b), errIncomplete
		}
		if b[i] != ':' {
			if i == 0 && b[0] == '\n' {
				return fields, fr, all - len(b) + 1, nil // the blank line
			}
			if i == 0 && b[0] == '\r' && b[1] == '\n' {
				return fields, fr, all - len(b) + 2, nil
			}
			return fields, fr, 0, errField // bad name, no colon, or obsolete line folding
		}
		if i == 0 {
			return fields, fr, 0, errField
		}
		name := b[:i]
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		// The value's bytes are vchar: it ends at the first CTL but HTAB,
		// looked for eight bytes at a time (lowIndex, inlined by hand).
		k := j
		for {
			if len(b)-k >= 8 {
				m := lowMask(binary.LittleEndian.Uint64(b[k:]), 0x20)
				if m == 0 {
					k += 8
					continue
				}
				k += bits.TrailingZeros64(m) / 8
			} else {
				for k < len(b) && b[k] >= 0x20 && b[k] != 0x7f {
					k++
				}
			}
			if k < len(b) && b[k] == '\t' {
				k++
				continue
			}
			break
		}
		v := b[j:k]
		if k < len(b) && b[k] == '\r' {
			k++
		}
		if k >= len(b) {
			return fields, fr, all - len(b), errIncomplete
		}
		if b[k] != '\n' {
			return fields, fr, 0, errField // CTL or bare CR in the value
		}
		b = b[k+1:]
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		// Grow within the capacity without zeroing and fill the Field in
		// place: appending a composite literal builds it on the stack first
		// and copies it with 16-byte loads of just-written 8-byte halves,
		// which stalls store forwarding.
		if len(fields) < cap(fields) {
			fields = fields[:len(fields)+1]
		} else {
			fields = append(fields, Field{})
		}
		f := &fields[len(fields)-1]
		f.Name, f.Value = name, v
		switch len(name) {
		case 14:
			if bytes.EqualFold(name, []byte("Content-Length")) {
				l, ok := parseLength(v)
				if !ok || (fr.length >= 0 && fr.length != l) {
					return fields, fr, 0, errLength
				}
				fr.length = l
			}
		case 17:
			if bytes.EqualFold(name, []byte("Transfer-Encoding")) {
				fr.te = true
				fr.chunked = lastTokenChunked(v)
			}
		case 7:
			if bytes.EqualFold(name, []byte("Upgrade")) {
				fr.upgrade = true
			}
		}
	}
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func lastTokenChunked(v []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	v = bytes.TrimSpace(v)
	return bytes.EqualFold(v, []byte("chunked"))
}

// Line matcher used to resynchronise: it checks, byte by byte, that the
// bytes seen so far can begin a request line (known method SP target SP
// HTTP/1.x CRLF) or a status line (HTTP/1.x SP 3DIGIT [SP reason] CRLF).
type matcher struct {
	resp  bool
	max   int // longest line accepted
	phase uint8
	n     int
}

const (
	mFail = -1
	mMore = 0
	mDone = 1
)

const maxStatusLine = 1024

func (m *matcher) reset() { m.phase, m.n = 0, 0 }

// check validates line[i], the next byte of the candidate line[:i+1].
func (m *matcher) check(line []byte, i int) int {
	c := line[i]
	if i >= m.max {
		return mFail
	}
	if m.resp {
		return m.checkStatus(c)
	}
	switch m.phase {
	case 0: // method
		if c == ' ' {
			if !knownMethodPrefix(line[:i], true) {
				return mFail
			}
			m.phase, m.n = 1, 0
			return mMore
		}
		if !knownMethodPrefix(line[:i+1], false) {
			return mFail
		}
	case 1: // target
		if c == ' ' && m.n > 0 {
			m.phase, m.n = 2, 0
			return mMore
		}
		if c < 0x21 || c == 0x7f {
			return mFail
		}
		m.n++
	case 2: // HTTP/1.x
		return m.version(c, 3)
	case 3:
		switch c {
		case '\r':
			m.phase = 4
		case '\n':
			return mDone
		default:
			return mFail
		}
	case 4:
		if c == '\n' {
			return mDone
		}
		return mFail
	}
	return mMore
}

// version matches c against "HTTP/1.x" (x a digit), the protocol of a
// request line and of a status line; after the digit the matcher moves to
// phase next.
func (m *matcher) version(c byte, next uint8) int {
	if m.n < 7 {
		if c != "HTTP/1."[m.n] {
			return mFail
		}
		m.n++
		return mMore
	}
	if c < '0' || c > '9' {
		return mFail
	}
	m.phase = next
	return mMore
}

func (m *matcher) checkStatus(c byte) int {
	switch m.phase {
	case 0: // HTTP/1.x
		return m.version(c, 1)
	case 1:
		if c != ' ' {
			return mFail
		}
		m.phase, m.n = 2, 0
	case 2: // status code
		if c < '0' || c > '9' || (m.n == 0 && c == '0') {
			return mFail
		}
		m.n++
		if m.n == 3 {
			m.phase = 3
		}
	case 3:
		switch c {
		case ' ':
			m.phase = 4
		case '\r':
			m.phase = 5
		case '\n':
			return mDone
		default:
			return mFail
		}
	case 4: // reason
		switch {
		case c == '\r':
			m.phase = 5
		case c == '\n':
			return mDone
		case (c < 0x20 && c != '\t') || c == 0x7f:
			return mFail
		}
	case 5:
		if c == '\n' {
			return mDone
		}
		return mFail
	}
	return mMore
}

// startByte reports whether c can begin a line the matcher accepts.
func (m *matcher) startByte(c byte) bool {
	if m.resp {
		return c == 'H'
	}
	return methodStart[c]
}

// lowIndex returns the index of the first byte of b below lim (at most 0x80)
// or equal to DEL, or len(b) if there is none, checking eight bytes at a
// time.
func lowIndex(b []byte, lim byte) int {
	n := 0
	for len(b)-n >= 8 {
		if m := lowMask(binary.LittleEndian.Uint64(b[n:]), lim); m != 0 {
			// Borrows only ever mark bytes above a true match, so the
			// lowest marked byte is the first match.
			return n + bits.TrailingZeros64(m)/8
		}
		n += 8
	}
	for n < len(b) && b[n] >= lim && b[n] != 0x7f {
		n++
	}
	return n
}

// lowMask marks with its high bit each byte of x below lim (at most 0x80) or
// equal to DEL, and maybe bytes above (in significance) a marked one.
func lowMask(x uint64, lim byte) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	y := x ^ (0x7f * ones) // zero bytes where x has DEL
	return ((x-uint64(lim)*ones)&^x | (y-ones)&^y) & highs
}

// plainRun returns a length, a multiple of 8, of the prefix of b that holds
// no byte below 0x20 and no DEL, checking eight bytes at a time (the caller
// checks the rest byte by byte).
func plainRun(b []byte) int {
	n := 0
	for len(b)-n >= 8 && lowMask(binary.LittleEndian.Uint64(b[n:]), 0x20) == 0 {
		n += 8
	}
	return n
}
