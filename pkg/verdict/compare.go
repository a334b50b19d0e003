package verdict

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// CompareOptions say what is compared for one route.
type CompareOptions struct {
	// IgnoreHeaders are header names never compared (the default noise
	// list plus --ignore-header), matched case-insensitively.
	IgnoreHeaders map[string]bool
	// IgnoreJSONPaths are normalized JSON paths removed before comparing
	// bodies (--ignore-json-path for this route or every route). Both
	// $['items'][*]['price'] and $.items[*].price are accepted (see
	// ValidateJSONPath); a path matches its value and everything under it.
	// Invalid paths are skipped: check them with ValidateJSONPath first.
	IgnoreJSONPaths []string
	// Host is the request's Host: a Location naming it (any scheme) is
	// compared by its path and query only.
	Host string
	// Method is the request method: HEAD answers have no body.
	Method string
	// MaxPaths bounds the JSON paths reported per exchange (default 20).
	MaxPaths int

	// Path is the request path without the query (optional): a Set-Cookie
	// without Path gets its default path from it, so "Path=/" and no Path
	// on a request for "/login" are the same. When empty, a missing Path
	// differs from any given one.
	Path string
	// RedactHeaders are header names (any case) whose values never appear
	// in a Difference ("REDACTED" stands for a present value).
	// Authorization, Proxy-Authorization and Cookie are always redacted;
	// Set-Cookie is compared by the cookie kind, never as a header.
	RedactHeaders map[string]bool
	// MaxDecodedBytes bounds what one side's body may decode to
	// (default DefaultMaxDecodedBytes); beyond it the body is unverified.
	MaxDecodedBytes int64
}

// Result is a comparison's full outcome.
type Result struct {
	Diffs []Difference
	// BodyUnverified says the bodies could not be compared: a body was
	// incomplete (beyond the compare limit) with content codings that make
	// the hashes inconclusive, could not be decoded, or decodes to more
	// than the bound. UnverifiedReason is then one of the Unverified*
	// constants. Nothing is reported for the body in that case.
	BodyUnverified   bool
	UnverifiedReason string
	// BodyPathsOmitted counts differing JSON paths beyond MaxPaths (the
	// last body Difference's Explanation says so too).
	BodyPathsOmitted int
}

// Redacted stands for a secret header value in a Difference.
const Redacted = "REDACTED"

// Compare returns the differences between production's response and
// another answer, after the ignore rules; empty when they are the same.
// Differences come in kind order (status, header, cookie, body), headers
// and cookies sorted by name, JSON paths in document order with members
// sorted by name.
func Compare(prod, other *Response, opt *CompareOptions) []Difference {
	return CompareDetailed(prod, other, opt).Diffs
}

// CompareDetailed is Compare that also says whether the bodies could be
// verified. prod and other must not be nil.
func CompareDetailed(prod, other *Response, opt *CompareOptions) Result {
	if opt == nil {
		opt = &CompareOptions{}
	}
	var res Result
	if prod.Status != other.Status {
		res.Diffs = append(res.Diffs, Difference{Kind: KindStatus, Field: "status",
			Production: strconv.Itoa(prod.Status), Shadow: strconv.Itoa(other.Status)})
	}
	res.Diffs = compareHeaders(prod.Header, other.Header, opt, res.Diffs)
	res.Diffs = compareCookies(prod, other, opt.Path, res.Diffs)
	compareBodies(prod, other, opt, &res)
	return res
}

// secretHeader says whether a header's value must never be written.
func secretHeader(name string, opt *CompareOptions) bool {
	switch name {
	case "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie":
		return true
	}
	return inSet(opt.RedactHeaders, name)
}

// inSet looks a canonical header name up in a set whose keys may be
// spelled otherwise ("ETag" for Go's "Etag", "WWW-Authenticate").
func inSet(set map[string]bool, name string) bool {
	if len(set) == 0 {
		return false
	}
	if v, ok := set[name]; ok {
		return v
	}
	for k, v := range set {
		if v && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func compareHeaders(ph, oh http.Header, opt *CompareOptions, out []Difference) []Difference {
	names := make([]string, 0, len(ph)+len(oh))
	for k := range ph {
		names = append(names, k)
	}
	for k := range oh {
		if _, ok := ph[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		name := http.CanonicalHeaderKey(k)
		if name == "Set-Cookie" || inSet(opt.IgnoreHeaders, name) {
			continue
		}
		pvs, pok := ph[k]
		ovs, ook := oh[k]
		pv, ov := joinValues(pvs), joinValues(ovs)
		if pok == ook && headerEqual(name, pv, ov, opt.Host) {
			continue
		}
		d := Difference{Kind: KindHeader, Field: name, Production: pv, Shadow: ov, Explanation: headerExplanation(name)}
		if secretHeader(name, opt) {
			d.Production, d.Shadow = "", ""
			if pok {
				d.Production = Redacted
			}
			if ook {
				d.Shadow = Redacted
			}
		}
		out = append(out, d)
	}
	return out
}

func joinValues(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return strings.TrimSpace(vs[0])
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strings.TrimSpace(v)
	}
	return strings.Join(parts, ", ")
}

func headerEqual(name, a, b, host string) bool {
	if a == b {
		return true
	}
	switch name {
	case "Location":
		return siteRelative(a, host) == siteRelative(b, host)
	case "Content-Type":
		return mediaTypeEqual(a, b)
	}
	return false
}

// mediaTypeEqual compares media types as RFC 9110 does: type, subtype and
// parameter names case-insensitively, charset values too.
func mediaTypeEqual(a, b string) bool {
	ta, pa, erra := mime.ParseMediaType(a)
	tb, pb, errb := mime.ParseMediaType(b)
	if erra != nil || errb != nil || ta != tb || len(pa) != len(pb) {
		return false
	}
	for k, va := range pa {
		vb, ok := pb[k]
		if !ok || (va != vb && !(k == "charset" && strings.EqualFold(va, vb))) {
			return false
		}
	}
	return true
}

// siteRelative returns a Location without its scheme and host when the host
// is the site's own (host compared case-insensitively, a default port equal
// to none); otherwise the Location as it is.
func siteRelative(loc, host string) string {
	if host == "" || !strings.Contains(loc, "//") {
		return loc
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return loc
	}
	switch strings.ToLower(u.Scheme) {
	case "", "http", "https":
	default:
		return loc
	}
	hh, hp := splitHost(host)
	if !strings.EqualFold(u.Hostname(), hh) || !samePort(u.Port(), hp, strings.ToLower(u.Scheme)) {
		return loc
	}
	after := loc[strings.Index(loc, "//")+2:]
	rest := ""
	if i := strings.IndexAny(after, "/?#"); i >= 0 {
		rest = after[i:]
	}
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	return rest
}

// splitHost splits a Host header into host and port ("" when none).
func splitHost(h string) (string, string) {
	if strings.HasPrefix(h, "[") {
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return h, ""
		}
		host, rest := h[1:i], h[i+1:]
		return host, strings.TrimPrefix(rest, ":")
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		return h[:i], h[i+1:]
	}
	return h, ""
}

func samePort(a, b, scheme string) bool {
	if a == b {
		return true
	}
	if a != "" && b != "" {
		return false
	}
	p := a + b // the one given
	switch scheme {
	case "http":
		return p == "80"
	case "https":
		return p == "443"
	}
	return p == "80" || p == "443"
}

// headerExplanation says in one line what a difference in a well-known
// header means for users ("" for others).
func headerExplanation(name string) string {
	switch name {
	case "Cache-Control", "Pragma":
		return "caching differs: browsers and CDNs keep the answer for another time, or not at all"
	case "Vary":
		return "caches key the answer on other request headers"
	case "Location":
		return "the redirect leads elsewhere"
	case "Content-Type":
		return "clients may parse or display the body differently"
	case "Content-Disposition":
		return "browsers display or download the answer differently"
	case "Content-Language":
		return "clients see another language tag"
	case "Strict-Transport-Security":
		return "browsers keep to HTTPS for another time, or not at all"
	case "Content-Security-Policy", "Content-Security-Policy-Report-Only":
		return "browsers allow other scripts, styles or frames on the page"
	case "X-Frame-Options":
		return "other sites may frame the page, or no longer may"
	case "X-Content-Type-Options":
		return "browsers may sniff the content type"
	case "Www-Authenticate":
		return "clients are asked for other credentials"
	case "Retry-After":
		return "clients retry at another time"
	}
	if strings.HasPrefix(name, "Access-Control-") {
		return "CORS differs: browsers may block cross-origin calls that work against production, or allow others"
	}
	return ""
}

// compareBodies compares decoded bodies: JSON structurally, anything else
// byte for byte.
func compareBodies(prod, other *Response, opt *CompareOptions, res *Result) {
	if strings.EqualFold(opt.Method, http.MethodHead) || noBody(prod.Status) || noBody(other.Status) {
		return
	}
	pc := contentCodings(prod.Header.Values("Content-Encoding"))
	oc := contentCodings(other.Header.Values("Content-Encoding"))
	if !prod.BodyComplete || !other.BodyComplete {
		compareHashes(prod, other, pc, oc, UnverifiedIncomplete, res)
		return
	}
	limit := opt.MaxDecodedBytes
	if limit <= 0 {
		limit = DefaultMaxDecodedBytes
	}
	pb, prel, perr := decodeBody(prod.Body, pc, limit)
	defer prel()
	ob, orel, oerr := decodeBody(other.Body, oc, limit)
	defer orel()
	if perr != nil || oerr != nil {
		reason := UnverifiedEncoding
		for _, err := range []error{perr, oerr} {
			if de, ok := err.(*decodeError); ok && de.reason == UnverifiedTooLarge {
				reason = UnverifiedTooLarge
			}
		}
		compareHashes(prod, other, pc, oc, reason, res)
		return
	}
	if bytes.Equal(pb, ob) {
		return
	}
	if looksJSON(prod.Header, other.Header, pb, ob) {
		maxPaths := opt.MaxPaths
		if maxPaths <= 0 {
			maxPaths = defaultMaxPaths
		}
		if jsonValueBound(pb) > maxJSONValues || jsonValueBound(ob) > maxJSONValues {
			res.BodyUnverified, res.UnverifiedReason = true, UnverifiedTooLarge
			return
		}
		var pats []jsonPattern
		for _, p := range opt.IgnoreJSONPaths {
			if pat, err := parseJSONPattern(p); err == nil {
				pats = append(pats, pat)
			}
		}
		res.Diffs, res.BodyPathsOmitted = diffJSON(pb, ob, pats, maxPaths, res.Diffs)
		return
	}
	res.Diffs = append(res.Diffs, bytesDifference(pb, ob))
}

// noBody says whether a status never has a body (RFC 9110: 1xx, 204, 304).
func noBody(status int) bool {
	return status/100 == 1 || status == http.StatusNoContent || status == http.StatusNotModified
}

// compareHashes compares bodies that cannot be decoded and compared: by
// hash and length when both sides name the same content codings. Equal
// hashes mean equal bodies. Different hashes are a difference only without
// content coding (compressed bytes may differ for equal content); else the
// body is unverified, as it is when the codings differ.
func compareHashes(prod, other *Response, pc, oc []string, reason string, res *Result) {
	if sameCodings(pc, oc) {
		ph, pl := bodyHash(prod)
		oh, ol := bodyHash(other)
		if ph == oh && pl == ol {
			return
		}
		if len(pc) == 0 {
			res.Diffs = append(res.Diffs, Difference{Kind: KindBody, Field: "body",
				Production: sizeDesc(pl), Shadow: sizeDesc(ol),
				Explanation: "bodies differ (compared by hash: a body is beyond the compare limit)"})
			return
		}
	}
	res.BodyUnverified, res.UnverifiedReason = true, reason
}

// bodyHash returns the FNV-1a 64 hash and the length of the whole body.
func bodyHash(r *Response) (uint64, int64) {
	if !r.BodyComplete {
		return r.BodyHash, r.BodyLen
	}
	h := fnv.New64a()
	h.Write(r.Body)
	return h.Sum64(), int64(len(r.Body))
}

func sizeDesc(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// bytesDifference describes two different bodies of other media types.
func bytesDifference(a, b []byte) Difference {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	return Difference{Kind: KindBody, Field: "body",
		Production: sizeDesc(int64(len(a))), Shadow: sizeDesc(int64(len(b))),
		Explanation: "first difference at byte offset " + strconv.Itoa(i)}
}

// looksJSON says whether two decoded bodies are compared as JSON: both
// parse, and either side's Content-Type is JSON (application/json or
// +json) or both start with { or [.
func looksJSON(ph, oh http.Header, a, b []byte) bool {
	if !(jsonType(ph.Get("Content-Type")) || jsonType(oh.Get("Content-Type"))) &&
		!(jsonStart(a) && jsonStart(b)) {
		return false
	}
	return json.Valid(a) && json.Valid(b)
}

func jsonType(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	return strings.EqualFold(ct, "application/json") ||
		(len(ct) > 5 && strings.EqualFold(ct[len(ct)-5:], "+json"))
}

func jsonStart(b []byte) bool {
	i := skipSpace(b, 0)
	return i < len(b) && (b[i] == '{' || b[i] == '[')
}
