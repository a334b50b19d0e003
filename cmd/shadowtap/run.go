package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/shadowtap/shadowtap/pkg/pipeline"
)

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := pipeline.Defaults()
	fs := newFlagSet("run", stderr)
	var ports, sources []string
	var vnis []uint
	var logFormat string
	var noSystemd bool

	// Capture.
	fs.StringVar(&cfg.Capture, "capture", cfg.Capture, "capture source: xdp, socket (UDP socket on the VXLAN port, no CAP_BPF needed) or pcap (a capture file)")
	fs.StringVar(&cfg.Iface, "iface", "", "interface that receives the mirror traffic (xdp)")
	fs.StringSliceVar(&ports, "ports", nil, "TCP port(s) of the mirrored service, comma-separated or repeated (required)")
	fs.UintSliceVar(&vnis, "vni", nil, "accept only these VXLAN VNIs (repeatable; --vni or --source is required)")
	fs.StringSliceVar(&sources, "source", nil, "accept mirror packets only from these outer source CIDRs (repeatable; --vni or --source is required)")
	fs.BoolVar(&cfg.AllowAnySource, "allow-any-source", false, "run without --vni and --source, accepting mirror packets from anyone (labs only: anyone reaching the VXLAN port can inject requests)")
	fs.Uint16Var(&cfg.VXLANPort, "vxlan-port", cfg.VXLANPort, "UDP port of the VXLAN mirror traffic")
	fs.StringVar(&cfg.XDPMode, "xdp-mode", cfg.XDPMode, "XDP attach mode: auto (native, else generic), native or generic")
	fs.BoolVar(&cfg.Force, "force", false, "replace an XDP program already attached to --iface")
	fs.StringVar(&cfg.PinRoot, "pin-root", cfg.PinRoot, "bpffs directory under which the maps are pinned, per interface (xdp)")
	fs.StringVar(&cfg.ListenAddr, "listen-addr", cfg.ListenAddr, "address the UDP sockets bind to (socket)")
	fs.IntVar(&cfg.Sockets, "sockets", 0, "number of SO_REUSEPORT sockets (socket; default one per CPU)")
	fs.StringVar(&cfg.PcapFile, "pcap-file", "", "pcap or pcapng file of mirror traffic (pcap)")
	fs.StringVar(&cfg.PcapSpeed, "pcap-speed", cfg.PcapSpeed, "pcap pace: 1x (as recorded) or max")

	// Reassembly and parsing.
	fs.IntVar(&cfg.Shards, "shards", 0, "reassembly shards (default GOMAXPROCS)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "connections tracked per shard before the least recently used is evicted")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", cfg.MaxHeaderBytes, "largest request or response head kept; larger messages are counted too large")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest body kept; larger messages are counted too large and not replayed")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "forget a connection after this long without a segment")

	// Replay.
	fs.StringArrayVar(&cfg.Targets, "target", nil, "shadow target URL (repeatable: every target receives every replayed request); none = observe only")
	fs.StringSliceVar(&cfg.Methods, "methods", cfg.Methods, "methods replayed; production writes must never be repeated")
	fs.StringArrayVar(&cfg.IncludePaths, "include-path", nil, "replay only paths matching this regular expression (repeatable)")
	fs.StringArrayVar(&cfg.ExcludePaths, "exclude-path", nil, "never replay paths matching this regular expression (repeatable)")
	fs.Float64Var(&cfg.Sample, "sample", cfg.Sample, "percentage of sample keys replayed (consistent per key)")
	fs.StringVar(&cfg.SampleKey, "sample-key", cfg.SampleKey, "sampling key: client-ip, header:NAME or cookie:NAME")
	fs.Float64Var(&cfg.MaxRPS, "max-rps", 0, "per-target request rate limit (0 = none); excess is dropped and counted")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "per-target concurrent requests")
	fs.IntVar(&cfg.Queue, "queue", cfg.Queue, "per-target queue length; a full queue drops and counts")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout, including reading the body")
	fs.Int64Var(&cfg.MaxResponseHeaderBytes, "max-response-header-bytes", cfg.MaxResponseHeaderBytes, "largest response head read from a target (with any 1xx before it); larger fails, counted response_too_large")
	fs.StringArrayVar(&cfg.SetHeaders, "set-header", nil, `set a header on replayed requests, "Name: value" (repeatable)`)
	fs.StringArrayVar(&cfg.DropHeaders, "drop-header", nil, "remove a header from replayed requests (repeatable)")
	fs.StringVar(&cfg.Host, "host", "", "override the Host header of replayed requests")
	fs.BoolVar(&cfg.NoMarker, "no-marker", false, "do not add X-Shadowtap-Replay: 1 to replayed requests")

	// Operations.
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Prometheus /metrics, /healthz and /readyz listen address (empty = off)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", "", "TCP listener for a load balancer health check, e.g. :8081 (empty = off)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&cfg.LogInterval, "log-interval", cfg.LogInterval, "interval of the summary log line")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "on SIGTERM, how long to wait for queued and in-flight replays")
	fs.BoolVar(&noSystemd, "no-systemd", false, "do not send sd_notify readiness and watchdog messages")

	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Ports, err = pipeline.ParsePorts(ports); err != nil {
		return usageError{err}
	}
	if cfg.VNIs, err = pipeline.ParseVNIs(vnis); err != nil {
		return usageError{err}
	}
	if cfg.Sources, err = pipeline.ParseSources(sources); err != nil {
		return usageError{err}
	}
	if fs.Changed("shards") && cfg.Shards == 0 {
		// 0 is the default's "one per CPU" only when the flag is absent.
		return usageError{fmt.Errorf("--shards 0: want 1 to %d (or leave it out: one per CPU)", pipeline.MaxShards)}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	log, err := newLogger(logFormat, stderr)
	if err != nil {
		return usageError{err}
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	return pipeline.Run(ctx, cfg, pipeline.Options{Log: log, Systemd: !noSystemd})
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if os.Getenv("SHADOWTAP_DEBUG") != "" {
		opts.Level = slog.LevelDebug
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
