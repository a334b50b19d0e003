package verdict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// JSON bodies are compared structurally:
//
//   - object members by name, whatever their order (a name given twice
//     counts once, the last one, as encoding/json reads it);
//   - numbers by value (1.0 == 1, 1e2 == 100, -0 == 0), exactly, whatever
//     their size;
//   - strings by value (escapes decoded: "\u00e9" == "é");
//   - arrays element by element, in order; elements beyond the shorter
//     array are reported one index each;
//   - a value of another type (number vs string, object vs array, ...) is
//     one difference at its path.
//
// Each difference's Field is the value's normalized path in RFC 9535 form,
// member names in brackets and single quotes: $['items'][3]['price'] (names
// escaped as RFC 9535 says: \' \\ \b \f \n \r \t and \u00XX for other
// control characters). Production and Shadow hold each side's value as
// compact JSON ("" when the side has no value there), cut to
// maxJSONValueLen bytes followed by "..." when longer.
//
// Containers nested deeper than maxJSONDepth are not descended into: they
// are compared as compacted bytes (member order then matters), so hostile
// nesting costs no stack.
//
// A document of more than maxJSONValues values (counted loosely: see
// jsonValueBound) is not compared: parsing it would take about 40 bytes a
// value. The body then counts as unverified (UnverifiedTooLarge).
const (
	maxJSONValues   = 1 << 20
	maxJSONDepth    = 64
	maxJSONValueLen = 512
	defaultMaxPaths = 20
)

type jkind uint8

const (
	jNull jkind = iota + 1
	jFalse
	jTrue
	jNumber
	jString
	jArray
	jObject
	jRaw // a container beyond maxJSONDepth, compared as compacted bytes
)

func (k jkind) String() string {
	switch k {
	case jNull:
		return "null"
	case jFalse, jTrue:
		return "a boolean"
	case jNumber:
		return "a number"
	case jString:
		return "a string"
	case jArray:
		return "an array"
	case jObject:
		return "an object"
	case jRaw:
		return "a deeply nested value"
	}
	return "nothing"
}

// jnode is one value of a parsed document.
type jnode struct {
	start, end   int32 // the value's bytes in jdoc.src
	kstart, kend int32 // an object member's name: in src (raw, unquoted) or, when kesc, decoded in jdoc.keybuf
	kids, nkids  int32 // children: jdoc.kids[kids:kids+nkids] (object members sorted by name)
	kind         jkind
	kesc         bool // the name had escapes: it lives decoded in keybuf
	sesc         bool // a string value with escapes
}

// jdoc is a parsed JSON document: a flat array of nodes over the source.
type jdoc struct {
	src    []byte
	nodes  []jnode
	kids   []int32
	keybuf []byte
	stack  []int32 // children being collected while parsing
}

// parseJSON parses src, which must be valid JSON (json.Valid), into d.
func (d *jdoc) parse(src []byte) {
	d.src = src
	if n := jsonValueBound(src); cap(d.nodes) < n {
		d.nodes = make([]jnode, 0, n)
		d.kids = make([]int32, 0, n)
	}
	d.nodes = d.nodes[:0]
	d.kids = d.kids[:0]
	d.keybuf = d.keybuf[:0]
	d.stack = d.stack[:0]
	pos := skipSpace(src, 0)
	d.value(pos, 0)
}

// jsonValueBound bounds the values in a JSON document: every value but the
// root follows a comma, [ or { (those in strings count too).
func jsonValueBound(src []byte) int {
	return bytes.Count(src, []byte{','}) + bytes.Count(src, []byte{'{'}) + bytes.Count(src, []byte{'['}) + 1
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// endString returns the index after the closing quote of the string that
// starts at s[i] == '"', and whether it has escapes.
func endString(s []byte, i int) (int, bool) {
	esc := false
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			esc = true
			i++
		case '"':
			return i + 1, esc
		}
	}
	return len(s), esc
}

// endValue returns the index after the (valid) value starting at s[i],
// without recursion.
func endValue(s []byte, i int) int {
	depth := 0
	for i < len(s) {
		switch c := s[i]; c {
		case '"':
			i, _ = endString(s, i)
		case '{', '[':
			depth++
			i++
		case '}', ']':
			depth--
			i++
		case 't', 'n':
			i += 4
		case 'f':
			i += 5
		case ' ', '\t', '\n', '\r', ',', ':':
			i++
		default: // a number
			for i < len(s) && strings.IndexByte("+-0123456789.eE", s[i]) >= 0 {
				i++
			}
		}
		if depth == 0 {
			break
		}
	}
	return i
}

// value parses the value at src[pos] and returns its node index and the
// position after it.
func (d *jdoc) value(pos, depth int) (int32, int) {
	s := d.src
	idx := int32(len(d.nodes))
	d.nodes = append(d.nodes, jnode{start: int32(pos), kstart: -1, kend: -1})
	var end int
	var kind jkind
	switch c := s[pos]; {
	case c == '"':
		var esc bool
		end, esc = endString(s, pos)
		kind = jString
		d.nodes[idx].sesc = esc
	case c == 't':
		end, kind = pos+4, jTrue
	case c == 'f':
		end, kind = pos+5, jFalse
	case c == 'n':
		end, kind = pos+4, jNull
	case (c == '{' || c == '[') && depth >= maxJSONDepth:
		end, kind = endValue(s, pos), jRaw
	case c == '[':
		kind = jArray
		base := len(d.stack)
		p := skipSpace(s, pos+1)
		if s[p] == ']' {
			end = p + 1
			break
		}
		for {
			var k int32
			k, p = d.value(p, depth+1)
			d.stack = append(d.stack, k)
			p = skipSpace(s, p)
			if s[p] == ',' {
				p = skipSpace(s, p+1)
				continue
			}
			end = p + 1 // ']'
			break
		}
		d.popKids(idx, base)
	case c == '{':
		kind = jObject
		base := len(d.stack)
		p := skipSpace(s, pos+1)
		if s[p] == '}' {
			end = p + 1
			break
		}
		for {
			kend, kesc := endString(s, p)
			ks, ke := int32(p+1), int32(kend-1)
			if kesc {
				var name string
				if err := json.Unmarshal(s[p:kend], &name); err == nil {
					ks = int32(len(d.keybuf))
					d.keybuf = append(d.keybuf, name...)
					ke = int32(len(d.keybuf))
				} else {
					kesc = false
				}
			}
			p = skipSpace(s, kend)
			p = skipSpace(s, p+1) // ':'
			var k int32
			k, p = d.value(p, depth+1)
			d.nodes[k].kstart, d.nodes[k].kend, d.nodes[k].kesc = ks, ke, kesc
			d.stack = append(d.stack, k)
			p = skipSpace(s, p)
			if s[p] == ',' {
				p = skipSpace(s, p+1)
				continue
			}
			end = p + 1 // '}'
			break
		}
		d.popKids(idx, base)
		members := d.kids[d.nodes[idx].kids : d.nodes[idx].kids+d.nodes[idx].nkids]
		slices.SortStableFunc(members, func(a, b int32) int { return bytes.Compare(d.key(a), d.key(b)) })
	default:
		end = pos
		for end < len(s) && strings.IndexByte("+-0123456789.eE", s[end]) >= 0 {
			end++
		}
		kind = jNumber
	}
	d.nodes[idx].end = int32(end)
	d.nodes[idx].kind = kind
	return idx, end
}

func (d *jdoc) popKids(idx int32, base int) {
	d.nodes[idx].kids = int32(len(d.kids))
	d.nodes[idx].nkids = int32(len(d.stack) - base)
	d.kids = append(d.kids, d.stack[base:]...)
	d.stack = d.stack[:base]
}

// key returns a member's decoded name.
func (d *jdoc) key(i int32) []byte {
	n := &d.nodes[i]
	if n.kesc {
		return d.keybuf[n.kstart:n.kend]
	}
	return d.src[n.kstart:n.kend]
}

func (d *jdoc) raw(i int32) []byte { n := &d.nodes[i]; return d.src[n.start:n.end] }

func (d *jdoc) children(i int32) []int32 {
	n := &d.nodes[i]
	return d.kids[n.kids : n.kids+n.nkids]
}

// pathSeg is one step of a JSON path: a member name, an array index, or a
// wildcard (any member or index).
type pathSeg struct {
	name  string
	index int
	kind  uint8
}

const (
	segName uint8 = iota + 1
	segIndex
	segWild
)

// jsonPattern is a parsed --ignore-json-path: it matches the value at its
// path and everything under it.
type jsonPattern []pathSeg

// ValidateJSONPath checks an --ignore-json-path pattern. Accepted: RFC 9535
// normalized paths ($['items'][3]['price'], also with double quotes), the
// dotted shorthand ($.items[3].price), and the wildcard [*] (or .*) for any
// index or member ($.items[*].price). "$" alone matches the whole body.
func ValidateJSONPath(p string) error {
	_, err := parseJSONPattern(p)
	return err
}

func parseJSONPattern(p string) (jsonPattern, error) {
	if !strings.HasPrefix(p, "$") {
		return nil, fmt.Errorf("JSON path %q: must start with $", p)
	}
	var out jsonPattern
	i := 1
	for i < len(p) {
		switch p[i] {
		case '.':
			i++
			if i < len(p) && p[i] == '.' {
				return nil, fmt.Errorf("JSON path %q: descendant segments (..) are not supported", p)
			}
			j := i
			for j < len(p) && p[j] != '.' && p[j] != '[' {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("JSON path %q: empty member name at offset %d", p, i)
			}
			if p[i:j] == "*" {
				out = append(out, pathSeg{kind: segWild})
			} else {
				out = append(out, pathSeg{kind: segName, name: p[i:j]})
			}
			i = j
		case '[':
			i++
			if i >= len(p) {
				return nil, fmt.Errorf("JSON path %q: unterminated [", p)
			}
			switch c := p[i]; {
			case c == '*':
				if i+1 >= len(p) || p[i+1] != ']' {
					return nil, fmt.Errorf("JSON path %q: expected ] after * at offset %d", p, i+1)
				}
				out = append(out, pathSeg{kind: segWild})
				i += 2
			case c == '\'' || c == '"':
				name, n, err := unquotePathName(p[i:])
				if err != nil {
					return nil, fmt.Errorf("JSON path %q: %w", p, err)
				}
				i += n
				if i >= len(p) || p[i] != ']' {
					return nil, fmt.Errorf("JSON path %q: expected ] at offset %d", p, i)
				}
				i++
				out = append(out, pathSeg{kind: segName, name: name})
			case c >= '0' && c <= '9':
				j := i
				for j < len(p) && p[j] >= '0' && p[j] <= '9' {
					j++
				}
				n, err := strconv.Atoi(p[i:j])
				if err != nil {
					return nil, fmt.Errorf("JSON path %q: index %q: %w", p, p[i:j], err)
				}
				if j >= len(p) || p[j] != ']' {
					return nil, fmt.Errorf("JSON path %q: expected ] at offset %d", p, j)
				}
				out = append(out, pathSeg{kind: segIndex, index: n})
				i = j + 1
			default:
				return nil, fmt.Errorf("JSON path %q: unexpected %q at offset %d (want a quoted name, an index or *)", p, c, i)
			}
		default:
			return nil, fmt.Errorf("JSON path %q: unexpected %q at offset %d", p, p[i], i)
		}
	}
	return out, nil
}

// unquotePathName reads a quoted member name at the start of s and returns
// it and the bytes consumed.
func unquotePathName(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\':
			i++
			if i >= len(s) {
				return "", 0, errors.New("unterminated escape")
			}
			switch s[i] {
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '/', '\\', '\'', '"':
				b.WriteByte(s[i])
			case 'u':
				if i+4 >= len(s) {
					return "", 0, errors.New("short \\u escape")
				}
				r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
				if err != nil {
					return "", 0, fmt.Errorf("bad \\u escape: %w", err)
				}
				b.WriteRune(rune(r))
				i += 4
			default:
				return "", 0, fmt.Errorf("bad escape \\%c", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated quoted name")
}

// pathElem is one step of the path being compared.
type pathElem struct {
	name  []byte
	index int
	isKey bool
}

// jsonDiffer compares two parsed documents; a is production, b the other
// side. It holds scratch space so one comparison allocates little.
type jsonDiffer struct {
	a, b     *jdoc
	pats     []jsonPattern
	active   []int32 // stack of active pattern lists, one run per level
	path     []pathElem
	max      int // at most this many differences are reported
	base     int // differences in diffs before this comparison's
	diffs    []Difference
	more     int
	na, nb   []byte // number canonical forms
	compactA bytes.Buffer
	compactB bytes.Buffer
}

// diffJSON compares two valid JSON documents and appends the differences
// (at most max; the count of those left out is returned).
func diffJSON(a, b []byte, ignore []jsonPattern, max int, out []Difference) ([]Difference, int) {
	for _, p := range ignore {
		if len(p) == 0 {
			return out, 0 // "$": the whole body is ignored
		}
	}
	d, _ := jsonScratch.Get().(*jsonDiffer)
	if d == nil {
		d = &jsonDiffer{a: new(jdoc), b: new(jdoc)}
	}
	defer d.release()
	d.a.parse(a)
	d.b.parse(b)
	d.pats, d.max, d.base, d.diffs, d.more = ignore, max, len(out), out, 0
	for i := range ignore {
		d.active = append(d.active, int32(i))
	}
	d.compare(0, 0, 0, len(d.active))
	if d.more > 0 && len(d.diffs) > len(out) {
		last := &d.diffs[len(d.diffs)-1]
		more := fmt.Sprintf("and %d more differing JSON paths not listed", d.more)
		if last.Explanation == "" {
			last.Explanation = more
		} else {
			last.Explanation += "; " + more
		}
	}
	return d.diffs, d.more
}

// jsonScratch keeps parsed-document arrays between comparisons (a cache:
// see decoders).
var jsonScratch sync.Pool

// release clears d and gives it back to jsonScratch unless it grew large.
func (d *jsonDiffer) release() {
	if cap(d.a.nodes)+cap(d.b.nodes) > 1<<18 {
		return
	}
	a, b := d.a, d.b
	a.src, b.src = nil, nil
	clear(d.path[:cap(d.path)]) // names point into the bodies
	*d = jsonDiffer{a: a, b: b, active: d.active[:0], path: d.path[:0], na: d.na[:0], nb: d.nb[:0],
		compactA: d.compactA, compactB: d.compactB}
	d.compactA.Reset()
	d.compactB.Reset()
	jsonScratch.Put(d)
}

// descend computes the patterns still active below the child elem, given
// the active ones in d.active[lo:hi]. It returns the new run's bounds, or
// ignored when a pattern ends at the child.
func (d *jsonDiffer) descend(lo, hi int, elem pathElem) (nlo, nhi int, ignored bool) {
	depth := len(d.path) - 1 // elem is already pushed
	nlo = len(d.active)
	for k := lo; k < hi; k++ {
		p := d.pats[d.active[k]]
		seg := p[depth]
		match := false
		switch seg.kind {
		case segWild:
			match = true
		case segName:
			match = elem.isKey && string(elem.name) == seg.name
		case segIndex:
			match = !elem.isKey && elem.index == seg.index
		}
		if !match {
			continue
		}
		if depth+1 == len(p) {
			d.active = d.active[:nlo]
			return nlo, nlo, true
		}
		d.active = append(d.active, d.active[k])
	}
	return nlo, len(d.active), false
}

// compare compares node ia of a with node ib of b (-1: absent).
func (d *jsonDiffer) compare(ia, ib int32, lo, hi int) {
	na, nb := &d.a.nodes[ia], &d.b.nodes[ib]
	ka, kb := na.kind, nb.kind
	if ka != kb {
		if (ka == jTrue || ka == jFalse) && (kb == jTrue || kb == jFalse) {
			d.report(ia, ib, "")
			return
		}
		d.report(ia, ib, "production has "+ka.String()+", the shadow "+kb.String())
		return
	}
	switch ka {
	case jNull, jTrue, jFalse:
	case jNumber:
		ra, rb := d.a.raw(ia), d.b.raw(ib)
		if bytes.Equal(ra, rb) {
			return
		}
		d.na = numCanon(d.na[:0], ra)
		d.nb = numCanon(d.nb[:0], rb)
		if !bytes.Equal(d.na, d.nb) {
			d.report(ia, ib, "")
		}
	case jString:
		ra, rb := d.a.raw(ia), d.b.raw(ib)
		if bytes.Equal(ra, rb) {
			return
		}
		if (na.sesc || nb.sesc) && stringValue(ra) == stringValue(rb) {
			return
		}
		d.report(ia, ib, "")
	case jRaw:
		if !bytes.Equal(compact(&d.compactA, d.a.raw(ia)), compact(&d.compactB, d.b.raw(ib))) {
			d.report(ia, ib, fmt.Sprintf("nested deeper than %d levels: compared as bytes", maxJSONDepth))
		}
	case jArray:
		ca, cb := d.a.children(ia), d.b.children(ib)
		for i := range max(len(ca), len(cb)) {
			d.path = append(d.path, pathElem{index: i})
			clo, chi, ignored := d.descend(lo, hi, d.path[len(d.path)-1])
			if !ignored {
				switch {
				case i >= len(ca):
					d.report(-1, cb[i], "only in the shadow's array (longer: "+strconv.Itoa(len(cb))+" vs "+strconv.Itoa(len(ca))+" elements)")
				case i >= len(cb):
					d.report(ca[i], -1, "missing in the shadow's array (shorter: "+strconv.Itoa(len(cb))+" vs "+strconv.Itoa(len(ca))+" elements)")
				default:
					d.compare(ca[i], cb[i], clo, chi)
				}
			}
			d.active = d.active[:clo]
			d.path = d.path[:len(d.path)-1]
		}
	case jObject:
		ca, cb := d.a.children(ia), d.b.children(ib)
		i, j := 0, 0
		for i < len(ca) || j < len(cb) {
			// Of a name given twice, the last one counts (members are
			// sorted stably by name).
			for i+1 < len(ca) && bytes.Equal(d.a.key(ca[i]), d.a.key(ca[i+1])) {
				i++
			}
			for j+1 < len(cb) && bytes.Equal(d.b.key(cb[j]), d.b.key(cb[j+1])) {
				j++
			}
			var c int
			switch {
			case i >= len(ca):
				c = 1
			case j >= len(cb):
				c = -1
			default:
				c = bytes.Compare(d.a.key(ca[i]), d.b.key(cb[j]))
			}
			var name []byte
			if c <= 0 {
				name = d.a.key(ca[i])
			} else {
				name = d.b.key(cb[j])
			}
			d.path = append(d.path, pathElem{name: name, isKey: true})
			clo, chi, ignored := d.descend(lo, hi, d.path[len(d.path)-1])
			switch {
			case c < 0:
				if !ignored {
					d.report(ca[i], -1, "missing in the shadow's answer")
				}
				i++
			case c > 0:
				if !ignored {
					d.report(-1, cb[j], "only in the shadow's answer")
				}
				j++
			default:
				if !ignored {
					d.compare(ca[i], cb[j], clo, chi)
				}
				i++
				j++
			}
			d.active = d.active[:clo]
			d.path = d.path[:len(d.path)-1]
		}
	}
}

func (d *jsonDiffer) report(ia, ib int32, why string) {
	if len(d.diffs)-d.base >= d.max {
		d.more++
		return
	}
	d.diffs = append(d.diffs, Difference{
		Kind:        KindBody,
		Field:       d.renderPath(),
		Production:  d.value(d.a, ia, &d.compactA),
		Shadow:      d.value(d.b, ib, &d.compactB),
		Explanation: why,
	})
}

func (d *jsonDiffer) value(doc *jdoc, i int32, buf *bytes.Buffer) string {
	if i < 0 {
		return ""
	}
	raw := doc.raw(i)
	if k := doc.nodes[i].kind; k == jObject || k == jArray || k == jRaw {
		raw = compact(buf, raw)
	}
	return cutValue(raw)
}

// cutValue returns v as a string, cut to maxJSONValueLen bytes (on a rune
// boundary) followed by "..." when longer.
func cutValue(v []byte) string {
	if len(v) <= maxJSONValueLen {
		return string(v)
	}
	n := maxJSONValueLen
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return string(v[:n]) + "..."
}

func compact(buf *bytes.Buffer, raw []byte) []byte {
	buf.Reset()
	if err := json.Compact(buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// renderPath writes the current path in RFC 9535 normalized form.
func (d *jsonDiffer) renderPath() string {
	var b strings.Builder
	b.WriteByte('$')
	for _, e := range d.path {
		if !e.isKey {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
			continue
		}
		b.WriteString("['")
		for _, c := range e.name {
			switch c {
			case '\'':
				b.WriteString(`\'`)
			case '\\':
				b.WriteString(`\\`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if c < 0x20 {
					fmt.Fprintf(&b, `\u%04x`, c)
				} else {
					b.WriteByte(c)
				}
			}
		}
		b.WriteString("']")
	}
	return b.String()
}

// stringValue decodes a JSON string token.
func stringValue(raw []byte) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return string(raw)
	}
	return s
}

// numCanon appends the canonical form of the JSON number n to dst, so that
// two numbers are equal in value exactly when their forms are equal: "0"
// for zero, else an optional "-", the significant digits without leading
// or trailing zeros, "e" and the decimal exponent of the value written as
// 0.DIGITS x 10^E. Exponents too long for an int64 are kept as written
// (such numbers compare equal only to the same spelling).
func numCanon(dst []byte, n []byte) []byte {
	i := 0
	neg := false
	if i < len(n) && n[i] == '-' {
		neg = true
		i++
	}
	start := len(dst)
	if neg {
		dst = append(dst, '-')
	}
	digits := len(dst)
	var point int64 // digits before the decimal point, adjusted for leading zeros
	lead := true
	for ; i < len(n) && n[i] >= '0' && n[i] <= '9'; i++ {
		if lead && n[i] == '0' {
			continue
		}
		lead = false
		dst = append(dst, n[i])
		point++
	}
	if i < len(n) && n[i] == '.' {
		for i++; i < len(n) && n[i] >= '0' && n[i] <= '9'; i++ {
			if lead && n[i] == '0' {
				point--
				continue
			}
			lead = false
			dst = append(dst, n[i])
		}
	}
	// Trailing zeros carry no value.
	end := len(dst)
	for end > digits && dst[end-1] == '0' {
		end--
	}
	dst = dst[:end]
	if end == digits {
		return append(dst[:start], '0')
	}
	var exp int64
	if i < len(n) && (n[i] == 'e' || n[i] == 'E') {
		i++
		eneg := false
		if i < len(n) && (n[i] == '+' || n[i] == '-') {
			eneg = n[i] == '-'
			i++
		}
		for i < len(n) && n[i] == '0' {
			i++
		}
		if len(n)-i > 15 {
			dst = append(dst, 'e', 'x')
			if eneg {
				dst = append(dst, '-')
			}
			dst = append(dst, n[i:]...)
			dst = append(dst, 'p')
			return strconv.AppendInt(dst, point, 10)
		}
		for ; i < len(n); i++ {
			exp = exp*10 + int64(n[i]-'0')
		}
		if eneg {
			exp = -exp
		}
	}
	dst = append(dst, 'e')
	return strconv.AppendInt(dst, point+exp, 10)
}
