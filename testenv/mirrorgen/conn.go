package mirrorgen

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Connection states, in the order a connection goes through them.
const (
	stIdle    uint8 = iota
	stSyn           // client SYN
	stSynAck        // server SYN-ACK
	stHsAck         // client ACK
	stReq           // client request segments
	stReqAck        // server pure ACK after a multi-segment request
	stResp          // server response segments
	stRespAck       // client pure ACK (every second segment and at the end)
	stFin           // client FIN
	stFinAck        // server FIN-ACK
	stLastAck       // client ACK
	stDone
)

// Exchange kinds.
const (
	kindSmall = iota
	kindLarge
	kindHead
	kindPost
	kindPipelined
	kindPage
)

type conn struct {
	state      uint8
	v6         bool
	respDone   bool
	cip, sip   [16]byte
	cport      uint16
	sport      uint16
	udpSrc     uint16
	ipID       uint16
	cseq, sseq uint32
	cts, sts   uint32
	exchanges  int
	unacked    int
	off        int
	req, resp  []byte
	nmsg       int // requests (and responses) in req and resp
	truth      int // index in Generator.truth, or -1
	id         uint64
}

var (
	clientMAC = [6]byte{0x02, 0, 0, 0, 0x10, 0x01}
	serverMAC = [6]byte{0x02, 0, 0, 0, 0x10, 0x02}
)

// open starts a new connection in c.
func (g *Generator) open(c *conn) {
	id := g.nextID
	g.nextID++
	g.sum.Conns++
	cfg := &g.cfg
	c.id = id
	c.state = stSyn
	c.v6 = cfg.IPv6Percent > 0 && g.rng.IntN(100) < cfg.IPv6Percent
	c.respDone = false
	c.unacked, c.off = 0, 0
	c.exchanges = cfg.RequestsPerConn
	c.cseq, c.sseq = g.rng.Uint32(), g.rng.Uint32()
	c.cts, c.sts = g.rng.Uint32(), g.rng.Uint32()
	c.cport = uint16(20000 + (id/1000)%40000)
	host := uint32(1 + id%1000)
	var server netip.AddrPort
	if c.v6 {
		server = cfg.ServerV6
		c.cip = [16]byte{0xfd, 0, 0, 2, 14: byte(host >> 8), 15: byte(host)}
	} else {
		server = cfg.Server
		c.cip = [16]byte{10, 2, byte(host >> 8), byte(host)}
	}
	c.sip = [16]byte{}
	if c.v6 {
		c.sip = server.Addr().As16()
	} else {
		a := server.Addr().As4()
		copy(c.sip[:], a[:])
	}
	c.sport = server.Port()
	c.udpSrc = flowPort(c)
	c.truth = -1
	if cfg.Truth {
		c.truth = len(g.truth)
		g.truth = append(g.truth, Conversation{
			Client: netip.AddrPortFrom(c.clientAddr(), c.cport),
			Server: server,
			VNI:    cfg.VNI,
		})
	}
}

func (c *conn) clientAddr() netip.Addr {
	if c.v6 {
		return netip.AddrFrom16(c.cip)
	}
	return netip.AddrFrom4([4]byte(c.cip[:4]))
}

// flowPort is the outer UDP source port: a hash of the inner 5-tuple that is
// the same for both directions, so a load balancer keeps a flow on one
// receiver. It lies in 49152..65535.
func flowPort(c *conn) uint16 {
	h := mix64(c.cip, c.cport) + mix64(c.sip, c.sport) + 6
	h ^= h >> 29
	return uint16(49152 + h%16384)
}

func mix64(a [16]byte, port uint16) uint64 {
	x := binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(a[8:])*0x9e3779b97f4a7c15 ^ uint64(port)<<48
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// step writes the connection's next frame into buf and advances its state.
func (c *conn) step(g *Generator, buf []byte) []byte {
	mss := g.cfg.MSS
	switch c.state {
	case stSyn:
		f := g.frame(buf, c, true, tcpSyn, c.cseq, 0, nil)
		c.cseq++
		c.state = stSynAck
		return f
	case stSynAck:
		f := g.frame(buf, c, false, tcpSyn|tcpAck, c.sseq, c.cseq, nil)
		c.sseq++
		c.state = stHsAck
		return f
	case stHsAck:
		f := g.frame(buf, c, true, tcpAck, c.cseq, c.sseq, nil)
		g.exchange(c)
		c.state = stReq
		return f
	case stReq:
		n := min(mss, len(c.req)-c.off)
		flags := tcpAck
		if c.off+n == len(c.req) {
			flags |= tcpPsh
		}
		f := g.frame(buf, c, true, flags, c.cseq, c.sseq, c.req[c.off:c.off+n])
		c.cseq += uint32(n)
		c.off += n
		if c.off == len(c.req) {
			g.sum.RequestsSent += uint64(c.nmsg)
			c.off = 0
			if len(c.req) > mss {
				c.state = stReqAck
			} else {
				c.state = stResp
			}
		}
		return f
	case stReqAck:
		f := g.frame(buf, c, false, tcpAck, c.sseq, c.cseq, nil)
		c.state = stResp
		return f
	case stResp:
		n := min(mss, len(c.resp)-c.off)
		flags := tcpAck
		if c.off+n == len(c.resp) {
			flags |= tcpPsh
		}
		f := g.frame(buf, c, false, flags, c.sseq, c.cseq, c.resp[c.off:c.off+n])
		c.sseq += uint32(n)
		c.off += n
		c.unacked++
		if c.off == len(c.resp) {
			g.sum.ResponsesSent += uint64(c.nmsg)
			c.respDone = true
			c.state = stRespAck
			if g.cfg.LeanAcks {
				c.next(g) // the next request or the FIN acknowledges it
			}
		} else if c.unacked >= 2 && !g.cfg.LeanAcks {
			c.state = stRespAck
		}
		return f
	case stRespAck:
		f := g.frame(buf, c, true, tcpAck, c.cseq, c.sseq, nil)
		if !c.respDone {
			c.unacked = 0
			c.state = stResp
		} else {
			c.next(g)
		}
		return f
	case stFin:
		f := g.frame(buf, c, true, tcpFin|tcpAck, c.cseq, c.sseq, nil)
		c.cseq++
		c.state = stFinAck
		return f
	case stFinAck:
		f := g.frame(buf, c, false, tcpFin|tcpAck, c.sseq, c.cseq, nil)
		c.sseq++
		c.state = stLastAck
		if g.cfg.LeanAcks {
			c.closed(g)
		}
		return f
	default: // stLastAck
		f := g.frame(buf, c, true, tcpAck, c.cseq, c.sseq, nil)
		c.closed(g)
		return f
	}
}

// next moves on after a complete response: the next exchange, or the FIN.
func (c *conn) next(g *Generator) {
	c.unacked = 0
	c.respDone = false
	c.off = 0
	c.exchanges--
	if c.exchanges > 0 {
		g.exchange(c)
		c.state = stReq
	} else {
		c.state = stFin
	}
}

// closed ends the connection.
func (c *conn) closed(g *Generator) {
	if c.truth >= 0 {
		g.truth[c.truth].Closed = true
	}
	c.state = stDone
}

// exchange prepares the next request and its response(s) in c.req, c.resp.
func (g *Generator) exchange(c *conn) {
	cfg := &g.cfg
	m := cfg.Mix
	w := g.rng.IntN(m.total())
	kind := kindSmall
	switch {
	case w < m.Small:
	case w < m.Small+m.Large:
		kind = kindLarge
	case w < m.Small+m.Large+m.Head:
		kind = kindHead
	case w < m.Small+m.Large+m.Head+m.Post:
		kind = kindPost
	case w < m.Small+m.Large+m.Head+m.Post+m.Pipelined:
		kind = kindPipelined
	default:
		kind = kindPage
	}
	c.req, c.resp = c.req[:0], c.resp[:0]
	c.nmsg = 1
	seq := g.sum.Requests
	switch kind {
	case kindSmall:
		n := cfg.SmallBody/2 + g.rng.IntN(cfg.SmallBody+1)
		g.get(c, "GET", "/s/", seq, 0)
		g.respond(c, 200, "text/html; charset=utf-8", n, n)
	case kindLarge:
		n := cfg.LargeKiB * 1024
		g.get(c, "GET", "/large/", seq, 0)
		g.respond(c, 200, "application/octet-stream", n, n)
	case kindHead:
		n := cfg.SmallBody/2 + g.rng.IntN(cfg.SmallBody+1)
		g.get(c, "HEAD", "/h/", seq, 0)
		g.respond(c, 200, "text/html; charset=utf-8", n, 0)
	case kindPost:
		n := cfg.PostBody/2 + g.rng.IntN(cfg.PostBody+1)
		g.post(c, seq, n)
		g.respond(c, 201, "application/json", 32, 32)
	case kindPage:
		g.page(c, seq)
		g.respondTotal(c, pageContentType, cfg.PageBytes)
	case kindPipelined:
		c.nmsg = cfg.PipelineDepth
		for i := range cfg.PipelineDepth {
			n := cfg.SmallBody/4 + g.rng.IntN(cfg.SmallBody/2+1)
			g.get(c, "GET", "/p/", seq, i)
			g.respond(c, 200, "text/css", n, n)
		}
	}
}

func (g *Generator) get(c *conn, method, prefix string, seq uint64, i int) {
	start := len(c.req)
	b := append(c.req, method...)
	b = append(b, ' ')
	b = append(b, prefix...)
	b = strconv.AppendUint(b, seq, 10)
	tstart := start + len(method) + 1
	if prefix == "/p/" {
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(i), 10)
	}
	b = append(b, "?c="...)
	b = strconv.AppendUint(b, c.id, 10)
	tend := len(b)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, g.cfg.Host...)
	b = append(b, "\r\nUser-Agent: mirrorgen/1\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\r\n"...)
	c.req = b
	g.sum.Requests++
	if c.truth >= 0 {
		t := &g.truth[c.truth]
		t.Requests = append(t.Requests, Request{Method: method, Target: string(b[tstart:tend])})
		t.ToServer = append(t.ToServer, b[start:]...)
	}
}

// page writes a GET as a browser sends it through a load balancer: about
// 400 bytes, the client's address in X-Forwarded-For.
func (g *Generator) page(c *conn, seq uint64) {
	start := len(c.req)
	b := append(c.req, "GET /page/"...)
	b = strconv.AppendUint(b, seq%1000, 10)
	b = append(b, "?c="...)
	b = strconv.AppendUint(b, c.id, 10)
	tend := len(b)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, g.cfg.Host...)
	b = append(b, "\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"+
		"\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"+
		"\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br"+
		"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: "...)
	u := g.cfg.UserBase + g.rng.IntN(g.cfg.Users)
	xff := len(b)
	b = append(b, "100."...)
	b = strconv.AppendInt(b, int64(64+u>>16&63), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(u>>8&255), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(u&255), 10)
	xffEnd := len(b)
	b = append(b, "\r\nX-Amzn-Trace-Id: Root=1-"...)
	b = strconv.AppendUint(b, 0x60000000+seq, 16)
	b = append(b, "-0123456789abcdef01234567\r\n\r\n"...)
	c.req = b
	g.sum.Requests++
	if c.truth >= 0 {
		t := &g.truth[c.truth]
		t.Requests = append(t.Requests, Request{Method: "GET", Target: string(b[start+4 : tend]), ForwardedFor: string(b[xff:xffEnd])})
		t.ToServer = append(t.ToServer, b[start:]...)
	}
}

func (g *Generator) post(c *conn, seq uint64, n int) {
	// The body is {"id":SEQ,"note":"aaaa…"} padded to n bytes.
	var digits [20]byte
	frame := len(`{"id":,"note":""}`) + len(strconv.AppendUint(digits[:0], seq, 10))
	n = max(n, frame)
	start := len(c.req)
	b := append(c.req, "POST /api/items?c="...)
	b = strconv.AppendUint(b, c.id, 10)
	tend := len(b)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, g.cfg.Host...)
	b = append(b, "\r\nUser-Agent: mirrorgen/1\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"note":"`...)
	b = append(b, g.pattern[:n-frame]...)
	b = append(b, `"}`...)
	c.req = b
	g.sum.Requests++
	if c.truth >= 0 {
		t := &g.truth[c.truth]
		t.Requests = append(t.Requests, Request{Method: "POST", Target: string(b[start+5 : tend]), BodyLen: n})
		t.ToServer = append(t.ToServer, b[start:]...)
	}
}

// pageContentType is the Content-Type of Page answers.
const pageContentType = "text/html; charset=utf-8"

// respondTotal writes a 200 response of total bytes, head included.
func (g *Generator) respondTotal(c *conn, ctype string, total int) {
	head := len("HTTP/1.1 200 OK\r\nServer: mirrorgen\r\nContent-Type: \r\nContent-Length: \r\n\r\n") + len(ctype)
	body := max(0, total-head-1)
	for body > 0 && head+len(strconv.Itoa(body))+body > total {
		body--
	}
	g.respond(c, 200, ctype, body, body)
}

func (g *Generator) respond(c *conn, status int, ctype string, contentLength, body int) {
	start := len(c.resp)
	b := append(c.resp, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	switch status {
	case 200:
		b = append(b, " OK"...)
	case 201:
		b = append(b, " Created"...)
	}
	b = append(b, "\r\nServer: mirrorgen\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(contentLength), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, g.pattern[:body]...)
	c.resp = b
	g.sum.Responses++
	if c.truth >= 0 {
		t := &g.truth[c.truth]
		t.Responses = append(t.Responses, Response{Status: status, BodyLen: body, ContentLength: contentLength})
		t.ToClient = append(t.ToClient, b[start:]...)
	}
}
