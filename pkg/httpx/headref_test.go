package httpx

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The head parsers as they were before the one-pass rewrite, kept as the
// reference the fast parsers must agree with.

// refParseRequestHead fills r's views from head (which ends with its blank line).
func refParseRequestHead(r *Request, head []byte, fields []Field) ([]Field, framing, error) {
	line, rest, ok := nextLine(head)
	if !ok {
		return fields, framing{}, errStartLine
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || sp1 > maxMethod {
		return fields, framing{}, errStartLine
	}
	for _, c := range line[:sp1] {
		if !tchar[c] {
			return fields, framing{}, errStartLine
		}
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return fields, framing{}, errStartLine
	}
	sp2 += sp1 + 1
	target := line[sp1+1 : sp2]
	for _, c := range target {
		if c < 0x21 || c == 0x7f {
			return fields, framing{}, errStartLine
		}
	}
	if !validProto(line[sp2+1:]) {
		return fields, framing{}, errStartLine
	}
	r.Method, r.Target, r.Proto = line[:sp1], target, line[sp2+1:]
	fields, fr, err := refParseFields(rest, fields)
	if err == nil && fr.te && !fr.chunked {
		err = errEncoding
	}
	if err == nil && fr.te {
		// Only "chunked" alone is understood on a request (as net/http).
		if v := Get(fields, "Transfer-Encoding"); !bytes.EqualFold(v, []byte("chunked")) {
			err = errEncoding
		}
	}
	return fields, fr, err
}

// refParseResponseHead fills r's views from head.
func refParseResponseHead(r *Response, head []byte, fields []Field) ([]Field, framing, error) {
	line, rest, ok := nextLine(head)
	if !ok || len(line) < 12 || !validProto(line[:8]) || line[8] != ' ' {
		return fields, framing{}, errStartLine
	}
	st := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fields, framing{}, errStartLine
		}
		st = st*10 + int(c-'0')
	}
	if st < 100 {
		return fields, framing{}, errStartLine
	}
	var reason []byte
	if len(line) > 12 {
		if line[12] != ' ' {
			return fields, framing{}, errStartLine
		}
		reason = line[13:]
		for _, c := range reason {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return fields, framing{}, errStartLine
			}
		}
	}
	r.Proto, r.Status, r.Reason = line[:8], st, reason
	return refParseFields(rest, fields)
}

// refVchar marks the bytes allowed in a field value: VCHAR, SP, HTAB, obs-text.
var refVchar = func() (t [256]bool) {
	for c := 0x20; c < 0x100; c++ {
		t[c] = c != 0x7f
	}
	t['\t'] = true
	return t
}()

// refParseFields parses header lines through the blank line, in one pass.
func refParseFields(b []byte, fields []Field) ([]Field, framing, error) {
	fr := framing{length: -1}
	for {
		i := 0
		for i < len(b) && tchar[b[i]] {
			i++
		}
		if i == len(b) {
			return fields, fr, errField
		}
		if b[i] != ':' {
			if i == 0 && (b[0] == '\n' || (b[0] == '\r' && len(b) > 1 && b[1] == '\n')) {
				return fields, fr, nil // the blank line
			}
			return fields, fr, errField // bad name, no colon, or obsolete line folding
		}
		if i == 0 {
			return fields, fr, errField
		}
		name := b[:i]
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		k := j + plainRun(b[j:])
		for k < len(b) && refVchar[b[k]] {
			k++
		}
		v := b[j:k]
		if k < len(b) && b[k] == '\r' {
			k++
		}
		if k >= len(b) || b[k] != '\n' {
			return fields, fr, errField // CTL or bare CR in the value
		}
		b = b[k+1:]
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		fields = append(fields, Field{Name: name, Value: v})
		switch len(name) {
		case 14:
			if bytes.EqualFold(name, []byte("Content-Length")) {
				n, ok := parseLength(v)
				if !ok || (fr.length >= 0 && fr.length != n) {
					return fields, fr, errLength
				}
				fr.length = n
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

// sameViews reports whether two parses give equal views at equal offsets.
func sameViews(base []byte, a, b [][]byte) error {
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) || (a[i] != nil && cap(base)-cap(a[i]) != cap(base)-cap(b[i])) {
			return fmt.Errorf("view %d: %q vs %q", i, a[i], b[i])
		}
	}
	return nil
}

func views(fields []Field, more ...[]byte) [][]byte {
	for _, f := range fields {
		more = append(more, f.Name, f.Value)
	}
	return more
}

// headEnd is where the line-by-line scan of headBytes ends a head: just
// after the first LF followed by LF or CRLF; -1 if there is none.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// The head parsers agree with the reference on any bytes: on a whole head
// (as the line-by-line path gives them) and on a head at the start of
// longer bytes (as the fast path gives them).
func FuzzHeadParsers(f *testing.F) {
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: h\r\nX:  v \t\r\n\r\nmore"))
	f.Add([]byte("GET /a HTTP/1.1\nA:\tb\tc\n\n"))
	f.Add([]byte("GET /a HTTP/1.1\r\r\n\r\n"))
	f.Add([]byte("M\x01 / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET /\x7f HTTP/1.1\r\n\r\n"))
	f.Add([]byte("POST /p HTTP/1.0\r\nContent-Length: 12\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))
	f.Add([]byte("HTTP/1.1 204\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		end := headEnd(data)
		head := data
		if end >= 0 {
			head = data[:end]
		}
		var q1, q2 Request
		f1, fr1, err1 := refParseRequestHead(&q1, head, nil)
		f2, fr2, err2 := parseRequestHead(&q2, head, nil)
		if (err1 == nil) != (err2 == nil) || err1 == nil && (fr1 != fr2 || len(f1) != len(f2)) {
			t.Fatalf("request %q: ref %v %+v %d fields, new %v %+v %d fields", head, err1, fr1, len(f1), err2, fr2, len(f2))
		}
		if err1 == nil {
			if err := sameViews(head, views(f1, q1.Method, q1.Target, q1.Proto), views(f2, q2.Method, q2.Target, q2.Proto)); err != nil {
				t.Fatalf("request %q: %v", head, err)
			}
		}
		var q3 Request
		f3, fr3, n, err3 := parseRequestHeadIn(&q3, data, nil)
		if err1 == nil && err3 != nil {
			t.Fatalf("request in %q: %v, ref parses the head", data, err3)
		}
		if err3 == nil && (err1 != nil || n != end || fr3 != fr1 || len(f3) != len(f1)) {
			t.Fatalf("request in %q: n %d, head end %d, ref %v", data, n, end, err1)
		}
		if err3 == nil {
			if err := sameViews(data, views(f1, q1.Method, q1.Target, q1.Proto), views(f3, q3.Method, q3.Target, q3.Proto)); err != nil {
				t.Fatalf("request in %q: %v", data, err)
			}
		}

		var r1, r2 Response
		g1, gr1, err1 := refParseResponseHead(&r1, head, nil)
		g2, gr2, err2 := parseResponseHead(&r2, head, nil)
		if (err1 == nil) != (err2 == nil) || err1 == nil && (gr1 != gr2 || len(g1) != len(g2) || r1.Status != r2.Status) {
			t.Fatalf("response %q: ref %v %+v, new %v %+v", head, err1, gr1, err2, gr2)
		}
		if err1 == nil {
			if err := sameViews(head, views(g1, r1.Proto, r1.Reason), views(g2, r2.Proto, r2.Reason)); err != nil {
				t.Fatalf("response %q: %v", head, err)
			}
		}
		var r3 Response
		g3, gr3, n, err3 := parseResponseHeadIn(&r3, data, nil)
		if err1 == nil && err3 != nil {
			t.Fatalf("response in %q: %v, ref parses the head", data, err3)
		}
		if err3 == nil && (err1 != nil || n != end || gr3 != gr1 || len(g3) != len(g1) || r3.Status != r1.Status) {
			t.Fatalf("response in %q: n %d, head end %d, ref %v", data, n, end, err1)
		}
		if err3 == nil {
			if err := sameViews(data, views(g1, r1.Proto, r1.Reason), views(g3, r3.Proto, r3.Reason)); err != nil {
				t.Fatalf("response in %q: %v", data, err)
			}
		}
	})
}

func TestLowIndex(t *testing.T) {
	naive := func(b []byte, lim byte) int {
		for i, c := range b {
			if c < lim || c == 0x7f {
				return i
			}
		}
		return len(b)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	for i := 0; i < 50000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = byte(0x20 + rng.IntN(0x60))
			if rng.IntN(20) == 0 {
				b[j] = []byte{0, '\t', '\r', '\n', 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff, 0x7e}[rng.IntN(11)]
			}
		}
		for _, lim := range []byte{0x20, 0x21} {
			if got, want := lowIndex(b, lim), naive(b, lim); got != want {
				t.Fatalf("lowIndex(%q, %#x) = %d, want %d", b, lim, got, want)
			}
		}
	}
}
