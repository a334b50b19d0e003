package replay

import (
	"bytes"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// errInvalid marks a mirrored request that cannot be rebuilt.
var errInvalid = errors.New("invalid request")

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 7.6.1, plus the de facto Proxy-Connection and Keep-Alive). They
// are removed, as are the headers named in Connection.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHopByHop(canonical string) bool {
	for _, h := range hopByHop {
		if h == canonical {
			return true
		}
	}
	return false
}

// rewriter turns a mirrored request into the request sent to one target.
type rewriter struct {
	host string     // Config.Host
	set  []HeaderKV // canonical names
	drop []string   // canonical names
	mark bool
}

func newRewriter(cfg *Config) rewriter {
	rw := rewriter{host: cfg.Host, mark: cfg.Marker}
	for _, kv := range cfg.SetHeaders {
		rw.set = append(rw.set, HeaderKV{Name: textproto.CanonicalMIMEHeaderKey(kv.Name), Value: kv.Value})
	}
	for _, name := range cfg.DropHeaders {
		rw.drop = append(rw.drop, textproto.CanonicalMIMEHeaderKey(name))
	}
	return rw
}

// request is a mirrored request rebuilt for one target, as the bytes that
// go on the wire: written straight from the mirrored head into a buffer the
// worker reuses, without an http.Request, a header map or net/http's
// sorting (they cost about a fifth of the replay's CPU).
type request struct {
	method string // for reading the answer (HEAD has no body) and for retries
	head   []byte // request line and header section through the blank line
	body   []byte // a view of the exchange's body: valid until it is released
	// idempotent: the request carries Idempotency-Key or X-Idempotency-Key,
	// so it may be sent again whatever its method.
	idempotent bool
}

// build writes the request for ex to the target into dst (reused; the
// result's head aliases it). The request keeps the original method, path and
// query (as sent), Host and header fields in their order, minus the
// hop-by-hop ones; see the package documentation. The bytes are what
// net/http would send for the same request, but for the order of fields.
//
// targetHost is the target's host, sent when the request has no Host and
// there is no --host; basePath is the target URL's path prefix; nth is the
// copy number (Config.Multiply), the marker header's value.
func (rw *rewriter) build(dst []byte, targetHost, basePath string, ex *httpx.Exchange, nth int) (request, error) {
	req := &ex.Req
	if !isToken(req.Method) {
		return request{}, fmt.Errorf("%w: bad method", errInvalid)
	}
	authority, path, query := splitTarget(req.Target)
	if !validURIBytes(path) || !validURIBytes(query) || !validURIBytes(authority) {
		return request{}, fmt.Errorf("%w: bad request target", errInvalid)
	}
	out := request{method: methodName(req.Method), body: req.Body}

	b := append(dst[:0], req.Method...)
	b = append(b, ' ')
	switch {
	case len(path) == 1 && path[0] == '*':
		b = append(b, '*')
	case len(path) == 0 || path[0] != '/':
		return request{}, fmt.Errorf("%w: request target is not origin or absolute form", errInvalid)
	default:
		// Sent verbatim: the path reaches the shadow as production
		// received it, escapes and all.
		b = append(b, basePath...)
		b = append(b, path...)
	}
	if query != nil {
		b = append(b, '?')
		b = append(b, query...)
	}

	// The Host header, or --host. Never the absolute form's authority
	// (RFC 9112 3.2.2 lets it win over Host at the origin): it is any text
	// the sender chose, and a vhost-routing ingress in front of the shadow
	// would route on it. Without either, the target's host.
	b = append(b, " HTTP/1.1\r\nHost: "...)
	hostAt := len(b)
	switch {
	case rw.host != "":
		b = append(b, rw.host...)
	default:
		if v := bytes.TrimSpace(httpx.Get(req.Fields, "Host")); len(v) > 0 {
			b = append(b, v...)
		} else {
			b = append(b, targetHost...)
		}
	}
	if !validHost(b[hostAt:]) {
		return request{}, fmt.Errorf("%w: bad Host", errInvalid)
	}
	b = append(b, "\r\n"...)

	var connBuf [4]string
	conn := connectionTokens(connBuf[:0], req.Fields)
	var xffBuf [4][]byte
	xff := xffBuf[:0]
	var hasProto, hasPort bool
	for i := range req.Fields {
		f := &req.Fields[i]
		name := canonicalName(f.Name)
		switch name {
		case "Host", "Content-Length", "Expect":
			continue // Host is above; the body sets its length; the body is sent at once
		case "X-Forwarded-For":
			if v := bytes.TrimSpace(f.Value); len(v) > 0 {
				xff = append(xff, v)
			}
			continue
		case "X-Forwarded-Proto":
			hasProto = true
		case "X-Forwarded-Port":
			hasPort = true
		case "Idempotency-Key", "X-Idempotency-Key":
			out.idempotent = out.idempotent || !rw.replaced(name)
		}
		if isHopByHop(name) || containsString(conn, name) || rw.replaced(name) {
			continue
		}
		var err error
		if b, err = appendField(b, name, f.Value); err != nil {
			return request{}, err
		}
	}
	if !rw.replaced("X-Forwarded-For") {
		if ip := ex.Conn.Client.Addr(); ip.IsValid() || len(xff) > 0 {
			b = append(b, "X-Forwarded-For: "...)
			at := len(b)
			for i, v := range xff {
				if i > 0 {
					b = append(b, ", "...)
				}
				b = append(b, v...)
			}
			if ip.IsValid() {
				if len(xff) > 0 {
					b = append(b, ", "...)
				}
				b = ip.Unmap().WithZone("").AppendTo(b)
			}
			if !validValue(b[at:]) {
				return request{}, fmt.Errorf("%w: invalid header field value for %q", errInvalid, "X-Forwarded-For")
			}
			b = append(b, "\r\n"...)
		}
	}
	if !hasProto && !rw.replaced("X-Forwarded-Proto") {
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}
	if port := ex.Conn.Server.Port(); !hasPort && port != 0 && !rw.replaced("X-Forwarded-Port") {
		b = append(b, "X-Forwarded-Port: "...)
		b = strconv.AppendUint(b, uint64(port), 10)
		b = append(b, "\r\n"...)
	}
	for _, kv := range rw.set {
		var err error
		if b, err = appendField(b, kv.Name, []byte(kv.Value)); err != nil {
			return request{}, err
		}
		out.idempotent = out.idempotent || kv.Name == "Idempotency-Key" || kv.Name == "X-Idempotency-Key"
	}
	if rw.mark && !containsString(rw.drop, MarkerHeader) {
		b = append(b, MarkerHeader+": "...)
		b = strconv.AppendInt(b, int64(max(nth, 1)), 10)
		b = append(b, "\r\n"...)
	}
	if n := len(req.Body); n > 0 || sendsZeroLength(out.method) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, "\r\n"...)
	}
	out.head = append(b, "\r\n"...)
	return out, nil
}

// replaced says whether a mirrored field of this canonical name is left out
// because --set-header replaces it, --drop-header removes it, or it is the
// marker header, which shadowtap sets itself.
func (rw *rewriter) replaced(name string) bool {
	if (rw.mark && name == MarkerHeader) || containsString(rw.drop, name) {
		return true
	}
	for _, kv := range rw.set {
		if kv.Name == name {
			return true
		}
	}
	return false
}

// appendField appends "name: value" and CRLF, value without surrounding
// blanks, after checking both as http.Transport does before sending.
func appendField(b []byte, name string, value []byte) ([]byte, error) {
	if !isToken(name) {
		return b, fmt.Errorf("%w: invalid header field name %q", errInvalid, name)
	}
	value = bytes.Trim(value, " \t")
	if !validValue(value) {
		// Not the value: it may be sensitive.
		return b, fmt.Errorf("%w: invalid header field value for %q", errInvalid, name)
	}
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...), nil
}

// validValue reports whether v can be a field value: no control bytes but
// tab.
func validValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether h can be sent as Host: the bytes net/http's
// httpguts.ValidHostHeader allows (RFC 3986 reg-name, IP literals, port).
func validHost(h []byte) bool {
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// sendsZeroLength reports whether a request of this method without a body
// says "Content-Length: 0", as net/http sends it.
func sendsZeroLength(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

// methodName returns the method as a string, without allocating for the
// registered ones.
func methodName(m []byte) string {
	for _, name := range [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"} {
		if string(m) == name {
			return name
		}
	}
	return string(m)
}

// connectionTokens appends to out the canonical header names listed in
// Connection.
func connectionTokens(out []string, fields []httpx.Field) []string {
	for i := range fields {
		if !bytes.EqualFold(fields[i].Name, []byte("Connection")) {
			continue
		}
		v := fields[i].Value
		for len(v) > 0 {
			tok := v
			if c := bytes.IndexByte(v, ','); c >= 0 {
				tok, v = v[:c], v[c+1:]
			} else {
				v = nil
			}
			if tok = bytes.TrimSpace(tok); len(tok) > 0 {
				out = append(out, canonicalName(tok))
			}
		}
	}
	return out
}

// knownNames maps common header names, as listed (canonical, or as servers
// spell them) or in lower case, to their canonical form, so that
// canonicalName need not allocate for them.
var knownNames = func() map[string]string {
	names := [...]string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Authorization", "Cache-Control", "Connection", "Content-Encoding",
		"Content-Length", "Content-Type", "Cookie", "Date", "Dnt", "Expect",
		"Forwarded", "From", "Host", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive",
		"Origin", "Pragma", "Priority", "Proxy-Authorization", "Proxy-Connection",
		"Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Upgrade-Insecure-Requests", "User-Agent", "Via", "X-Correlation-Id",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id", "X-Requested-With",
		// Responses' (production's header, headerOf), in the case
		// servers send them.
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Origin",
		"Age", "Content-Disposition", "Content-Language", "Content-Range",
		"Content-Security-Policy", "ETag", "Expires", "Last-Modified", "Link", "Location",
		"Referrer-Policy", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security",
		"Vary", "WWW-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Powered-By",
		"X-XSS-Protection",
	}
	m := make(map[string]string, 2*len(names))
	for _, n := range names {
		for _, k := range [...]string{n, strings.ToLower(n)} {
			m[k] = textproto.CanonicalMIMEHeaderKey(k)
		}
	}
	return m
}()

// canonicalName is textproto.CanonicalMIMEHeaderKey(string(name)), without
// allocating for the common names.
func canonicalName(name []byte) string {
	if c, ok := knownNames[string(name)]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validURIBytes reports whether b can go into a request line unchanged:
// no control bytes or spaces (which would break it).
func validURIBytes(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
