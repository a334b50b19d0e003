package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"

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

// build makes the outgoing request for ex to the target base URL. The
// request keeps the original method, path and query (as sent), Host and
// headers, minus the hop-by-hop ones; see the package documentation.
//
// The body is a view of ex's buffers: every body handed out is counted in
// bodies until closed, and must be closed before ex is released to its pool.
// The worker writes the request synchronously ((*http.Request).Write closes
// the body) and closes it itself when the request is not written.
//
// nth is the copy number (Config.Multiply), the marker header's value.
func (rw *rewriter) build(ctx context.Context, base *url.URL, basePath string, ex *httpx.Exchange, nth int, bodies *sync.WaitGroup) (*http.Request, error) {
	req := &ex.Req
	if !isToken(string(req.Method)) {
		return nil, fmt.Errorf("%w: bad method", errInvalid)
	}
	authority, path, query := splitTarget(req.Target)
	if !validURIBytes(path) || !validURIBytes(query) || !validURIBytes(authority) {
		return nil, fmt.Errorf("%w: bad request target", errInvalid)
	}
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, RawQuery: string(query), ForceQuery: query != nil && len(query) == 0}
	switch {
	case len(path) == 1 && path[0] == '*':
		u.Opaque = "*"
	case len(path) == 0 || path[0] != '/':
		return nil, fmt.Errorf("%w: request target is not origin or absolute form", errInvalid)
	default:
		p := basePath + string(path)
		if strings.HasPrefix(p, "//") {
			// As Opaque, "//x" would be sent as "http://x": go through Path.
			dec, err := url.PathUnescape(p)
			if err != nil {
				return nil, fmt.Errorf("%w: bad path escape", errInvalid)
			}
			u.Path, u.RawPath = dec, p
		} else {
			// Opaque is sent verbatim: the path reaches the shadow as
			// production received it, escapes and all.
			u.Opaque = p
		}
	}

	// Fewer allocations per request: every field value is a substring of
	// one string, and every header's first value a one-element, full-cap
	// slice of one backing array (a repeated header grows its own copy).
	size := 0
	for i := range req.Fields {
		size += len(req.Fields[i].Value)
	}
	var sb strings.Builder
	sb.Grow(size)
	for i := range req.Fields {
		sb.Write(req.Fields[i].Value)
	}
	all := sb.String()
	vals := make([]string, 0, len(req.Fields)+5+len(rw.set))
	one := func(v string) []string {
		vals = append(vals, v)
		return vals[len(vals)-1 : len(vals) : len(vals)]
	}

	h := make(http.Header, len(req.Fields)+5)
	var connBuf [4]string
	conn := connectionTokens(connBuf[:0], req.Fields)
	var xffBuf [2]string
	xff := xffBuf[:0]
	off := 0
	for i := range req.Fields {
		f := &req.Fields[i]
		value := all[off : off+len(f.Value)]
		off += len(f.Value)
		name := canonicalName(f.Name)
		switch name {
		case "Host", "Content-Length", "Expect":
			continue // Host goes to req.Host; the body sets its length; the body is sent at once
		case "X-Forwarded-For":
			if v := strings.TrimSpace(value); v != "" {
				xff = append(xff, v)
			}
			continue
		}
		if isHopByHop(name) || containsString(conn, name) {
			continue
		}
		if vs, ok := h[name]; ok {
			h[name] = append(vs, value)
		} else {
			h[name] = one(value)
		}
	}
	if ip := ex.Conn.Client.Addr(); ip.IsValid() {
		xff = append(xff, ip.Unmap().WithZone("").String())
	}
	if len(xff) > 0 {
		h["X-Forwarded-For"] = one(strings.Join(xff, ", "))
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		h["X-Forwarded-Proto"] = one("http")
	}
	if _, ok := h["X-Forwarded-Port"]; !ok && ex.Conn.Server.Port() != 0 {
		h["X-Forwarded-Port"] = one(strconv.Itoa(int(ex.Conn.Server.Port())))
	}
	for _, kv := range rw.set {
		h[kv.Name] = one(kv.Value)
	}
	if rw.mark {
		h[MarkerHeader] = one(strconv.Itoa(max(nth, 1))) // no allocation below 100
	}
	for _, name := range rw.drop {
		delete(h, name)
	}
	if _, ok := h["User-Agent"]; !ok {
		// Present but nil: net/http then sends no User-Agent instead of its own.
		h["User-Agent"] = nil
	}

	// The Host header, or --host. Never the absolute form's authority
	// (RFC 9112 3.2.2 lets it win over Host at the origin): it is any text
	// the sender chose, and a vhost-routing ingress in front of the shadow
	// would route on it. Without either, net/http sends the target's host.
	host := rw.host
	if host == "" {
		if v := httpx.Get(req.Fields, "Host"); v != nil {
			host = strings.TrimSpace(string(v))
		}
	}

	out := &http.Request{
		Method:     string(req.Method),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       host,
	}
	if n := len(req.Body); n > 0 {
		body := req.Body
		newBody := func() *trackedBody {
			bodies.Add(1)
			return &trackedBody{Reader: bytes.NewReader(body), closed: bodies.Done}
		}
		out.ContentLength = int64(n)
		out.Body = newBody()
		out.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
	}
	return out.WithContext(ctx), nil
}

// trackedBody is a request body that reports its Close once.
type trackedBody struct {
	*bytes.Reader
	once   sync.Once
	closed func()
}

func (b *trackedBody) Close() error {
	b.once.Do(b.closed)
	return nil
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

// knownNames maps common header names, as sent in canonical or lower case,
// to their canonical form, so that canonicalName need not allocate for them.
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
