// Package mirrorgen generates mirror traffic as AWS VPC Traffic Mirroring
// sends it: synthetic HTTP/1.1 keep-alive conversations (TCP handshake,
// request/response exchanges with consistent seq/ack in both directions,
// responses cut into MSS-sized segments, FIN), each inner frame wrapped in an
// outer Ethernet + IPv4 + UDP (source port = hash of the inner flow,
// destination 4789) + VXLAN header.
//
// It sits in front of the data path: it feeds the receiver in the lab (an
// AF_PACKET socket on a veth whose peer runs the XDP program, or a UDP socket
// for the socket source) and writes capture files for the pcap source. It also
// records the ground truth — every request and response it generated, and the
// exact byte stream of each direction — so that tests can compare what the
// receiver rebuilt with what was sent.
//
// The generator does not allocate per packet: frames are built in place in a
// reused batch of buffers and handed to a Writer.
package mirrorgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultMSS       = 1448 // 1500-byte MTU with TCP timestamps
	JumboMSS         = 8948 // 9001-byte VPC jumbo MTU with TCP timestamps
	DefaultVXLANPort = 4789
	DefaultBatch     = 64
	maxMSS           = 9000
)

// Mix gives the relative weight of each kind of exchange. Zero weights are
// never chosen; all zero means Small only.
type Mix struct {
	Small     int // GET with a small response (SmallBody bytes, varied)
	Large     int // GET with a response of LargeKiB KiB, many segments
	Head      int // HEAD: Content-Length but no body
	Post      int // POST with a JSON body, answered 201
	Pipelined int // PipelineDepth small GETs in one segment, answered back to back
	// Page is a browser's page view through a load balancer: a GET of about
	// 400 bytes (browser headers, X-Forwarded-For naming one of Users
	// clients) answered with PageBytes in all (4 segments by default).
	Page int
}

// ParseMix parses "small=70,large=20,post=5,head=5,pipelined=0,page=0".
func ParseMix(s string) (Mix, error) {
	var m Mix
	if strings.TrimSpace(s) == "" {
		return Mix{Small: 1}, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix %q: %q is not name=weight", s, part)
		}
		w, err := strconv.Atoi(v)
		if err != nil || w < 0 {
			return Mix{}, fmt.Errorf("mix %q: weight of %s must be a non-negative integer", s, k)
		}
		switch k {
		case "small":
			m.Small = w
		case "large":
			m.Large = w
		case "head":
			m.Head = w
		case "post":
			m.Post = w
		case "pipelined", "pipeline":
			m.Pipelined = w
		case "page":
			m.Page = w
		default:
			return Mix{}, fmt.Errorf("mix %q: unknown kind %q (small, large, head, post, pipelined, page)", s, k)
		}
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("mix %q: all weights are zero", s)
	}
	return m, nil
}

func (m Mix) total() int { return m.Small + m.Large + m.Head + m.Post + m.Pipelined + m.Page }

// String returns the form ParseMix reads.
func (m Mix) String() string {
	s := fmt.Sprintf("small=%d,large=%d,head=%d,post=%d,pipelined=%d", m.Small, m.Large, m.Head, m.Post, m.Pipelined)
	if m.Page > 0 {
		s += fmt.Sprintf(",page=%d", m.Page)
	}
	return s
}

// Config configures a Generator. The zero value of a field means its default.
type Config struct {
	// Conns is the number of connections open at the same time; their
	// packets are interleaved. Default 16.
	Conns int
	// TotalConns stops the run after this many connections have completed
	// (0: no limit). When Duration, Packets and TotalConns are all zero,
	// TotalConns defaults to Conns.
	TotalConns int
	// RequestsPerConn is the number of exchanges on each keep-alive
	// connection before FIN (a pipelined batch counts as one). Default 10.
	RequestsPerConn int
	// Duration stops the run after this long (wall clock; for a TimedWriter,
	// capture time). 0: no limit.
	Duration time.Duration
	// Packets stops the run after this many frames. 0: no limit.
	Packets uint64
	// Rate in frames per second; 0 is as fast as possible. Live writers are
	// paced with sleeps between batches; a TimedWriter gets timestamps spaced
	// 1/Rate apart and is not slowed down.
	Rate float64

	Mix           Mix
	SmallBody     int // mean body of small responses in bytes, default 600
	LargeKiB      int // body of large responses in KiB, default 64
	PostBody      int // mean JSON body of POSTs in bytes, default 300
	PipelineDepth int // requests per pipelined segment, default 3
	PageBytes     int // whole response (head and body) of a Page exchange, default 4400: 4 segments at MSS 1448
	Users         int // X-Forwarded-For clients of Page requests, default 4096
	UserBase      int // the first of them (clients UserBase..UserBase+Users-1, 100.64.0.0/10)

	// LeanAcks: the client sends no pure ACK for response data (its next
	// request or its FIN acknowledges it) and the connection ends with the
	// client's FIN and the server's FIN-ACK, without a last ACK. One Page
	// exchange per connection is then 10 frames (3 handshake, 1 request,
	// 4 response, 2 FIN); ten on one connection are 55.
	LeanAcks bool

	MSS int // TCP payload per segment, default 1448 (9000 max)
	// PacketLength, when positive, cuts each inner frame (from the inner
	// Ethernet header) to this many bytes, as a mirror session's
	// PacketLength does; the inner IP header keeps the original length.
	PacketLength int

	VNI       uint32
	VXLANPort uint16           // default 4789
	Source    netip.Addr       // outer source (the source ENI), default 10.0.0.1
	Receiver  netip.Addr       // outer destination (the mirror target), default 10.0.0.2
	SrcMAC    net.HardwareAddr // outer source MAC, default 02:00:00:00:00:01
	DstMAC    net.HardwareAddr // outer destination MAC, default 02:00:00:00:00:02

	Server      netip.AddrPort // IPv4 server, default 10.1.0.10:8080
	ServerV6    netip.AddrPort // IPv6 server, default [fd00:1::10]:8080
	IPv6Percent int            // share of connections over IPv6, 0..100
	Host        string         // Host header, default shop.example.com

	Seed  uint64
	Batch int // frames per WriteFrames call, default 64
	// Truth records every conversation with its byte streams. It costs
	// memory proportional to the traffic: for tests, not benchmarks.
	Truth bool
}

func (c *Config) setDefaults() error {
	if c.Conns <= 0 {
		c.Conns = 16
	}
	if c.RequestsPerConn <= 0 {
		c.RequestsPerConn = 10
	}
	if c.Duration == 0 && c.Packets == 0 && c.TotalConns == 0 {
		c.TotalConns = c.Conns
	}
	if c.Mix.total() == 0 {
		c.Mix = Mix{Small: 1}
	}
	if c.Mix.Small < 0 || c.Mix.Large < 0 || c.Mix.Head < 0 || c.Mix.Post < 0 || c.Mix.Pipelined < 0 {
		return errors.New("mirrorgen: negative mix weight")
	}
	if c.SmallBody <= 0 {
		c.SmallBody = 600
	}
	if c.LargeKiB <= 0 {
		c.LargeKiB = 64
	}
	if c.LargeKiB > 64*1024 {
		return fmt.Errorf("mirrorgen: LargeKiB %d above 65536", c.LargeKiB)
	}
	if c.PostBody <= 0 {
		c.PostBody = 300
	}
	if c.PipelineDepth <= 0 {
		c.PipelineDepth = 3
	}
	if c.PageBytes <= 0 {
		c.PageBytes = 4400
	}
	if c.PageBytes < 128 || c.PageBytes > 1<<20 {
		return fmt.Errorf("mirrorgen: PageBytes %d outside 128..1048576", c.PageBytes)
	}
	if c.Users <= 0 {
		c.Users = 4096
	}
	if c.UserBase < 0 || c.UserBase+c.Users > 1<<22 {
		return fmt.Errorf("mirrorgen: users %d..%d outside 100.64.0.0/10", c.UserBase, c.UserBase+c.Users-1)
	}
	if c.MSS == 0 {
		c.MSS = DefaultMSS
	}
	if c.MSS < 64 || c.MSS > maxMSS {
		return fmt.Errorf("mirrorgen: MSS %d outside 64..%d", c.MSS, maxMSS)
	}
	if c.PacketLength < 0 {
		return fmt.Errorf("mirrorgen: negative PacketLength %d", c.PacketLength)
	}
	if c.VXLANPort == 0 {
		c.VXLANPort = DefaultVXLANPort
	}
	if c.VNI > 0xFFFFFF {
		return fmt.Errorf("mirrorgen: VNI %d does not fit in 24 bits", c.VNI)
	}
	if !c.Source.IsValid() {
		c.Source = netip.MustParseAddr("10.0.0.1")
	}
	if !c.Receiver.IsValid() {
		c.Receiver = netip.MustParseAddr("10.0.0.2")
	}
	if !c.Source.Is4() || !c.Receiver.Is4() {
		return errors.New("mirrorgen: outer Source and Receiver must be IPv4 (AWS mirrors over IPv4)")
	}
	if c.SrcMAC == nil {
		c.SrcMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	}
	if c.DstMAC == nil {
		c.DstMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	}
	if len(c.SrcMAC) != 6 || len(c.DstMAC) != 6 {
		return errors.New("mirrorgen: MAC addresses must be 6 bytes")
	}
	if !c.Server.IsValid() {
		c.Server = netip.MustParseAddrPort("10.1.0.10:8080")
	}
	if !c.ServerV6.IsValid() {
		c.ServerV6 = netip.MustParseAddrPort("[fd00:1::10]:8080")
	}
	if !c.Server.Addr().Is4() || !c.ServerV6.Addr().Is6() || c.ServerV6.Addr().Is4In6() {
		return errors.New("mirrorgen: Server must be IPv4 and ServerV6 IPv6")
	}
	if c.IPv6Percent < 0 || c.IPv6Percent > 100 {
		return fmt.Errorf("mirrorgen: IPv6Percent %d outside 0..100", c.IPv6Percent)
	}
	if c.Host == "" {
		c.Host = "shop.example.com"
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.Rate < 0 {
		return fmt.Errorf("mirrorgen: negative rate %v", c.Rate)
	}
	return nil
}

// Writer receives batches of whole outer frames (outer Ethernet onwards).
// The frames are only valid during the call.
type Writer interface {
	WriteFrames(frames [][]byte) error
}

// TimedWriter is a Writer that records a timestamp with each frame, such as
// a capture file. The generator hands it each frame's scheduled time and
// does not sleep, so a file is written at full speed but carries the paced
// timeline.
type TimedWriter interface {
	Writer
	WriteFramesAt(frames [][]byte, ts []time.Time) error
}

// Request is one generated request, as the truth records it.
type Request struct {
	Method  string
	Target  string
	BodyLen int
	// ForwardedFor is the X-Forwarded-For header of a Page request: the
	// client a load balancer saw (the default sample key of replay).
	ForwardedFor string
}

// Response is one generated response.
type Response struct {
	Status  int
	BodyLen int // bytes of body sent (0 for HEAD)
	// ContentLength is the Content-Length header (equals BodyLen except for HEAD).
	ContentLength int
}

// Conversation is the ground truth of one connection.
type Conversation struct {
	Client, Server netip.AddrPort
	VNI            uint32
	Requests       []Request
	Responses      []Response
	// ToServer and ToClient are the exact TCP payload streams of each
	// direction, in order.
	ToServer, ToClient []byte
	// Closed: the FIN exchange was generated.
	Closed bool
}

// Summary reports a run.
type Summary struct {
	Packets   uint64 // frames written
	Bytes     uint64 // outer frame bytes written
	Requests  uint64 // requests generated (first byte sent)
	Responses uint64 // responses generated (first byte sent)
	// RequestsSent and ResponsesSent count messages whose last byte was
	// sent: a run cut by Duration or Packets may leave the last messages of
	// its open connections partly sent.
	RequestsSent, ResponsesSent uint64
	Conns                       uint64        // connections opened
	Elapsed                     time.Duration // wall clock
}

// Rate is the achieved frames per second.
func (s Summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

func (s Summary) String() string {
	return fmt.Sprintf("packets=%d requests=%d/%d responses=%d/%d (started/complete) conns=%d bytes=%d elapsed=%s rate=%.0f pkt/s (%.1f Mbit/s)",
		s.Packets, s.Requests, s.RequestsSent, s.Responses, s.ResponsesSent, s.Conns, s.Bytes, s.Elapsed.Round(time.Millisecond), s.Rate(),
		float64(s.Bytes)*8/1e6/max(s.Elapsed.Seconds(), 1e-9))
}

// Generator produces mirror frames. It is not safe for concurrent use; Run
// may be called once.
type Generator struct {
	cfg     Config
	rng     *rand.Rand
	pattern []byte // shared body filler
	conns   []*conn
	nextID  uint64
	ipID    uint16
	done    uint64 // connections completed
	sum     Summary
	truth   []Conversation
	ran     bool
}

// New validates cfg and returns a Generator.
func New(cfg Config) (*Generator, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Generator{
		cfg: cfg,
		rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	n := max(cfg.LargeKiB*1024, 4*cfg.SmallBody, 4*cfg.PostBody, cfg.PageBytes) + 64
	g.pattern = fillPattern(make([]byte, n))
	g.conns = make([]*conn, cfg.Conns)
	return g, nil
}

// Config returns the configuration with defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Truth returns the recorded conversations (empty unless Config.Truth).
// Messages are recorded when their first byte is generated, so a run cut by
// Duration or Packets may end with messages only partly sent.
func (g *Generator) Truth() []Conversation { return g.truth }

// frameCap is the largest outer frame: outer 14+20+8+8, inner 14+40+40+MSS.
const frameCap = 50 + 14 + 40 + 40 + maxMSS

// Run generates frames into out until a limit in the Config is reached or
// ctx is done. It returns the summary and, if the run was cut short by ctx or
// a write error, that error.
func (g *Generator) Run(ctx context.Context, out Writer) (Summary, error) {
	if g.ran {
		return g.sum, errors.New("mirrorgen: Run called twice")
	}
	g.ran = true
	cfg := &g.cfg
	timed, isTimed := out.(TimedWriter)

	batch := cfg.Batch
	if cfg.Rate > 0 && !isTimed {
		// Keep bursts to about a millisecond of traffic.
		batch = min(batch, max(1, int(cfg.Rate/1000)))
	}
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 0, frameCap)
	}
	frames := make([][]byte, 0, batch)
	var stamps []time.Time
	if isTimed {
		stamps = make([]time.Time, 0, batch)
	}
	for i := range g.conns {
		g.conns[i] = &conn{truth: -1}
	}

	start := time.Now()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	vclock := start // capture time for a TimedWriter
	next := 0       // round-robin position
	finished := false
	var err error
	for !finished {
		if err = ctx.Err(); err != nil {
			break
		}
		frames = frames[:0]
		stamps = stamps[:0]
		for len(frames) < batch {
			if cfg.Packets > 0 && g.sum.Packets+uint64(len(frames)) >= cfg.Packets {
				finished = true
				break
			}
			c := g.pick(&next)
			if c == nil {
				finished = true
				break
			}
			f := c.step(g, bufs[len(frames)][:0])
			frames = append(frames, f)
			if isTimed {
				stamps = append(stamps, vclock)
				if interval > 0 {
					vclock = vclock.Add(interval)
				} else {
					vclock = vclock.Add(time.Microsecond)
				}
			}
		}
		if len(frames) > 0 {
			if isTimed {
				err = timed.WriteFramesAt(frames, stamps)
			} else {
				err = out.WriteFrames(frames)
			}
			if err != nil {
				err = fmt.Errorf("mirrorgen: write: %w", err)
				break
			}
			g.sum.Packets += uint64(len(frames))
			for _, f := range frames {
				g.sum.Bytes += uint64(len(f))
			}
		}
		if cfg.Duration > 0 {
			if isTimed && vclock.Sub(start) >= cfg.Duration {
				finished = true
			} else if !isTimed && time.Since(start) >= cfg.Duration {
				finished = true
			}
		}
		if interval > 0 && !isTimed && !finished {
			due := start.Add(time.Duration(g.sum.Packets) * interval)
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		}
	}
	g.sum.Elapsed = time.Since(start)
	return g.sum, err
}

// pick returns the next connection with something to send, opening new
// connections in place of finished ones; nil when all are done.
func (g *Generator) pick(next *int) *conn {
	n := len(g.conns)
	for range n {
		c := g.conns[*next]
		*next = (*next + 1) % n
		if c.state == stDone {
			g.done++
			c.state = stIdle
		}
		if c.state == stIdle {
			if g.cfg.TotalConns > 0 && g.nextID >= uint64(g.cfg.TotalConns) {
				continue
			}
			g.open(c)
		}
		return c
	}
	return nil
}

// fillPattern fills b with the body filler of every generated body.
func fillPattern(b []byte) []byte {
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range b {
		b[i] = alpha[(i*7+i/61)%len(alpha)]
	}
	return b
}

// PageResponse returns the exact bytes of production's answer to a Page
// request (Config.PageBytes in all, head included; 0 means the default), so
// that a lab shadow can answer as production did and a comparison finds no
// difference.
func PageResponse(pageBytes int) []byte {
	if pageBytes <= 0 {
		pageBytes = 4400
	}
	g := &Generator{pattern: fillPattern(make([]byte, pageBytes+64))}
	c := &conn{truth: -1}
	g.respondTotal(c, pageContentType, pageBytes)
	return c.resp
}
