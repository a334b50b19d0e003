package verdict

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cookie differences. Each side's Set-Cookie lines are parsed with net/http
// (lines it rejects are ignored, as browsers ignore them). Cookie values are
// never compared and never written: Production and Shadow hold attributes
// only. Fields:
//
//	NAME              set on one side only, or set a different number of times
//	NAME; Domain      Domain differs (leading dot and case ignored; absent = host-only)
//	NAME; Path        Path differs (absent = the default path of CompareOptions.Path, when given)
//	NAME; Secure      Secure on one side only
//	NAME; HttpOnly    HttpOnly on one side only
//	NAME; SameSite    SameSite differs (an unknown value counts as absent)
//	NAME; Partitioned Partitioned on one side only
//	NAME; Max-Age     lifetime differs: session vs persistent, or by more than
//	                  max(60 s, 1 % of the longer lifetime)
//	NAME; deletion    one side deletes the cookie (Max-Age<=0, or Expires not
//	                  after the response's Date), the other sets it
//
// Lifetimes: Max-Age wins over Expires (RFC 6265); Expires counts from the
// response's own Date header, or the other side's when it has none. When
// neither side has a Date, Expires values are compared with each other
// (tolerance 60 s), an Expires before 2000 counts as a deletion, and an
// Expires is not compared with a Max-Age. An Expires net/http cannot parse
// is ignored, as browsers ignore it (the cookie is a session cookie). So a
// cookie with Expires one hour after Date equals one with Max-Age=3600.
//
// Only the first maxSetCookies lines of a response are compared.
//
// When a name is set several times on a side (different scopes), the lines
// are paired by equal Domain and Path first, then in order of scope.

const maxSetCookies = 100

type lifeKind uint8

const (
	lifeSession lifeKind = iota + 1
	lifeDelete
	lifeRelative // secs after the response
	lifeAbsolute // abs, no Date to count from
)

// oldExpiresUnix (2000-01-01): with no Date to count from, an Expires
// before it is a deletion.
const oldExpiresUnix = 946684800

type lifetime struct {
	kind lifeKind
	secs int64
	abs  time.Time
	desc string // "Max-Age=3600", "Expires=... (3600 s after Date)", "session"
}

type cookieInfo struct {
	name        string
	domain      string // normalized: lower case, no leading dot
	rawDomain   string
	path        string // effective: the default path when absent and known
	rawPath     string
	secure      bool
	httpOnly    bool
	sameSite    http.SameSite
	partitioned bool
	life        lifetime
	scope       string // domain and path, for pairing
	desc        string // attrs(), for ordering and reports
}

// attrs describes the cookie without its value.
func (c *cookieInfo) attrs() string {
	if c.desc != "" {
		return c.desc
	}
	var parts []string
	if c.rawPath != "" {
		parts = append(parts, "Path="+c.rawPath)
	}
	if c.rawDomain != "" {
		parts = append(parts, "Domain="+c.rawDomain)
	}
	if c.life.kind != lifeSession {
		parts = append(parts, c.life.desc)
	}
	if c.secure {
		parts = append(parts, "Secure")
	}
	if c.httpOnly {
		parts = append(parts, "HttpOnly")
	}
	if s := sameSiteString(c.sameSite); s != "" {
		parts = append(parts, s)
	}
	if c.partitioned {
		parts = append(parts, "Partitioned")
	}
	if len(parts) == 0 {
		return "set, no attributes"
	}
	return strings.Join(parts, "; ")
}

func sameSiteString(s http.SameSite) string {
	switch s {
	case http.SameSiteLaxMode:
		return "SameSite=Lax"
	case http.SameSiteStrictMode:
		return "SameSite=Strict"
	case http.SameSiteNoneMode:
		return "SameSite=None"
	}
	return ""
}

// defaultCookiePath is RFC 6265 section 5.1.4's default-path of a request path.
func defaultCookiePath(reqPath string) string {
	if !strings.HasPrefix(reqPath, "/") {
		return "/"
	}
	i := strings.LastIndexByte(reqPath, '/')
	if i == 0 {
		return "/"
	}
	return reqPath[:i]
}

// parseCookies parses a response's Set-Cookie lines. ref is the Date that
// Expires counts from (zero: none).
func parseCookies(h http.Header, ref time.Time, reqPath string) []cookieInfo {
	lines := h.Values("Set-Cookie")
	if len(lines) > maxSetCookies {
		lines = lines[:maxSetCookies]
	}
	out := make([]cookieInfo, 0, len(lines))
	for _, line := range lines {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			continue
		}
		ci := cookieInfo{
			name:        c.Name,
			rawDomain:   c.Domain,
			domain:      strings.ToLower(strings.TrimPrefix(c.Domain, ".")),
			rawPath:     c.Path,
			path:        c.Path,
			secure:      c.Secure,
			httpOnly:    c.HttpOnly,
			sameSite:    c.SameSite,
			partitioned: c.Partitioned,
			life:        cookieLifetime(c, ref),
		}
		if ci.sameSite == http.SameSiteDefaultMode {
			ci.sameSite = 0
		}
		if ci.path == "" || ci.path[0] != '/' { // RFC 6265 5.2.4: such a Path is the default path
			ci.path = ""
			if reqPath != "" {
				ci.path = defaultCookiePath(reqPath)
			}
		}
		ci.scope = ci.domain + "\x00" + ci.path
		ci.desc = ci.attrs()
		out = append(out, ci)
	}
	return out
}

func cookieLifetime(c *http.Cookie, ref time.Time) lifetime {
	switch {
	case c.MaxAge < 0:
		return lifetime{kind: lifeDelete, desc: "Max-Age=0"}
	case c.MaxAge > 0:
		return lifetime{kind: lifeRelative, secs: int64(c.MaxAge), desc: "Max-Age=" + strconv.Itoa(c.MaxAge)}
	case c.RawExpires != "" && !c.Expires.IsZero():
		desc := "Expires=" + c.RawExpires
		if ref.IsZero() {
			if c.Expires.Unix() < oldExpiresUnix {
				return lifetime{kind: lifeDelete, desc: desc}
			}
			return lifetime{kind: lifeAbsolute, abs: c.Expires, desc: desc}
		}
		d := c.Expires.Sub(ref)
		if d <= 0 {
			return lifetime{kind: lifeDelete, desc: desc + " (not after Date)"}
		}
		secs := int64(d / time.Second)
		return lifetime{kind: lifeRelative, secs: secs, desc: desc + " (" + strconv.FormatInt(secs, 10) + " s after Date)"}
	}
	return lifetime{kind: lifeSession, desc: "session"}
}

// lifetimesDiffer says whether two non-deleting lifetimes differ beyond the
// tolerance.
func lifetimesDiffer(a, b lifetime) bool {
	if a.kind == lifeSession || b.kind == lifeSession {
		return a.kind != b.kind
	}
	const minTol = 60 // seconds
	switch {
	case a.kind == lifeRelative && b.kind == lifeRelative:
		tol := max(int64(minTol), max(a.secs, b.secs)/100)
		return absInt(a.secs-b.secs) > tol
	case a.kind == lifeAbsolute && b.kind == lifeAbsolute:
		return absInt(int64(a.abs.Sub(b.abs)/time.Second)) > minTol
	}
	return false // Max-Age vs Expires with no Date on either side: cannot tell
}

func absInt(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func humanLife(l lifetime) string {
	switch l.kind {
	case lifeSession:
		return "until the browser closes"
	case lifeRelative:
		return "for " + (time.Duration(l.secs) * time.Second).String()
	case lifeAbsolute:
		return "until " + l.abs.UTC().Format(time.RFC3339)
	}
	return "not at all"
}

// compareCookies appends the cookie differences between production's and
// the other side's Set-Cookie lines.
func compareCookies(prod, other *Response, reqPath string, out []Difference) []Difference {
	pl, ol := prod.Header.Values("Set-Cookie"), other.Header.Values("Set-Cookie")
	if len(pl) == 0 && len(ol) == 0 {
		return out
	}
	pd, od := responseDate(prod.Header), responseDate(other.Header)
	if pd.IsZero() {
		pd = od
	}
	if od.IsZero() {
		od = pd
	}
	pc := parseCookies(prod.Header, pd, reqPath)
	oc := parseCookies(other.Header, od, reqPath)
	order := func(a, b cookieInfo) int {
		return cmp.Or(strings.Compare(a.name, b.name), strings.Compare(a.scope, b.scope),
			strings.Compare(a.desc, b.desc))
	}
	slices.SortFunc(pc, order)
	slices.SortFunc(oc, order)
	i, j := 0, 0
	for i < len(pc) || j < len(oc) {
		var name string
		switch {
		case i >= len(pc):
			name = oc[j].name
		case j >= len(oc):
			name = pc[i].name
		default:
			name = min(pc[i].name, oc[j].name)
		}
		ie, je := i, j
		for ie < len(pc) && pc[ie].name == name {
			ie++
		}
		for je < len(oc) && oc[je].name == name {
			je++
		}
		out = compareCookieName(name, pc[i:ie], oc[j:je], out)
		i, j = ie, je
	}
	return out
}

func responseDate(h http.Header) time.Time {
	v := h.Get("Date")
	if v == "" {
		return time.Time{}
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// compareCookieName compares the lines that set one cookie name.
func compareCookieName(name string, ps, os []cookieInfo, out []Difference) []Difference {
	switch {
	case len(os) == 0:
		c := &ps[0]
		why := "production sets " + name + ", the shadow does not: clients would stop receiving it"
		if c.life.kind == lifeDelete {
			why = "production deletes " + name + ", the shadow does not: browsers would keep the cookie"
		}
		return append(out, Difference{Kind: KindCookie, Field: name, Production: setDesc(ps), Explanation: why})
	case len(ps) == 0:
		c := &os[0]
		why := "the shadow sets " + name + ", production does not: browsers would receive a cookie they do not get today"
		if c.life.kind == lifeDelete {
			why = "the shadow deletes " + name + ", production does not: browsers would lose the cookie"
		}
		return append(out, Difference{Kind: KindCookie, Field: name, Shadow: setDesc(os), Explanation: why})
	case len(ps) != len(os):
		out = append(out, Difference{Kind: KindCookie, Field: name,
			Production: setDesc(ps), Shadow: setDesc(os),
			Explanation: "production sets " + name + " " + times(len(ps)) + ", the shadow " + times(len(os)) +
				": browsers would hold another set of cookies named " + name})
	}
	// Pair equal scopes first, then the rest in order.
	usedP := make([]bool, len(ps))
	usedO := make([]bool, len(os))
	for a := range ps {
		for b := range os {
			if !usedO[b] && ps[a].scope == os[b].scope {
				usedP[a], usedO[b] = true, true
				out = compareCookiePair(name, &ps[a], &os[b], out)
				break
			}
		}
	}
	b := 0
	for a := range ps {
		if usedP[a] {
			continue
		}
		for b < len(os) && usedO[b] {
			b++
		}
		if b == len(os) {
			break
		}
		usedO[b] = true
		out = compareCookiePair(name, &ps[a], &os[b], out)
	}
	return out
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return strconv.Itoa(n) + " times"
}

func setDesc(cs []cookieInfo) string {
	if len(cs) == 1 {
		return cs[0].attrs()
	}
	parts := make([]string, len(cs))
	for i := range cs {
		parts[i] = cs[i].attrs()
	}
	return strconv.Itoa(len(cs)) + " lines: " + strings.Join(parts, " | ")
}

// compareCookiePair compares the attributes of one cookie as both sides set it.
func compareCookiePair(name string, p, o *cookieInfo, out []Difference) []Difference {
	add := func(attr, pv, ov, why string) {
		out = append(out, Difference{Kind: KindCookie, Field: name + "; " + attr, Production: pv, Shadow: ov, Explanation: why})
	}
	with := func(attr, v string) string {
		if v == "" {
			return "without " + attr
		}
		return "with " + attr + "=" + v
	}
	kv := func(attr, v string) string {
		if v == "" {
			return ""
		}
		return attr + "=" + v
	}
	twoCookies := ": a browser that holds both keeps two cookies named " + name
	if p.domain != o.domain {
		add("Domain", kv("Domain", p.rawDomain), kv("Domain", o.rawDomain),
			"production sets "+name+" "+with("Domain", p.rawDomain)+", the shadow "+with("Domain", o.rawDomain)+twoCookies)
	}
	if p.path != o.path {
		add("Path", kv("Path", p.rawPath), kv("Path", o.rawPath),
			"production sets "+name+" "+with("Path", p.rawPath)+", the shadow "+with("Path", o.rawPath)+twoCookies)
	}
	flag := func(attr string, pv, ov bool, consequence string) {
		if pv == ov {
			return
		}
		ps, os := "", ""
		who, whoNot := "production", "the shadow"
		if pv {
			ps = attr
		} else {
			os = attr
			who, whoNot = "the shadow", "production"
		}
		add(attr, ps, os, who+" sets "+name+" with "+attr+", "+whoNot+" without: "+consequence)
	}
	flag("Secure", p.secure, o.secure, "browsers send one of them over plain HTTP and the other not")
	flag("HttpOnly", p.httpOnly, o.httpOnly, "page scripts can read one of them and not the other")
	if p.sameSite != o.sameSite {
		ps, os := sameSiteString(p.sameSite), sameSiteString(o.sameSite)
		add("SameSite", ps, os, "production sets "+name+" "+orWithout(ps, "SameSite")+", the shadow "+orWithout(os, "SameSite")+
			": browsers send it on different cross-site requests")
	}
	flag("Partitioned", p.partitioned, o.partitioned, "browsers store one of them per top-level site and the other not")
	pdel, odel := p.life.kind == lifeDelete, o.life.kind == lifeDelete
	switch {
	case pdel && odel:
	case pdel || odel:
		why := "production deletes " + name + ", the shadow sets it " + humanLife(o.life) + ": browsers would keep a cookie production removes"
		if odel {
			why = "the shadow deletes " + name + ", production sets it " + humanLife(p.life) + ": browsers would lose a cookie production keeps"
		}
		add("deletion", p.life.desc, o.life.desc, why)
	case lifetimesDiffer(p.life, o.life):
		add("Max-Age", p.life.desc, o.life.desc,
			"production keeps "+name+" "+humanLife(p.life)+", the shadow "+humanLife(o.life)+": it expires at another time")
	}
	return out
}

func orWithout(v, attr string) string {
	if v == "" {
		return "without " + attr
	}
	return "with " + v
}
