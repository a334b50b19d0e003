package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shadowtap/shadowtap/pkg/buildinfo"
	"github.com/shadowtap/shadowtap/pkg/capture"
	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/pkg/flow"
	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/metrics"
	"github.com/shadowtap/shadowtap/pkg/replay"
	"github.com/shadowtap/shadowtap/pkg/verdict"
	"github.com/shadowtap/shadowtap/pkg/xdp"
)

// Options are the parts of a run that are not user configuration.
type Options struct {
	Log     *slog.Logger
	Systemd bool // send sd_notify READY and watchdog pings when under systemd
	// Ready, if set, is called once the capture source is attached and the
	// pipeline runs (tests use it to start traffic).
	Ready func()
}

// Run runs the pipeline until ctx is done (SIGINT/SIGTERM) or, for a pcap
// source, until the file ends. It then stops intake, drains the shards, the
// in-flight replays and the comparisons (each up to DrainTimeout), writes
// --verdict-out, detaches and returns.
func Run(ctx context.Context, cfg Config, opt Options) error {
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	p, err := build(cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	setMemoryLimit(cfg, log)
	// The shards exist before anything can scrape their counters.
	flowCtx, cancelFlow := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlow()
	p.dispatch = flow.NewDispatcher(flowCtx, p.flowCfg, p.factory)
	if bl, ok := p.source.(interface{ Backlog() float64 }); ok && p.replayer != nil {
		// Replay sheds sessions when capture falls behind (issue 12).
		p.replayer.SetCapturePressure(bl.Backlog)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(p.collectors()...)
	// go_goroutines, go_memstats_*, process_resident_memory_bytes, ...: what
	// an operator watches for leaks.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(buildinfo.Read().Collector())
	var ready atomic.Bool
	var verdictHandler http.Handler
	if p.engine != nil {
		verdictHandler = p.engine.Handler()
	}
	servers, err := startServers(cfg, reg, verdictHandler, &ready, log)
	if err != nil {
		return err
	}
	defer servers.shutdown()

	// Replay workers and the comparison outlive intake so they can drain.
	replayCtx, cancelReplay := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReplay()
	verdictCtx, cancelVerdict := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelVerdict()
	var wg, verdictWG sync.WaitGroup
	if p.engine != nil {
		verdictWG.Add(1)
		go func() {
			defer verdictWG.Done()
			if err := p.engine.Run(verdictCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, verdict.ErrClosed) {
				log.Error("comparison stopped", "err", err)
			}
		}()
	}
	if p.replayer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.replayer.Run(replayCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("replay stopped", "err", err)
			}
		}()
	}

	ready.Store(true)
	if opt.Systemd {
		notifySystemd(ctx, &ready, p, log)
	}
	log.Info("shadowtap running", p.describe(cfg)...)
	if opt.Ready != nil {
		opt.Ready()
	}

	sumCtx, stopSummary := context.WithCancel(ctx)
	go p.summaryLoop(sumCtx, cfg, log)

	runErr := p.source.Run(ctx, p.dispatch)
	stopSummary()
	ready.Store(false)
	if opt.Systemd {
		_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	}

	// Drain: intake has stopped; let the shards finish what they hold, then
	// the replays, each bounded by the drain timeout.
	log.Info("draining", "timeout", cfg.DrainTimeout)
	p.dispatch.Close()
	if p.replayer != nil {
		dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		if err := p.replayer.Drain(dctx); err != nil {
			log.Warn("drain incomplete", "err", err)
		}
		cancel()
	}
	cancelReplay()
	wg.Wait()
	if p.engine != nil {
		// Every exchange has been handed over: let the comparison finish
		// its queue and flush the diff log, then write the document.
		cctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		if err := p.engine.Close(cctx); err != nil {
			log.Warn("comparison drain incomplete", "err", err)
		}
		cancel()
		cancelVerdict()
		verdictWG.Wait()
		p.writeVerdict(cfg, log)
	}
	p.logSummary(log, "final")
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

// stages holds the built pipeline.
type stages struct {
	source    event.Source
	closer    func() error
	flowCfg   flow.DispatchConfig
	factory   flow.HandlerFactory
	dispatch  *flow.Dispatcher
	httpStats *httpx.Stats
	replayer  *replay.Replayer
	engine    *verdict.Engine // nil without targets
	observer  *observer
	summary   summaryState
}

func build(cfg Config, log *slog.Logger) (*stages, error) {
	p := &stages{httpStats: &httpx.Stats{}}
	dcfg := decap.Config{Ports: cfg.Ports, VNIs: cfg.VNIs, Sources: cfg.Sources, VXLANPort: cfg.VXLANPort}

	var sink httpx.Sink
	if len(cfg.Targets) > 0 {
		rc, err := replayConfig(cfg)
		if err != nil {
			return nil, err
		}
		if !cfg.NoCompare {
			e, err := verdict.New(verdictConfig(cfg), log)
			if err != nil {
				return nil, fmt.Errorf("verdict: %w", err)
			}
			p.engine, rc.Verdict = e, e
		}
		r, err := replay.New(rc, log)
		if err != nil {
			return nil, err
		}
		p.replayer = r
		sink = r
	} else {
		log.Warn("no --target given: observing only, nothing is replayed")
		if cfg.DiffLog != "" || cfg.VerdictOut != "" {
			log.Warn("no --target given: nothing is compared, --diff-log and --verdict-out stay unwritten")
		}
		p.observer = &observer{}
		sink = p.observer
	}
	hcfg := httpx.Config{MaxHeaderBytes: cfg.MaxHeaderBytes, MaxBodyBytes: cfg.MaxBodyBytes, BodyBudget: httpx.NewBudget(cfg.BodyBudget)}
	if p.engine != nil {
		// Production's bodies are kept only as far as the comparison needs.
		hcfg.ResponseBodyKeep = cfg.CompareBodyBytes
	}
	p.factory = httpx.NewFactory(hcfg, sink, p.httpStats, log)
	p.flowCfg = flow.DispatchConfig{Shards: cfg.Shards, Reassembly: flow.Config{MaxConns: cfg.MaxConns, IdleTimeout: cfg.IdleTimeout}}

	switch cfg.Capture {
	case CaptureXDP:
		probe, err := xdp.Attach(xdp.Config{
			Iface: cfg.Iface, Ports: cfg.Ports, VNIs: cfg.VNIs, Sources: cfg.Sources,
			VXLANPort: cfg.VXLANPort, Mode: cfg.XDPMode, Force: cfg.Force, PinRoot: cfg.PinRoot,
		}, log)
		if err != nil {
			return nil, err
		}
		p.source, p.closer = probe, probe.Close
	case CaptureSocket:
		s, err := capture.NewSocket(capture.SocketConfig{
			ListenAddr: cfg.ListenAddr, VXLANPort: cfg.VXLANPort, Sockets: cfg.Sockets, Decap: dcfg,
		}, log)
		if err != nil {
			return nil, err
		}
		p.source, p.closer = s, s.Close
	case CapturePcap:
		s, err := capture.NewPcap(capture.PcapConfig{File: cfg.PcapFile, Speed: cfg.PcapSpeed, Decap: dcfg}, log)
		if err != nil {
			return nil, err
		}
		p.source = s // opens the file in Run and closes it at the end
	}
	return p, nil
}

func replayConfig(cfg Config) (replay.Config, error) {
	rc := replay.DefaultConfig()
	rc.Methods, rc.SamplePercent, rc.SampleKey = cfg.Methods, cfg.Sample, cfg.SampleKey
	rc.MaxRPS, rc.MaxInflight, rc.Queue, rc.Timeout = cfg.MaxRPS, cfg.MaxInflight, cfg.Queue, cfg.Timeout
	rc.QueueBytes = cfg.QueueBytes
	rc.DropHeaders, rc.Host, rc.Marker = cfg.DropHeaders, cfg.Host, !cfg.NoMarker
	rc.MaxResponseHeaderBytes = cfg.MaxResponseHeaderBytes
	rc.Pipeline = cfg.Pipeline
	rc.CompareBodyBytes, rc.CompareBudget, rc.ReplayDelay = cfg.CompareBodyBytes, cfg.CompareBudget, cfg.ReplayDelay
	if cfg.Baseline != "" {
		u, err := ParseTarget(cfg.Baseline)
		if err != nil {
			return rc, fmt.Errorf("--baseline: %w", err)
		}
		rc.Baseline = u
	}
	for _, t := range cfg.Targets {
		u, err := ParseTarget(t)
		if err != nil {
			return rc, err
		}
		rc.Targets = append(rc.Targets, u)
	}
	for _, s := range cfg.IncludePaths {
		rc.IncludePath = append(rc.IncludePath, regexp.MustCompile(s))
	}
	for _, s := range cfg.ExcludePaths {
		rc.ExcludePath = append(rc.ExcludePath, regexp.MustCompile(s))
	}
	for _, h := range cfg.SetHeaders {
		kv, err := replay.ParseHeaderKV(h)
		if err != nil {
			return rc, fmt.Errorf("--set-header %q: %w", h, err)
		}
		rc.SetHeaders = append(rc.SetHeaders, kv)
	}
	if err := shadowTLSAndMultiply(cfg, &rc); err != nil {
		return rc, err
	}
	if err := rc.Validate(); err != nil {
		return rc, err
	}
	return rc, nil
}

// verdictConfig is the comparison stage's configuration from the flags.
func verdictConfig(cfg Config) verdict.Config {
	vc := verdict.DefaultConfig()
	if cfg.Baseline != "" {
		if u, err := ParseTarget(cfg.Baseline); err == nil {
			vc.Baseline = u.Redacted() // replay's name for the target
		}
	}
	vc.IgnoreHeaders, vc.IgnoreJSONPaths, vc.Routes = cfg.IgnoreHeaders, cfg.IgnoreJSONPaths, cfg.Routes
	vc.MaxRoutes, vc.RedactHeaders = cfg.MaxRoutes, cfg.RedactHeaders
	vc.DiffLog, vc.DiffLogExamples, vc.DiffLogMaxBytes = cfg.DiffLog, cfg.DiffLogExamples, cfg.DiffLogMaxBytes
	vc.Queue = cfg.VerdictQueue
	return vc
}

// writeVerdict writes the /verdict document to --verdict-out, if set.
func (p *stages) writeVerdict(cfg Config, log *slog.Logger) {
	if p.engine == nil || cfg.VerdictOut == "" {
		return
	}
	if err := p.engine.WriteFile(cfg.VerdictOut); err != nil {
		log.Error("writing --verdict-out", "file", cfg.VerdictOut, "err", err)
	}
}

func (p *stages) close() {
	if p.closer != nil {
		_ = p.closer()
	}
}

func (p *stages) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		metrics.Capture(p.source.Counters),
		metrics.Stage("flow", func() any { return p.dispatch.Stats() }),
		metrics.Stage("http", func() any { return p.httpStats.Snapshot() }),
	}
	if p.replayer != nil {
		cs = append(cs, p.replayer.Collectors()...)
		if p.engine != nil {
			cs = append(cs, p.engine.Collectors()...)
		}
	} else {
		cs = append(cs, metrics.Stage("observe", func() any { return p.observer.snapshot() }))
	}
	return cs
}

func (p *stages) describe(cfg Config) []any {
	attrs := []any{"capture", cfg.Capture, "ports", cfg.Ports, "targets", len(cfg.Targets)}
	if cfg.Baseline != "" {
		attrs = append(attrs, "baseline", true)
	}
	if cfg.Iface != "" {
		attrs = append(attrs, "iface", cfg.Iface)
	}
	if cfg.MetricsAddr != "" {
		attrs = append(attrs, "metrics", "http://"+cfg.MetricsAddr+"/metrics")
		if p.engine != nil {
			attrs = append(attrs, "verdict", "http://"+cfg.MetricsAddr+"/verdict")
		}
	}
	return attrs
}

// servers are the metrics/health HTTP server and the load balancer health
// check listener.
type servers struct{ list []*http.Server }

func startServers(cfg Config, reg *prometheus.Registry, verdictHandler http.Handler, ready *atomic.Bool, log *slog.Logger) (*servers, error) {
	s := &servers{}
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		if verdictHandler != nil {
			mux.Handle("GET /verdict", verdictHandler)
		}
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", readyHandler(ready))
		if err := s.listen(cfg.MetricsAddr, "--metrics-addr", mux, log); err != nil {
			return nil, err
		}
	}
	if cfg.HealthAddr != "" {
		if err := s.listen(cfg.HealthAddr, "--health-addr", readyHandler(ready), log); err != nil {
			s.shutdown()
			return nil, err
		}
	}
	return s, nil
}

func readyHandler(ready *atomic.Bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}
}

func (s *servers) listen(addr, flag string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	s.list = append(s.list, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

func (s *servers) shutdown() {
	for _, srv := range s.list {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
}

// notifySystemd tells systemd the service is ready and, when WatchdogSec is
// set, pings the watchdog while the pipeline makes progress: ready, every
// shard goroutine live and the capture reader live (see stalled). A stuck
// stage stops the pings, so systemd restarts the service.
func notifySystemd(ctx context.Context, ready *atomic.Bool, p *stages, log *slog.Logger) {
	if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify failed", "err", err)
	} else if !ok {
		return // not under systemd
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	go func() {
		t := time.NewTicker(interval / 3)
		defer t.Stop()
		quiet := false // a stall was logged: say so once, and once when it ends
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				why := p.stalled(now, interval/2)
				if why == "" && ready.Load() {
					_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
					if quiet {
						log.Info("pipeline making progress again: watchdog pings resumed")
						quiet = false
					}
					continue
				}
				if why != "" && !quiet {
					log.Error("pipeline stalled: watchdog pings stopped, systemd will restart the service", "stage", why)
					quiet = true
				}
			}
		}
	}()
}

// liveSource is a capture source that can say when its reader last ran
// (the XDP probe; the socket and pcap sources block in the kernel or end).
type liveSource interface {
	LastActive() time.Time
}

// stalled names the stage that has made no progress for longer than maxAge
// at now, or returns "".
func (p *stages) stalled(now time.Time, maxAge time.Duration) string {
	if p.dispatch != nil {
		if i, age, ok := p.dispatch.Stalled(now, maxAge); ok {
			return fmt.Sprintf("flow shard %d (no batch or tick for %v)", i, age.Round(time.Millisecond))
		}
	}
	if ls, ok := p.source.(liveSource); ok {
		if last := ls.LastActive(); !last.IsZero() && now.Sub(last) > maxAge {
			return fmt.Sprintf("capture reader (no poll for %v)", now.Sub(last).Round(time.Millisecond))
		}
	}
	return ""
}
