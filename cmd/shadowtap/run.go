package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/shadowtap/shadowtap/pkg/pipeline"
)

// runCmd is `shadowtap run`: the receiver.
func runCmd(fs *pflag.FlagSet, _, stderr io.Writer) func(context.Context) error {
	cfg := pipeline.Defaults()
	var ports, sources []string
	var vnis []uint
	var logFormat, logLevel string
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
	fs.StringVar(&cfg.PcapSpeed, "pcap-speed", cfg.PcapSpeed, "pcap pace: 1x (as recorded), a multiple such as 2x or 0.5x, or max (as fast as it reads)")

	// Reassembly and parsing.
	fs.IntVar(&cfg.Shards, "shards", 0, "reassembly shards (default GOMAXPROCS)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "connections tracked per shard before the least recently used is evicted")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", cfg.MaxHeaderBytes, "largest request or response head kept; larger messages are counted too large")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest body kept; larger messages are counted too large and not replayed")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "forget a connection after this long without a segment")
	fs.Int64Var(&cfg.BodyBudget, "body-budget", cfg.BodyBudget, `bytes of request bodies held across the process (pipelined requests waiting for their answers, replay queues); a body beyond it is dropped and counted filtered "body_budget"`)

	// Replay.
	fs.StringArrayVar(&cfg.Targets, "target", nil, "shadow target URL (repeatable: every target receives every replayed request); none = observe only")
	fs.StringSliceVar(&cfg.Methods, "methods", cfg.Methods, "methods replayed; production writes must never be repeated")
	fs.StringArrayVar(&cfg.IncludePaths, "include-path", nil, "replay only paths matching this regular expression (repeatable)")
	fs.StringArrayVar(&cfg.ExcludePaths, "exclude-path", nil, "never replay paths matching this regular expression (repeatable)")
	fs.Float64Var(&cfg.Sample, "sample", cfg.Sample, "percentage of sample keys replayed (consistent per key)")
	fs.StringVar(&cfg.SampleKey, "sample-key", cfg.SampleKey, "sampling key: xff (the last X-Forwarded-For address, else the peer), client-ip, header:NAME or cookie:NAME")
	fs.Float64Var(&cfg.MaxRPS, "max-rps", 0, "per-target request rate limit (0 = none); excess is dropped and counted")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "per-target concurrent requests")
	fs.IntVar(&cfg.Queue, "queue", cfg.Queue, "per-target queue length; a full queue drops and counts")
	fs.Int64Var(&cfg.QueueBytes, "queue-bytes", cfg.QueueBytes, `per-target request body bytes queued; beyond, dropped and counted "queue"`)
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout, including reading the body")
	fs.IntVar(&cfg.Pipeline, "pipeline", cfg.Pipeline, "requests a replay worker writes at once when more are waiting (HTTP/1.1 pipelining), 1 (off) to 64; a target that closes a connection mid-batch gets one at a time from then on")
	fs.Int64Var(&cfg.MaxResponseHeaderBytes, "max-response-header-bytes", cfg.MaxResponseHeaderBytes, "largest response head read from a target (with any 1xx before it); larger fails, counted response_too_large")
	fs.StringArrayVar(&cfg.SetHeaders, "set-header", nil, `set a header on replayed requests, "Name: value" (repeatable)`)
	fs.StringArrayVar(&cfg.DropHeaders, "drop-header", nil, "remove a header from replayed requests (repeatable)")
	fs.StringVar(&cfg.Host, "host", "", "override the Host header of replayed requests")
	fs.BoolVar(&cfg.NoMarker, "no-marker", false, "do not add X-Shadowtap-Replay: 1 to replayed requests")

	// HTTPS shadows and load multiplication.
	fs.StringVar(&cfg.CAFile, "ca-file", "", "PEM bundle of the CAs trusted for https:// targets, instead of the system pool")
	fs.StringVar(&cfg.ClientCert, "client-cert", "", "PEM client certificate presented to https:// targets (mTLS; with --client-key)")
	fs.StringVar(&cfg.ClientKey, "client-key", "", "PEM private key of --client-cert")
	fs.BoolVar(&cfg.InsecureSkipVerify, "insecure-skip-verify", false, "do not verify the https:// targets' certificates: their identity is not checked (warned at start)")
	fs.StringArrayVar(&cfg.Multiply, "multiply", nil, `send each replayed request F times on average (0 < F <= 10; e.g. 0.5, 2, 3.5): F for every target, or "URL=F" for one (repeatable); copies beyond the first are marked X-Shadowtap-Replay: 2, 3, … and not compared`)

	// Comparison with production (on whenever there are targets).
	fs.StringVar(&cfg.Baseline, "baseline", "", "URL of a target running the old code: every replayed request also goes to it, and what differs between it and production is noise")
	fs.DurationVar(&cfg.ReplayDelay, "replay-delay", 0, "hold each replay this long before sending it, so a read replica catches up with production's writes")
	fs.StringArrayVar(&cfg.IgnoreHeaders, "ignore-header", nil, "response header never compared, added to the default noise list (repeatable)")
	fs.StringArrayVar(&cfg.IgnoreJSONPaths, "ignore-json-path", nil, `JSON path removed before comparing bodies, PATH or "ROUTE=PATH" e.g. "GET /users/{id}=$.updated_at" (repeatable)`)
	fs.StringArrayVar(&cfg.Routes, "route", nil, "route template tried before the automatic rules, e.g. /users/{id}/posts (repeatable)")
	fs.IntVar(&cfg.MaxRoutes, "max-routes", cfg.MaxRoutes, `routes tracked; the rest are counted under "other"`)
	fs.StringVar(&cfg.DiffLog, "diff-log", "", "JSONL file with one line per differing exchange (empty = off)")
	fs.IntVar(&cfg.DiffLogExamples, "diff-log-examples", cfg.DiffLogExamples, "diff log lines per route and kind per minute")
	fs.Int64Var(&cfg.DiffLogMaxBytes, "diff-log-max-bytes", cfg.DiffLogMaxBytes, "rotate the diff log beyond this size (one old file kept, FILE.1)")
	fs.StringArrayVar(&cfg.RedactHeaders, "redact-header", nil, "header whose value is never written to the diff log, besides Authorization, Cookie and Set-Cookie (repeatable)")
	fs.IntVar(&cfg.VerdictQueue, "verdict-queue", cfg.VerdictQueue, `exchanges waiting to be compared; beyond, counted uncompared "busy"`)
	fs.Int64Var(&cfg.CompareBodyBytes, "compare-body-bytes", cfg.CompareBodyBytes, "body bytes kept per response for comparison; beyond, only length and hash are compared")
	fs.Int64Var(&cfg.CompareBudget, "compare-budget", cfg.CompareBudget, `bytes of production and shadow bodies held for comparison across the process; beyond, exchanges are counted uncompared "budget"`)
	fs.StringVar(&cfg.VerdictOut, "verdict-out", "", "write the /verdict JSON document to this file every --log-interval and at exit")
	fs.BoolVar(&cfg.NoCompare, "no-compare", false, "replay without comparing the answers with production's (for benchmarks)")
	_ = fs.MarkHidden("no-compare")

	// Operations.
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Prometheus /metrics, /verdict, /healthz and /readyz listen address (empty = off)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", "", "TCP listener for a load balancer health check, e.g. :8081 (empty = off)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json (errors that end the run too)")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&cfg.LogInterval, "log-interval", cfg.LogInterval, "interval of the summary log line")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "on SIGTERM, how long to wait for queued and in-flight replays")
	fs.BoolVar(&noSystemd, "no-systemd", false, "do not send sd_notify readiness and watchdog messages")

	return func(ctx context.Context) error {
		log, err := newLogger(logFormat, logLevel, stderr)
		if err != nil {
			return usageError{err}
		}
		if fs.Changed("shards") && cfg.Shards == 0 {
			// 0 is the default's "one per CPU" only when the flag is absent.
			return fatal(log, logFormat, usageError{fmt.Errorf("--shards 0: want 1 to %d (or leave it out: one per CPU)", pipeline.MaxShards)})
		}
		if err := runConfig(&cfg, ports, vnis, sources); err != nil {
			return fatal(log, logFormat, usageError{err})
		}
		for _, w := range cfg.Warnings() {
			log.Warn(w)
		}
		if err := pipeline.Run(ctx, cfg, pipeline.Options{Log: log, Systemd: !noSystemd}); err != nil {
			return fatal(log, logFormat, err)
		}
		return nil
	}
}

// runConfig completes cfg from the flags that need parsing and checks it.
func runConfig(cfg *pipeline.Config, ports []string, vnis []uint, sources []string) error {
	var err error
	if cfg.Ports, err = pipeline.ParsePorts(ports); err != nil {
		return err
	}
	if cfg.VNIs, err = pipeline.ParseVNIs(vnis); err != nil {
		return err
	}
	if cfg.Sources, err = pipeline.ParseSources(sources); err != nil {
		return err
	}
	return cfg.Validate()
}

// fatal reports the error that ends the run: with --log-format json as a
// JSON log line (and the exit status only, so nothing else is printed), in
// text as the usual one line on stderr.
func fatal(log *slog.Logger, format string, err error) error {
	if format != "json" {
		return err
	}
	log.Error("shadowtap run stopped", "err", err)
	if errors.As(err, new(usageError)) {
		return exitStatus(2)
	}
	return exitStatus(1)
}

// newLogger returns the logger for format (text, json) at level.
// Durations are written as strings ("1.5s"), not nanosecond integers.
func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
	}}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
