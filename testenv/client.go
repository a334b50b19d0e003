package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// RecordingConn is a net.Conn that keeps a copy of every byte written and
// read, so a test knows exactly what went over the connection.
type RecordingConn struct {
	net.Conn
	mu       sync.Mutex
	sent     bytes.Buffer
	received bytes.Buffer
}

// NewRecordingConn wraps c.
func NewRecordingConn(c net.Conn) *RecordingConn { return &RecordingConn{Conn: c} }

// Read reads from the connection and records what it read.
func (c *RecordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.received.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// Write records p and writes it; on a short write only the bytes written
// stay recorded. Bytes are recorded before they reach the peer, so a peer
// that has read them can never see a record without them.
func (c *RecordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	before := c.sent.Len()
	c.sent.Write(p)
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if n < len(p) {
		c.mu.Lock()
		c.sent.Truncate(before + n)
		c.mu.Unlock()
	}
	return n, err
}

// Sent returns a copy of the bytes written so far.
func (c *RecordingConn) Sent() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.sent.Bytes())
}

// Received returns a copy of the bytes read so far.
func (c *RecordingConn) Received() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.received.Bytes())
}

// Record returns the connection's addresses and bytes.
func (c *RecordingConn) Record() ConnRecord {
	return ConnRecord{
		Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(),
		Sent: c.Sent(), Received: c.Received(),
	}
}

// Request is an HTTP/1.x request that the lab client writes byte for byte as
// Wire describes, whatever net/http would do.
type Request struct {
	Method string // default GET
	Target string // default "/"
	Proto  string // default HTTP/1.1
	// Host is the Host header; default the address dialed. "-" omits it.
	Host string
	// Header is written after Host in sorted key order.
	Header http.Header
	Body   []byte
	// Chunked sends Body with Transfer-Encoding: chunked in ChunkSize pieces
	// (default 1000) and a trailer-less last chunk.
	Chunked   bool
	ChunkSize int
	// Close adds Connection: close.
	Close bool
}

func (r Request) method() string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

// Wire returns the exact bytes of the request. host is the default Host.
// Content-Length is added when the body is not empty or the method is
// POST, PUT or PATCH, unless Chunked or the caller set it.
func (r Request) Wire(host string) []byte {
	var b bytes.Buffer
	target, proto := r.Target, r.Proto
	if target == "" {
		target = "/"
	}
	if proto == "" {
		proto = "HTTP/1.1"
	}
	fmt.Fprintf(&b, "%s %s %s\r\n", r.method(), target, proto)
	switch {
	case r.Host == "-":
	case r.Host != "":
		fmt.Fprintf(&b, "Host: %s\r\n", r.Host)
	default:
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	m := r.method()
	switch {
	case r.Chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case r.Header.Get("Content-Length") != "":
	case len(r.Body) > 0 || m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	if r.Close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	if !r.Chunked {
		b.Write(r.Body)
		return b.Bytes()
	}
	size := r.ChunkSize
	if size <= 0 {
		size = 1000
	}
	for body := r.Body; len(body) > 0; {
		k := min(size, len(body))
		fmt.Fprintf(&b, "%x\r\n", k)
		b.Write(body[:k])
		b.WriteString("\r\n")
		body = body[k:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// Exchange is one request of a Conversation and the response to it.
type Exchange struct {
	Request      Request
	RequestBytes []byte // exactly what was written for this request

	Status         int
	ResponseHeader http.Header
	ResponseBody   []byte // decoded (de-chunked) body
	// ResponseBytes is exactly what was read for this response, including
	// any interim 1xx responses before it.
	ResponseBytes []byte
}

// Conversation is one client connection: every byte each way, and the
// exchanges on it in order. Sent is the concatenation of the exchanges'
// RequestBytes, Received of their ResponseBytes.
type Conversation struct {
	Local, Remote netip.AddrPort
	Sent          []byte
	Received      []byte
	Exchanges     []Exchange
}

// DialRecorded opens a TCP connection from namespace ns to addr and records
// its bytes.
func (l *Lab) DialRecorded(ctx context.Context, ns, addr string) (*RecordingConn, error) {
	c, err := l.DialContext(ns)(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewRecordingConn(c), nil
}

// HTTPClient returns an http.Client whose connections are made from
// namespace ns. It does not follow redirects and does not ask for gzip.
func (l *Lab) HTTPClient(ns string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:        l.DialContext(ns),
			DisableCompression: true,
			MaxIdleConns:       16,
			IdleConnTimeout:    30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// KeepAlive opens one connection from namespace ns to addr and sends reqs
// one after another, each after the previous response was read in full, as
// a keep-alive client does. It stops after a request with Close.
func (l *Lab) KeepAlive(ctx context.Context, ns, addr string, reqs ...Request) (*Conversation, error) {
	return l.converse(ctx, ns, addr, false, reqs)
}

// Pipeline opens one connection from namespace ns to addr, writes all reqs
// in a single Write (so several requests share a segment), then reads the
// responses in order.
func (l *Lab) Pipeline(ctx context.Context, ns, addr string, reqs ...Request) (*Conversation, error) {
	return l.converse(ctx, ns, addr, true, reqs)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (l *Lab) converse(ctx context.Context, ns, addr string, pipeline bool, reqs []Request) (*Conversation, error) {
	conn, err := l.DialRecorded(ctx, ns, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	conv := &Conversation{
		Local:  addrPort(conn.LocalAddr()),
		Remote: addrPort(conn.RemoteAddr()),
	}
	cr := &countingReader{r: conn}
	br := bufio.NewReader(cr)
	consumed := func() int { return cr.n - br.Buffered() }

	wires := make([][]byte, len(reqs))
	for i, r := range reqs {
		wires[i] = r.Wire(addr)
	}
	if pipeline {
		if _, err := conn.Write(bytes.Join(wires, nil)); err != nil {
			return conv, fmt.Errorf("writing %d pipelined requests to %s: %w", len(reqs), addr, err)
		}
	}
	fail := func(err error) (*Conversation, error) {
		conv.Sent, conv.Received = conn.Sent(), conn.Received()
		return conv, err
	}
	for i, r := range reqs {
		if !pipeline {
			if _, err := conn.Write(wires[i]); err != nil {
				return fail(fmt.Errorf("writing request %d (%s %s) to %s: %w", i, r.method(), r.Target, addr, err))
			}
		}
		start := consumed()
		var resp *http.Response
		for {
			resp, err = http.ReadResponse(br, &http.Request{Method: r.method()})
			if err != nil {
				return fail(fmt.Errorf("reading response %d (%s %s) from %s: %w", i, r.method(), r.Target, addr, err))
			}
			if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
				break
			}
			resp.Body.Close() // interim 1xx: the answer follows
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fail(fmt.Errorf("reading response body %d (%s %s) from %s: %w", i, r.method(), r.Target, addr, err))
		}
		received := conn.Received()
		conv.Exchanges = append(conv.Exchanges, Exchange{
			Request: r, RequestBytes: wires[i],
			Status: resp.StatusCode, ResponseHeader: resp.Header, ResponseBody: body,
			ResponseBytes: bytes.Clone(received[start:consumed()]),
		})
		if r.Close || resp.Close {
			break
		}
	}
	conv.Sent, conv.Received = conn.Sent(), conn.Received()
	return conv, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// HostPort joins an address and a port, bracketing IPv6: the address to
// dial for a lab server, e.g. HostPort(l.ProdAddr6, 8080) = "[fd81::2]:8080".
func HostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}
