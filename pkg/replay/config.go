package replay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by New to zero fields (and set by DefaultConfig).
const (
	DefaultMaxInflight = 64
	DefaultQueue       = 4096
	// DefaultQueueBytes bounds the request body bytes in one target's
	// queue: 64 MiB.
	DefaultQueueBytes = 64 << 20
	DefaultTimeout    = 10 * time.Second
	// DefaultMaxResponseHeaderBytes bounds the shadow's response head, as
	// http.Transport's MaxResponseHeaderBytes default.
	DefaultMaxResponseHeaderBytes = 1 << 20
	// DefaultCompareBodyBytes is the body bytes kept per response for the
	// comparison (beyond, only the length and a hash of the whole body).
	DefaultCompareBodyBytes = 1 << 20
	// DefaultCompareBudget bounds the bytes of bodies held for comparison
	// across the process.
	DefaultCompareBudget = 256 << 20
	// MarkerHeader is the header that tells the shadow a request is a replay.
	MarkerHeader = "X-Shadowtap-Replay"
	// MaxMultiply is the largest Config.Multiply: ten copies of every
	// request is already a tenfold load on the shadow.
	MaxMultiply = 10
	// MaxPipeline is the largest Config.Pipeline.
	MaxPipeline = 64
)

// DefaultMethods are the methods replayed when Config.Methods is empty: the
// shadow runs read-only and production writes must never be repeated.
func DefaultMethods() []string { return []string{"GET", "HEAD", "OPTIONS"} }

// HeaderKV is one header to set on every replayed request.
type HeaderKV struct {
	Name, Value string
}

// Config configures a Replayer. Zero Methods, SampleKey, MaxInflight, Queue
// and Timeout take their defaults in New; SamplePercent and Marker are taken
// as given (their zero values mean "replay nothing" and "no marker"), so
// start from DefaultConfig.
type Config struct {
	Targets       []*url.URL       // shadow targets: http or https, host, optional base path
	Methods       []string         // replayed methods; default GET, HEAD, OPTIONS
	IncludePath   []*regexp.Regexp // if set, the path must match one of them
	ExcludePath   []*regexp.Regexp // the path must match none of them
	SamplePercent float64          // 0..100
	SampleKey     string           // "xff" (default) | "client-ip" | "header:NAME" | "cookie:NAME"
	MaxRPS        float64          // per target; 0 = unlimited; burst = one second's worth (ceil(MaxRPS))
	MaxInflight   int              // per target concurrent requests; default 64
	Queue         int              // per target queue length; default 4096
	QueueBytes    int64            // per target request body bytes queued; default 64 MiB; beyond, dropped "queue"
	Timeout       time.Duration    // per request, connect to end of body; default 10s
	SetHeaders    []HeaderKV       // set (replacing) on every replayed request
	DropHeaders   []string         // removed from every replayed request
	Host          string           // overrides the Host header when set
	Marker        bool             // add X-Shadowtap-Replay: 1 (2, 3, … on the duplicates of Multiply)

	// TLS is the base configuration of the connections to https targets:
	// trusted roots (nil RootCAs: the system pool), client certificate,
	// InsecureSkipVerify. Nil means the system roots and no client
	// certificate. Each https target gets a clone whose ServerName (SNI and
	// the name its certificate must carry) is Host's host name when Host is
	// set, so a TLS ingress that routes by name sees the name production's
	// clients use, else the target URL's host.
	TLS *tls.Config

	// Multiply is how many times each accepted request is sent to each
	// target (GoReplay's "|200%"), 0 < Multiply <= MaxMultiply; 0 means 1.
	// A request is sent floor(Multiply) or ceil(Multiply) times, chosen by
	// a hash of the request's identity (its connection and index on it), so
	// that the fraction gives the right average and the same request always
	// gets the same count; below 1 some requests are not sent at all
	// (dropped "multiply"). The first copy is the one compared; the others
	// are duplicates, marked X-Shadowtap-Replay: 2, 3, … and counted apart.
	Multiply float64
	// TargetMultiply overrides Multiply for single targets, keyed by the
	// target's URL (url.URL.String of a Targets entry or of Baseline). The
	// baseline is sent every request once unless named here.
	TargetMultiply map[string]float64

	// Comparison. With Verdict nil nothing is joined, kept or hashed.
	Verdict          Verdict       // the comparison stage (*verdict.Engine)
	CompareBodyBytes int64         // body bytes kept per response for comparison; default 1 MiB
	CompareBudget    int64         // bytes of bodies held in replay for comparison, process-wide; default 256 MiB
	Baseline         *url.URL      // a target running the old code: sent every replayed request, its answers marked Baseline
	ReplayDelay      time.Duration // hold each request this long after it was dispatched before sending it

	// MaxResponseHeaderBytes bounds the bytes read for the shadow's
	// response head (status line, headers and any 1xx before them);
	// default 1 MiB. Beyond it the request fails: response_too_large.
	MaxResponseHeaderBytes int64

	// Pipeline is the most requests a worker writes at once on its
	// connection, HTTP/1.1 pipelining (pipeline.go): 1 (the default, and
	// 0) sends one request at a time; up to MaxPipeline. A target that
	// ends a connection before answering a batch whole is sent one
	// request at a time from then on.
	Pipeline int
}

// DefaultConfig returns a Config with every default set, and no targets.
func DefaultConfig() Config {
	return Config{
		Methods:       DefaultMethods(),
		SamplePercent: 100,
		SampleKey:     DefaultSampleKey,
		MaxInflight:   DefaultMaxInflight,
		Queue:         DefaultQueue,
		QueueBytes:    DefaultQueueBytes,
		Timeout:       DefaultTimeout,
		Marker:        true,

		MaxResponseHeaderBytes: DefaultMaxResponseHeaderBytes,
		Multiply:               1,
		Pipeline:               1,

		CompareBodyBytes: DefaultCompareBodyBytes,
		CompareBudget:    DefaultCompareBudget,
	}
}

// SampleKind says what the sampling decision is keyed on.
type SampleKind uint8

const (
	SampleClientIP SampleKind = iota // the mirrored connection's client address
	SampleHeader                     // the first value of a request header
	SampleCookie                     // the value of a cookie
	// SampleXFF keys on the last address of X-Forwarded-For: the client
	// as the load balancer in front of production (an ALB) saw it and
	// appended it. Behind an ALB the TCP peer is one of a few ALB nodes, so
	// the client address would key whole nodes in or out.
	SampleXFF
)

// DefaultSampleKey is the sampling key without --sample-key.
const DefaultSampleKey = "xff"

// SampleKey is a parsed Config.SampleKey. When the header or cookie is
// absent from a request, the client address is used instead.
type SampleKey struct {
	Kind SampleKind
	Name string // header or cookie name
}

func (k SampleKey) String() string {
	switch k.Kind {
	case SampleHeader:
		return "header:" + k.Name
	case SampleCookie:
		return "cookie:" + k.Name
	case SampleXFF:
		return "xff"
	default:
		return "client-ip"
	}
}

// ParseSampleKey parses "xff", "client-ip", "header:NAME" or "cookie:NAME"
// (empty means DefaultSampleKey).
func ParseSampleKey(s string) (SampleKey, error) {
	switch s {
	case "", "xff":
		return SampleKey{Kind: SampleXFF}, nil
	case "client-ip":
		return SampleKey{Kind: SampleClientIP}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return SampleKey{}, fmt.Errorf("sample key %q: want xff, client-ip, header:NAME or cookie:NAME", s)
	}
	name = strings.TrimSpace(name)
	switch kind {
	case "header":
		if !isToken(name) {
			return SampleKey{}, fmt.Errorf("sample key %q: %q is not a valid header name", s, name)
		}
		return SampleKey{Kind: SampleHeader, Name: name}, nil
	case "cookie":
		if !isToken(name) {
			return SampleKey{}, fmt.Errorf("sample key %q: %q is not a valid cookie name", s, name)
		}
		return SampleKey{Kind: SampleCookie, Name: name}, nil
	}
	return SampleKey{}, fmt.Errorf("sample key %q: want xff, client-ip, header:NAME or cookie:NAME", s)
}

// ParseHeaderKV parses "Name: value" as given to --set-header.
func ParseHeaderKV(s string) (HeaderKV, error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return HeaderKV{}, fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	kv := HeaderKV{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)}
	if err := kv.validate(); err != nil {
		return HeaderKV{}, err
	}
	return kv, nil
}

func (kv HeaderKV) validate() error {
	if !isToken(kv.Name) {
		return fmt.Errorf("header %q: invalid name", kv.Name)
	}
	if strings.ContainsAny(kv.Value, "\r\n\x00") {
		return fmt.Errorf("header %q: value contains CR, LF or NUL", kv.Name)
	}
	switch textproto.CanonicalMIMEHeaderKey(kv.Name) {
	case "Host":
		return fmt.Errorf("header %q: use the host override instead", kv.Name)
	case "Content-Length", "Transfer-Encoding":
		return fmt.Errorf("header %q: set from the replayed body, cannot be overridden", kv.Name)
	}
	if isHopByHop(textproto.CanonicalMIMEHeaderKey(kv.Name)) {
		return fmt.Errorf("header %q: hop-by-hop headers cannot be set", kv.Name)
	}
	return nil
}

// Validate checks the configuration and returns the first problem as one
// line. It does not change c; New applies the defaults.
func (c *Config) Validate() error {
	if len(c.Targets) == 0 {
		return errors.New("no target: at least one target URL is required")
	}
	seen := make(map[string]bool, len(c.Targets))
	for _, u := range c.Targets {
		if err := validateTarget(u); err != nil {
			return err
		}
		if seen[u.String()] {
			return fmt.Errorf("target %q given twice", u.Redacted())
		}
		seen[u.String()] = true
	}
	if c.Baseline != nil {
		if err := validateTarget(c.Baseline); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		if seen[c.Baseline.String()] {
			return fmt.Errorf("baseline %q is also a target", c.Baseline.Redacted())
		}
	}
	if c.CompareBodyBytes < 0 || c.CompareBudget < 0 {
		return fmt.Errorf("compare body bytes %d, compare budget %d: want 0 (default) or more", c.CompareBodyBytes, c.CompareBudget)
	}
	if c.ReplayDelay < 0 {
		return fmt.Errorf("replay delay %v: want 0 or more", c.ReplayDelay)
	}
	for _, m := range c.Methods {
		if !isToken(m) {
			return fmt.Errorf("method %q: not a valid HTTP method", m)
		}
	}
	for i, re := range c.IncludePath {
		if re == nil {
			return fmt.Errorf("include path %d: nil regular expression", i)
		}
	}
	for i, re := range c.ExcludePath {
		if re == nil {
			return fmt.Errorf("exclude path %d: nil regular expression", i)
		}
	}
	if c.SamplePercent < 0 || c.SamplePercent > 100 || c.SamplePercent != c.SamplePercent {
		return fmt.Errorf("sample percent %v: want 0 to 100", c.SamplePercent)
	}
	if _, err := ParseSampleKey(c.SampleKey); err != nil {
		return err
	}
	if c.MaxRPS < 0 || c.MaxRPS != c.MaxRPS {
		return fmt.Errorf("max rps %v: want 0 (unlimited) or more", c.MaxRPS)
	}
	if c.MaxInflight < 0 {
		return fmt.Errorf("max inflight %d: want 1 or more", c.MaxInflight)
	}
	if c.Queue < 0 {
		return fmt.Errorf("queue %d: want 1 or more", c.Queue)
	}
	if c.QueueBytes < 0 {
		return fmt.Errorf("queue bytes %d: want 1 or more", c.QueueBytes)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout %v: want more than 0", c.Timeout)
	}
	if c.Pipeline < 0 || c.Pipeline > MaxPipeline {
		return fmt.Errorf("pipeline %d: want 1 (one request at a time) to %d", c.Pipeline, MaxPipeline)
	}
	set := make(map[string]bool, len(c.SetHeaders))
	for _, kv := range c.SetHeaders {
		if err := kv.validate(); err != nil {
			return err
		}
		set[textproto.CanonicalMIMEHeaderKey(kv.Name)] = true
	}
	for _, name := range c.DropHeaders {
		if !isToken(name) {
			return fmt.Errorf("drop header %q: invalid name", name)
		}
		if set[textproto.CanonicalMIMEHeaderKey(name)] {
			return fmt.Errorf("header %q is both set and dropped", name)
		}
	}
	if err := validMultiply(c.Multiply, true); err != nil {
		return err
	}
	for key, f := range c.TargetMultiply {
		if !seen[key] && (c.Baseline == nil || c.Baseline.String() != key) {
			return fmt.Errorf("multiply for %q: not a target", key)
		}
		if err := validMultiply(f, false); err != nil {
			return fmt.Errorf("multiply for %q: %w", key, err)
		}
	}
	if c.Host != "" && (strings.ContainsAny(c.Host, " \t\r\n\x00/?#@") || strings.TrimSpace(c.Host) != c.Host) {
		return fmt.Errorf("host %q: not a valid host[:port]", c.Host)
	}
	return nil
}

// validMultiply checks a load multiplier; zero is the default 1 when
// zeroOK.
func validMultiply(f float64, zeroOK bool) error {
	if f == 0 && zeroOK {
		return nil
	}
	if !(f > 0 && f <= MaxMultiply) {
		return fmt.Errorf("multiply %v: want more than 0 and at most %d", f, MaxMultiply)
	}
	return nil
}

func validateTarget(u *url.URL) error {
	if u == nil {
		return errors.New("target: nil URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("target %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("target %q: no host", u.Redacted())
	}
	if u.User != nil {
		return fmt.Errorf("target %q: user info is not supported (use a set header)", u.Redacted())
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("target %q: query and fragment are not supported", u.Redacted())
	}
	if u.Opaque != "" {
		return fmt.Errorf("target %q: not a hierarchical URL", u.Redacted())
	}
	return nil
}

// withDefaults returns c with the zero fields that have defaults filled in.
func (c Config) withDefaults() Config {
	if len(c.Methods) == 0 {
		c.Methods = DefaultMethods()
	}
	if c.SampleKey == "" {
		c.SampleKey = DefaultSampleKey
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxResponseHeaderBytes == 0 {
		c.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if c.Multiply == 0 {
		c.Multiply = 1
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.CompareBodyBytes == 0 {
		c.CompareBodyBytes = DefaultCompareBodyBytes
	}
	if c.CompareBudget == 0 {
		c.CompareBudget = DefaultCompareBudget
	}
	return c
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
