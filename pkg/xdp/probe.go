package xdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/shadowtap/shadowtap/bpf"
	"github.com/shadowtap/shadowtap/pkg/event"
)

// Probe is the loaded XDP program, its maps and the ring buffer reader. It
// is an event.Source. Attach returns one attached to an interface; Load one
// that is only loaded (for BPF_PROG_TEST_RUN tests and benchmarks).
type Probe struct {
	cfg    Config
	log    *slog.Logger
	objs   bpf.ShadowtapObjects
	reader *ringbuf.Reader
	link   link.Link    // nil when only loaded
	pinDir string       // "" when nothing is pinned
	beat   atomic.Int64 // unix ns of the reader's last poll (see LastActive)
	// backlog is the most bytes the reader found waiting in the ring at a
	// poll since Backlog last read it.
	backlog atomic.Int64
}

// Backlog returns how full the ring buffer was, at most, when the reader
// came to it since the last call: 0 (it keeps up) to 1 (events are lost).
// Replay's overload control sheds work when the reader falls behind
// (issue 12). Call it only while Run runs.
func (p *Probe) Backlog() float64 {
	return float64(p.backlog.Swap(0)) / float64(p.reader.BufferSize())
}

// LastActive is when Run's reader last polled the ring or drained it: it
// polls every PollInterval even when idle, so an old value means the reader
// is stuck (the systemd watchdog uses it). Zero before Run.
func (p *Probe) LastActive() time.Time {
	if v := p.beat.Load(); v != 0 {
		return time.Unix(0, v)
	}
	return time.Time{}
}

var _ event.Source = (*Probe)(nil)

// Pin names under PinRoot/<iface>/: short, since the directory already says
// whose they are (the maps' own names carry a shadowtap_ prefix for
// `bpftool map list`).
const (
	PinStats   = "stats"
	pinVNIs    = "vni_allow"
	pinSources = "source_allow"
	pinPorts   = "ports"
)

// pinnedMaps are the maps pinned under PinRoot/<iface>/. The ring buffer is
// not pinned: after a kill -9 its memory goes with the program.
func (p *Probe) pinnedMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		PinStats:   p.objs.ShadowtapStats,
		pinVNIs:    p.objs.ShadowtapVnis,
		pinSources: p.objs.ShadowtapSrcs,
		pinPorts:   p.objs.ShadowtapPorts,
	}
}

// Load loads the program and its maps into the kernel and fills the
// configuration maps from cfg, without attaching anything or pinning (cfg.Iface
// is not used). Tests and benchmarks run the program with
// Program().Run(&ebpf.RunOptions{Data: frame}) and read events with Run.
func Load(cfg Config, log *slog.Logger) (*Probe, error) {
	cfg, log, err := prepare(cfg, log)
	if err != nil {
		return nil, err
	}
	return load(cfg, log)
}

// prepare fills cfg's defaults and checks privileges: the start of both Load
// and Attach.
func prepare(cfg Config, log *slog.Logger) (Config, *slog.Logger, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return cfg, nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return cfg, log, checkPrivileges()
}

// load loads the program with a prepared cfg.
func load(cfg Config, log *slog.Logger) (*Probe, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}

	spec, err := bpf.LoadShadowtap()
	if err != nil {
		return nil, fmt.Errorf("read the embedded BPF object: %w", err)
	}
	spec.Maps[bpf.ShadowtapMapShadowtapRing].MaxEntries = uint32(cfg.RingSize)
	// The program's configuration is a read-only global: set before loading.
	c := programConfig(cfg)
	if err := spec.Variables[bpf.ShadowtapVarConfig].Set(&c); err != nil {
		return nil, fmt.Errorf("set the XDP program's configuration: %w", err)
	}

	p := &Probe{cfg: cfg, log: log}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel verifier rejected the XDP program (kernel too old, or a bug in bpf/shadowtap.c): %+v", verr)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, errPrivileges(err)
		}
		return nil, fmt.Errorf("load the XDP program: %w", err)
	}
	if err := p.fillMaps(); err != nil {
		p.objs.Close()
		return nil, err
	}
	p.reader, err = ringbuf.NewReader(p.objs.ShadowtapRing)
	if err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("open the event ring buffer: %w", err)
	}
	return p, nil
}

// fillMaps writes cfg's allowlists and service ports into the program's maps.
func (p *Probe) fillMaps() error {
	one := uint8(1)
	for _, vni := range p.cfg.VNIs {
		if err := p.objs.ShadowtapVnis.Put(vni, one); err != nil {
			return fmt.Errorf("allow VNI %d: %w", vni, err)
		}
	}
	for _, pfx := range p.cfg.Sources {
		k := sourceKey(pfx)
		if err := p.objs.ShadowtapSrcs.Put(&k, one); err != nil {
			return fmt.Errorf("allow source %v: %w", pfx, err)
		}
	}
	for _, port := range p.cfg.Ports {
		if err := p.objs.ShadowtapPorts.Put(uint32(port), one); err != nil {
			return fmt.Errorf("serve port %d: %w", port, err)
		}
	}
	return nil
}

// Program returns the loaded XDP program (for BPF_PROG_TEST_RUN).
func (p *Probe) Program() *ebpf.Program { return p.objs.ShadowtapXdp }

// Attach loads the program with cfg, attaches it to cfg.Iface and pins its
// maps under cfg.PinRoot/<iface>/. Every error is one line saying what to do.
// Close detaches it.
func Attach(cfg Config, log *slog.Logger) (*Probe, error) {
	cfg, log, err := prepare(cfg, log)
	if err != nil {
		return nil, err
	}
	iface, err := lookupIface(cfg.Iface)
	if err != nil {
		return nil, err
	}
	if err := checkExistingXDP(iface, cfg.Force, log); err != nil {
		return nil, err
	}
	if err := ensureBPFFS(cfg.PinRoot); err != nil {
		return nil, err
	}

	p, err := load(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := p.attach(iface); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.pin(filepath.Join(cfg.PinRoot, cfg.Iface)); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// pin pins the maps under dir, replacing stale pins of an earlier run.
func (p *Probe) pin(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory %s: %w (is bpffs mounted at /sys/fs/bpf?)", dir, err)
	}
	p.pinDir = dir
	maps := p.pinnedMaps()
	for name := range maps {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale pin: %w", err)
		}
	}
	for name, m := range maps {
		path := filepath.Join(dir, name)
		if err := m.Pin(path); err != nil {
			return fmt.Errorf("pin map %s at %s: %w", name, path, err)
		}
	}
	return nil
}

// Close detaches the program, removes the pins and frees the maps. It is
// safe to call while Run is reading: Run returns.
func (p *Probe) Close() error {
	var errs []error
	if p.link != nil {
		if err := p.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach XDP from %s: %w", p.cfg.Iface, err))
		}
		p.link = nil
	}
	if p.reader != nil {
		if err := p.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring buffer reader: %w", err))
		}
	}
	if p.pinDir != "" {
		for _, m := range p.pinnedMaps() {
			if m == nil {
				continue
			}
			if err := m.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("remove pin: %w", err))
			}
		}
		// Only removes the directories when nothing else is in them: the
		// interface's, then the pin root (other interfaces may use it).
		_ = os.Remove(p.pinDir)
		_ = os.Remove(filepath.Dir(p.pinDir))
		p.pinDir = ""
	}
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close BPF objects: %w", err))
	}
	return errors.Join(errs...)
}

// ctxCheckEvery is how many records Run reads between checks of ctx while
// the ring never drains.
const ctxCheckEvery = 1024

// maxRecord is the largest ring buffer record: the header and a full payload.
const maxRecord = event.HeaderSize + 9000

// Run reads events until ctx is done or the probe is closed, handing each to
// sink.Segment and calling sink.Flush whenever the ring is drained or the
// poll timer fires. It does not allocate per event.
func (p *Probe) Run(ctx context.Context, sink event.Batcher) error {
	rec := ringbuf.Record{RawSample: make([]byte, 0, maxRecord)}
	var h event.Header
	var decodeErrs uint64
	// The reader never blocks in a system call. A deadline in the past makes
	// ReadInto drain what the ring holds and return; the goroutine then
	// waits in Go's network poller for the ring's file descriptor (readable
	// when the program asks for a wakeup) or PollInterval. A thread blocked
	// in epoll_wait for milliseconds would make the runtime hand its P to
	// another thread and keep sysmon waking every 20 µs (issue 12: about a
	// tenth of shadowtap's CPU with replay on).
	p.reader.SetDeadline(time.Unix(1, 0))
	wait, closeWait, err := p.ringWaiter()
	if err != nil {
		return err
	}
	defer closeWait()
	for {
		p.beat.Store(time.Now().UnixNano())
		if b := int64(p.reader.AvailableBytes()); b > p.backlog.Load() {
			p.backlog.Store(b) // only this goroutine raises it
		}
		n, err := p.drain(ctx, &rec, &h, sink, &decodeErrs)
		sink.Flush()
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read the XDP event ring buffer: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if n >= readerBusy {
			// Traffic is heavy: come back as soon as the shards had the
			// CPU.
			runtime.Gosched()
			continue
		}
		if err := wait(ctx); err != nil {
			return err
		}
	}
}

// readerBusy is the events a poll must find for the reader to poll again
// at once (after yielding) instead of waiting for a wakeup.
const readerBusy = 256

// ringWaiter returns a function that waits until the ring buffer signals
// data (the program's wakeup), PollInterval passes or ctx ends, parking the
// goroutine in Go's network poller rather than a thread in a system call.
func (p *Probe) ringWaiter() (wait func(context.Context) error, closeFn func(), err error) {
	syscall.ForkLock.RLock()
	fd, err := syscall.Dup(p.objs.ShadowtapRing.FD())
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("xdp: duplicating the ring buffer descriptor: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("xdp: ring buffer descriptor: %w", err)
	}
	f := os.NewFile(uintptr(fd), "xdp-ring")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("xdp: ring buffer descriptor: %w", err)
	}
	wait = func(ctx context.Context) error {
		if err := f.SetReadDeadline(time.Now().Add(PollInterval)); err != nil {
			return fmt.Errorf("xdp: ring buffer poll: %w", err)
		}
		unwatch := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
		defer unwatch()
		err := rc.Read(func(uintptr) bool { return p.reader.AvailableBytes() > 0 })
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("xdp: ring buffer poll: %w", err)
		}
		return nil
	}
	return wait, func() { f.Close() }, nil
}

// drain hands every event the ring holds to sink and returns how many. It
// stops early when ctx ends (checked every ctxCheckEvery events).
func (p *Probe) drain(ctx context.Context, rec *ringbuf.Record, h *event.Header, sink event.Batcher, decodeErrs *uint64) (int, error) {
	n := 0
	for {
		err := p.reader.ReadInto(rec)
		switch {
		case err == nil:
			payload, derr := event.Decode(rec.RawSample, h)
			if derr != nil {
				// Cannot happen with the program in bpf/; say so once.
				if *decodeErrs == 0 {
					p.log.Error("xdp: undecodable ring buffer record", "len", len(rec.RawSample), "err", derr)
				}
				*decodeErrs++
				continue
			}
			sink.Segment(h, payload)
			n++
			if n%ctxCheckEvery == 0 {
				if ctx.Err() != nil {
					return n, nil
				}
				p.beat.Store(time.Now().UnixNano())
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return n, nil // the ring is empty
		default:
			return n, err
		}
	}
}

// Counters returns the program's counters summed over CPUs.
func (p *Probe) Counters() (event.Counters, error) {
	return readStats(p.objs.ShadowtapStats)
}
