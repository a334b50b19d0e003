package verdict

import (
	"fmt"
	"strings"
)

// OtherRoute is the route label of every route beyond --max-routes.
const OtherRoute = "other"

// Placeholders that replace variable path segments in automatic route
// templates.
const (
	segID    = "{id}"    // a decimal number
	segUUID  = "{uuid}"  // an RFC 9562 UUID (8-4-4-4-12 hex digits)
	segHex   = "{hex}"   // a long hexadecimal string (a hash, an object id)
	segToken = "{token}" // a long random-looking token (base64url and the like)
)

// maxRouteLen bounds a route label: longer paths are cut at a segment
// boundary and end with "/…", so a hostile path cannot make a label (a
// Prometheus label value, a JSON string) arbitrarily large.
const maxRouteLen = 256

// routeTemplate is one --route template, split in segments. A segment
// written {name} matches any one non-empty path segment.
type routeTemplate struct {
	method string   // "" = any method
	segs   []string // path segments after the leading "/"
	path   string   // the template's path as given, e.g. "/users/{id}/posts"
}

// parseRouteTemplate parses a --route value: "/users/{id}/posts" or, to
// restrict it to one method, "GET /users/{id}/posts".
func parseRouteTemplate(s string) (routeTemplate, error) {
	t := routeTemplate{}
	p := strings.TrimSpace(s)
	if m, rest, ok := strings.Cut(p, " "); ok {
		if m == "" || strings.ContainsAny(m, "/{}") {
			return t, fmt.Errorf("route template %q: want /path or METHOD /path", s)
		}
		t.method = strings.ToUpper(m)
		p = strings.TrimSpace(rest)
	}
	if !strings.HasPrefix(p, "/") {
		return t, fmt.Errorf("route template %q: the path must start with /", s)
	}
	if strings.ContainsAny(p, "?# ") {
		return t, fmt.Errorf("route template %q: a template has no query, fragment or space", s)
	}
	if len(p)+18 > maxRouteLen {
		return t, fmt.Errorf("route template %q: longer than %d bytes", s, maxRouteLen-18)
	}
	t.path = p
	t.segs = strings.Split(p[1:], "/")
	for _, seg := range t.segs {
		if strings.ContainsAny(seg, "{}") && !isPlaceholder(seg) {
			return t, fmt.Errorf("route template %q: segment %q: a placeholder is a whole segment, {name}", s, seg)
		}
	}
	return t, nil
}

func isPlaceholder(seg string) bool {
	return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' && !strings.ContainsAny(seg[1:len(seg)-1], "{}")
}

// match reports whether the request's method and path segments fit t.
func (t *routeTemplate) match(method string, segs []string) bool {
	if t.method != "" && t.method != method {
		return false
	}
	if len(segs) != len(t.segs) {
		return false
	}
	for i, ts := range t.segs {
		if isPlaceholder(ts) {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if ts != segs[i] {
			return false
		}
	}
	return true
}

// router turns a request's method and path into its route template,
// "METHOD /path/{id}". It is immutable after newRouter and safe for
// concurrent use.
type router struct {
	templates []routeTemplate
}

func newRouter(templates []string) (*router, error) {
	r := &router{}
	for _, s := range templates {
		t, err := parseRouteTemplate(s)
		if err != nil {
			return nil, err
		}
		r.templates = append(r.templates, t)
	}
	return r, nil
}

// Template returns the route template of a request: the first --route
// template that matches, else the path with its variable segments replaced
// by {id}, {uuid}, {hex} or {token}. A query string, if any, is dropped.
func (r *router) Template(method, path string) string {
	method = normalizeMethod(method)
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	path = strings.ToValidUTF8(path, "\uFFFD")
	segs := strings.Split(path[1:], "/")
	for i := range r.templates {
		if r.templates[i].match(method, segs) {
			return method + " " + r.templates[i].path
		}
	}
	var b strings.Builder
	b.Grow(len(method) + 1 + len(path))
	b.WriteString(method)
	b.WriteByte(' ')
	for _, seg := range segs {
		s := classifySegment(seg)
		if b.Len()+1+len(s) > maxRouteLen {
			b.WriteString("/…")
			break
		}
		b.WriteByte('/')
		b.WriteString(s)
	}
	return b.String()
}

// normalizeMethod upper-cases a method and bounds it: anything that is not
// a short token becomes "OTHER" (replay only replays known methods, but the
// label must stay sane whatever it is handed).
func normalizeMethod(m string) string {
	if m == "" || len(m) > 16 {
		return "OTHER"
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return "OTHER"
		}
	}
	return strings.ToUpper(m)
}

// classifySegment returns the placeholder for a variable path segment, or
// the segment itself.
func classifySegment(s string) string {
	switch {
	case s == "":
		return s
	case isDigits(s):
		return segID
	case isUUID(s):
		return segUUID
	case isLongHex(s):
		return segHex
	case isToken(s):
		return segToken
	}
	return s
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// isUUID: 8-4-4-4-12 hex digits, any version, either case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

// isLongHex: only hex digits, and at least 16 of them, or at least 8 mixing
// digits and letters (a short hash such as a git abbreviation; "deadbeef"
// or "facade" alone stay words).
func isLongHex(s string) bool {
	if len(s) < 8 {
		return false
	}
	digits, letters := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case isHexDigit(c):
			letters++
		default:
			return false
		}
	}
	return len(s) >= 16 || digits > 0 && letters > 0
}

// isToken: at least 20 characters of [A-Za-z0-9_-] that look random rather
// than like words: within the runs between '-' and '_' the character class
// (upper, lower, digit) changes often. A slug ("my-first-article-2024") or
// a long word changes class rarely; base64url or a random id changes it at
// about six characters out of ten.
func isToken(s string) bool {
	if len(s) < 20 {
		return false
	}
	const (
		sep = iota
		upper
		lower
		digit
	)
	class := func(c byte) int {
		switch {
		case c >= 'A' && c <= 'Z':
			return upper
		case c >= 'a' && c <= 'z':
			return lower
		case c >= '0' && c <= '9':
			return digit
		}
		return sep
	}
	var seen [4]bool
	changes, pairs := 0, 0
	prev := sep
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || class(c) != sep) {
			return false
		}
		k := class(c)
		seen[k] = true
		if k != sep && prev != sep {
			pairs++
			if k != prev {
				changes++
			}
		}
		prev = k
	}
	classes := 0
	for _, k := range []int{upper, lower, digit} {
		if seen[k] {
			classes++
		}
	}
	return classes >= 2 && pairs > 0 && changes*10 >= pairs*3
}

// routeSet caps the routes of one target at max: a new template gets its
// own label while there is room, then "other"; a template that has its own
// label keeps it.
type routeSet struct {
	max   int
	known map[string]bool
}

func newRouteSet(max int) *routeSet {
	return &routeSet{max: max, known: make(map[string]bool)}
}

// label returns the route label for a template.
func (s *routeSet) label(tmpl string) string {
	if s.known[tmpl] {
		return tmpl
	}
	if len(s.known) >= s.max {
		return OtherRoute
	}
	s.known[tmpl] = true
	return tmpl
}
