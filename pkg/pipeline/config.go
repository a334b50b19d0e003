// Package pipeline wires shadowtap's stages together for `shadowtap run`:
// capture (XDP ring buffer, UDP socket or pcap file) → shards and TCP
// reassembly (pkg/flow) → HTTP/1.x exchanges (pkg/httpx) → replay to the
// shadow targets (pkg/replay) → comparison with production (pkg/verdict),
// with Prometheus metrics, health endpoints, GET /verdict, the periodic
// summary line and an orderly drain on shutdown.
package pipeline

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/pkg/capture"
	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/replay"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// Capture sources.
const (
	CaptureXDP    = "xdp"
	CaptureSocket = "socket"
	CapturePcap   = "pcap"
)

// Config is everything `shadowtap run` is told. The zero value is not valid;
// start from Defaults.
type Config struct {
	// Capture.
	Capture    string // xdp | socket | pcap
	Iface      string
	Ports      []uint16
	VNIs       []uint32
	Sources    []netip.Prefix
	VXLANPort  uint16
	XDPMode    string // auto | native | generic
	Force      bool
	PinRoot    string
	ListenAddr string // socket capture
	Sockets    int
	PcapFile   string
	PcapSpeed  string // 1x | max
	// AllowAnySource accepts mirror packets from any outer source and VNI
	// when neither VNIs nor Sources is given (labs only: anyone who can
	// reach the VXLAN port can then inject requests into the shadow fleet).
	AllowAnySource bool

	// Reassembly and parsing.
	Shards         int
	MaxConns       int
	MaxHeaderBytes int
	MaxBodyBytes   int64
	IdleTimeout    time.Duration
	BodyBudget     int64 // --body-budget: request body bytes held across the process (parser and replay queues)

	// Replay.
	Targets      []string
	Methods      []string
	IncludePaths []string
	ExcludePaths []string
	Sample       float64
	SampleKey    string
	MaxRPS       float64
	MaxInflight  int
	Queue        int
	QueueBytes   int64 // --queue-bytes: per-target request body bytes queued
	Timeout      time.Duration
	SetHeaders   []string
	DropHeaders  []string
	Host         string
	NoMarker     bool
	// MaxResponseHeaderBytes bounds the shadow's response head.
	MaxResponseHeaderBytes int64
	// Pipeline (--pipeline N): requests a replay worker may write at once
	// on its connection (HTTP/1.1 pipelining); 1 = one at a time.
	Pipeline int

	// HTTPS shadows and load multiplication (see shadowtls.go).
	CAFile             string   // --ca-file: PEM roots for https targets, instead of the system pool
	ClientCert         string   // --client-cert (with --client-key): mTLS
	ClientKey          string   // --client-key
	InsecureSkipVerify bool     // --insecure-skip-verify
	Multiply           []string // --multiply F or URL=F

	// Comparison (pkg/verdict), on whenever there are targets.
	Baseline         string        // --baseline URL: a target running the old code
	ReplayDelay      time.Duration // --replay-delay
	IgnoreHeaders    []string      // --ignore-header
	IgnoreJSONPaths  []string      // --ignore-json-path: PATH or ROUTE=PATH
	Routes           []string      // --route templates
	MaxRoutes        int           // --max-routes
	DiffLog          string        // --diff-log FILE
	DiffLogExamples  int           // --diff-log-examples, per route and kind per minute
	DiffLogMaxBytes  int64         // --diff-log-max-bytes
	RedactHeaders    []string      // --redact-header
	VerdictQueue     int           // --verdict-queue
	CompareBodyBytes int64         // --compare-body-bytes
	CompareBudget    int64         // --compare-budget
	VerdictOut       string        // --verdict-out FILE
	// NoCompare (--no-compare, hidden) replays without the comparison
	// stage: for benchmarks that measure what the comparison costs.
	NoCompare bool

	// Operations.
	MetricsAddr  string
	HealthAddr   string
	LogInterval  time.Duration
	DrainTimeout time.Duration
}

// Defaults returns the configuration a user gets without flags.
func Defaults() Config {
	return Config{
		Capture:        CaptureXDP,
		VXLANPort:      4789,
		XDPMode:        "auto",
		PinRoot:        "/sys/fs/bpf/shadowtap",
		ListenAddr:     "0.0.0.0",
		PcapSpeed:      "1x",
		MaxConns:       65536,
		MaxHeaderBytes: 64 << 10,
		MaxBodyBytes:   16 << 20,
		IdleTimeout:    2 * time.Minute,
		BodyBudget:     httpx.DefaultBodyBudget,
		Methods:        replay.DefaultMethods(),
		Sample:         100,
		SampleKey:      replay.DefaultSampleKey,
		MaxInflight:    replay.DefaultMaxInflight,
		Queue:          replay.DefaultQueue,
		QueueBytes:     replay.DefaultQueueBytes,
		Timeout:        replay.DefaultTimeout,

		MaxResponseHeaderBytes: replay.DefaultMaxResponseHeaderBytes,
		Pipeline:               1,

		MaxRoutes:        500,
		DiffLogExamples:  5,
		DiffLogMaxBytes:  100 << 20,
		VerdictQueue:     4096,
		CompareBodyBytes: replay.DefaultCompareBodyBytes,
		CompareBudget:    replay.DefaultCompareBudget,

		MetricsAddr:  "127.0.0.1:9464",
		LogInterval:  10 * time.Second,
		DrainTimeout: 10 * time.Second,
	}
}

// Validate refuses a configuration that cannot work, with one line saying
// what to change.
func (c *Config) Validate() error {
	switch c.Capture {
	case CaptureXDP:
		if c.Iface == "" {
			return errors.New("--iface is required with --capture xdp (the interface that receives the mirror traffic)")
		}
		switch c.XDPMode {
		case "auto", "native", "generic":
		default:
			return fmt.Errorf("--xdp-mode %q: want auto, native or generic", c.XDPMode)
		}
	case CaptureSocket:
		if ip := net.ParseIP(c.ListenAddr); ip == nil {
			return fmt.Errorf("--listen-addr %q: not an IP address", c.ListenAddr)
		}
	case CapturePcap:
		if c.PcapFile == "" {
			return errors.New("--pcap-file is required with --capture pcap")
		}
		if _, err := capture.ParseSpeed(c.PcapSpeed); err != nil {
			return fmt.Errorf("--pcap-speed %q: want max or a multiple of the recorded pace such as 1x, 2x, 0.5x", c.PcapSpeed)
		}
	default:
		return fmt.Errorf("--capture %q: want xdp, socket or pcap", c.Capture)
	}
	if len(c.Ports) == 0 {
		return errors.New("--ports is required: the TCP port(s) the mirrored service listens on, e.g. --ports 80,8080")
	}
	if len(c.VNIs) == 0 && len(c.Sources) == 0 && !c.AllowAnySource {
		return errors.New("give --vni and/or --source (the mirror session's VNI, the mirrored ENIs' CIDR): without them anyone who can reach the VXLAN port injects requests into the shadow fleet; --allow-any-source accepts any (labs only)")
	}
	if c.VXLANPort == 0 {
		return errors.New("--vxlan-port must be 1-65535")
	}
	for _, t := range c.Targets {
		if _, err := ParseTarget(t); err != nil {
			return err
		}
	}
	for _, m := range c.Methods {
		if err := checkMethod(m); err != nil {
			return err
		}
	}
	if c.Sockets < 0 {
		return fmt.Errorf("--sockets %d: want 1 or more (0: one per CPU)", c.Sockets)
	}
	if c.Shards < 0 || c.Shards > MaxShards {
		return fmt.Errorf("--shards %d: want 1 to %d (each shard preallocates %.1f MiB)", c.Shards, MaxShards, ShardMiB)
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("--max-conns %d: want 1 or more (connections tracked per shard)", c.MaxConns)
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("--idle-timeout %v: want more than 0", c.IdleTimeout)
	}
	for _, p := range append(append([]string{}, c.IncludePaths...), c.ExcludePaths...) {
		if _, err := regexp.Compile(p); err != nil {
			return fmt.Errorf("path pattern %q: %v", p, err)
		}
	}
	if !(c.Sample >= 0 && c.Sample <= 100) { // NaN too
		return fmt.Errorf("--sample %v: want a percentage from 0 to 100", c.Sample)
	}
	if !(c.MaxRPS >= 0 && c.MaxRPS <= math.MaxFloat64) { // NaN, Inf
		return fmt.Errorf("--max-rps %v: want 0 (no limit) or a positive number", c.MaxRPS)
	}
	if c.MaxInflight < 1 || c.Queue < 1 {
		return errors.New("--max-inflight and --queue must be at least 1")
	}
	if c.Timeout <= 0 || c.DrainTimeout < 0 || c.LogInterval <= 0 {
		return errors.New("--timeout and --log-interval must be positive, --drain-timeout not negative")
	}
	if c.MaxHeaderBytes < 256 {
		return fmt.Errorf("--max-header-bytes %d: want at least 256", c.MaxHeaderBytes)
	}
	if c.MaxBodyBytes < 1 {
		return fmt.Errorf("--max-body-bytes %d: want at least 1 (requests with a larger body are not replayed)", c.MaxBodyBytes)
	}
	if c.MaxResponseHeaderBytes < 256 {
		return fmt.Errorf("--max-response-header-bytes %d: want at least 256 (default 1 MiB)", c.MaxResponseHeaderBytes)
	}
	if c.Pipeline < 1 || c.Pipeline > replay.MaxPipeline {
		return fmt.Errorf("--pipeline %d: want 1 (one request at a time, the default) to %d", c.Pipeline, replay.MaxPipeline)
	}
	if c.BodyBudget < 1 || c.QueueBytes < 1 {
		return fmt.Errorf("--body-budget %d, --queue-bytes %d: want at least 1 byte each", c.BodyBudget, c.QueueBytes)
	}
	if err := c.validateCompare(); err != nil {
		return err
	}
	if err := c.validateShadowTLS(); err != nil {
		return err
	}
	// The replay stage's own checks (--sample-key, --set-header, --methods,
	// duplicate targets) belong to start-up validation too.
	if len(c.Targets) > 0 {
		if _, err := replayConfig(*c); err != nil {
			return err
		}
	}
	return nil
}

// ParseTarget checks a --target URL: http or https with a host.
func ParseTarget(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--target %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--target %q: want an http:// or https:// URL", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("--target %q: no host", s)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("--target %q: port %q out of range: want 1-65535", s, p)
		}
	}
	return u, nil
}

// ParsePorts parses "8080,80" (flags may repeat) into ports, refusing 0 and
// anything above 65535.
func ParsePorts(items []string) ([]uint16, error) {
	var ports []uint16
	for _, item := range items {
		for _, f := range strings.Split(item, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil || n == 0 || n > 65535 {
				return nil, fmt.Errorf("port %q out of range: want 1-65535", f)
			}
			ports = append(ports, uint16(n))
		}
	}
	return ports, nil
}

// ParseSources parses --source CIDRs (a bare address means a single host).
func ParseSources(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range items {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--source %q: want a CIDR such as 10.0.0.0/16 or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ParseVNIs checks --vni values: VXLAN network identifiers have 24 bits.
func ParseVNIs(items []uint) ([]uint32, error) {
	out := make([]uint32, 0, len(items))
	for _, v := range items {
		if v > 1<<24-1 {
			return nil, fmt.Errorf("--vni %d: a VNI has 24 bits (0-16777215)", v)
		}
		out = append(out, uint32(v))
	}
	return out, nil
}

// MaxShards bounds --shards: each shard preallocates its queue of batch
// buffers (ShardBytes), so 256 shards take 4.1 GiB before any traffic.
const MaxShards = 256

// ShardMiB is what one shard preallocates, in MiB: 66 batch buffers of
// 256 KiB (its queue of 64, the one being filled, the one being processed).
const ShardMiB = 16.5

// knownMethods are the methods --methods accepts: net/http's (RFC 9110 and
// PATCH, RFC 5789). Extension methods (WebDAV's PROPFIND…) are refused: a
// typo must not silently replay nothing.
var knownMethods = []string{"GET", "HEAD", "OPTIONS", "TRACE", "POST", "PUT", "PATCH", "DELETE", "CONNECT"}

// writeMethods change state at the origin: the default leaves them out.
var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

// checkMethod refuses a --methods entry that is not a method net/http knows.
func checkMethod(m string) error {
	if m == "" || strings.ContainsFunc(m, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r)
	}) {
		return fmt.Errorf("--methods %q: not an HTTP method token", m)
	}
	u := strings.ToUpper(m)
	if u == "CONNECT" {
		return errors.New("--methods \"CONNECT\": a tunnel cannot be replayed (the parser stops at CONNECT)")
	}
	if !slices.Contains(knownMethods, u) {
		return fmt.Errorf("--methods %q: unknown method; want GET, HEAD, OPTIONS, TRACE, POST, PUT, PATCH or DELETE", m)
	}
	return nil
}

// validateCompare checks the comparison flags.
func (c *Config) validateCompare() error {
	if c.Baseline != "" {
		if len(c.Targets) == 0 {
			return errors.New("--baseline needs at least one --target: the baseline is what the shadow is compared against")
		}
		if _, err := ParseTarget(c.Baseline); err != nil {
			return fmt.Errorf("--baseline %q: want an http:// or https:// URL of the old code's deployment", c.Baseline)
		}
	}
	if c.ReplayDelay < 0 {
		return fmt.Errorf("--replay-delay %v: want 0 or more", c.ReplayDelay)
	}
	for _, h := range append(append([]string{}, c.IgnoreHeaders...), c.RedactHeaders...) {
		if !validHeaderName(h) {
			return fmt.Errorf("header name %q (--ignore-header, --redact-header): not a valid HTTP header name", h)
		}
	}
	switch {
	case c.MaxRoutes < 1:
		return fmt.Errorf("--max-routes %d: want at least 1", c.MaxRoutes)
	case c.DiffLogExamples < 1:
		return fmt.Errorf("--diff-log-examples %d: want at least 1", c.DiffLogExamples)
	case c.DiffLogMaxBytes < 1<<10:
		return fmt.Errorf("--diff-log-max-bytes %d: want at least 1024", c.DiffLogMaxBytes)
	case c.VerdictQueue < 1:
		return fmt.Errorf("--verdict-queue %d: want at least 1", c.VerdictQueue)
	case c.CompareBodyBytes < 1:
		return fmt.Errorf("--compare-body-bytes %d: want at least 1", c.CompareBodyBytes)
	case c.CompareBudget < c.CompareBodyBytes:
		return fmt.Errorf("--compare-budget %d: want at least --compare-body-bytes (%d)", c.CompareBudget, c.CompareBodyBytes)
	}
	// The engine's own checks (--route templates: /path or METHOD /path;
	// --ignore-json-path: $.path or ROUTE=$.path), without opening the
	// diff log.
	vc := verdictConfig(*c)
	vc.DiffLog = ""
	if _, err := verdict.New(vc, nil); err != nil {
		return err
	}
	return nil
}

// Warnings returns what the configuration allows but its user should know,
// one line each, for the log at start.
func (c *Config) Warnings() []string {
	var w []string
	for _, m := range c.Methods {
		if u := strings.ToUpper(m); slices.Contains(writeMethods, u) {
			w = append(w, fmt.Sprintf("--methods includes %s: a method that writes; the default (GET, HEAD, OPTIONS) leaves it out because the shadow would repeat production's writes (orders, mails, payments) unless it is fully isolated", u))
		}
	}
	if c.AllowAnySource && len(c.VNIs) == 0 && len(c.Sources) == 0 {
		w = append(w, "--allow-any-source: mirror packets are accepted from anyone who can reach the VXLAN port, and their requests replayed to the shadow fleet (labs only)")
	}
	return w
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
