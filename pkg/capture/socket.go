package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
)

// SocketConfig configures the UDP-socket capture source.
type SocketConfig struct {
	// ListenAddr is the local address to bind; "" binds every address, IPv4
	// and IPv6 (a dual-stack socket).
	ListenAddr string
	// VXLANPort is the UDP port to bind; 0 means 4789.
	VXLANPort uint16
	// Sockets is the number of SO_REUSEPORT sockets, each read by its own
	// goroutine; 0 means GOMAXPROCS.
	Sockets int
	// RcvBuf is the receive buffer per socket in bytes; 0 means 32 MiB. It
	// is set with SO_RCVBUFFORCE when the process may (CAP_NET_ADMIN), else
	// SO_RCVBUF, which the kernel caps at net.core.rmem_max.
	RcvBuf int
	// Decap selects the mirror packets to accept.
	Decap decap.Config
}

// Sizes of the receive path. A slot holds one datagram: an inner frame of a
// 9001-byte MTU with two VLAN tags and the VXLAN header fits; a longer
// datagram is cut to the slot, and its IP length then flags it truncated.
const (
	defaultRcvBuf   = 32 << 20
	slotSize        = 9216
	slotsPerBatch   = 32
	batchesPerRead  = 4
	ctrlSize        = 64 // room for the SO_RXQ_OVFL control message
	sockaddrMaxSize = unix.SizeofSockaddrInet6
)

// Socket is the --capture socket source: UDP sockets on the VXLAN port with
// SO_REUSEPORT, read with recvmmsg, one goroutine per socket.
//
// Concurrency: each socket's goroutine decodes its datagrams (pkg/decap) in
// place and hands the sockBatch, with the emitted events, over a channel to the
// one goroutine that runs Run, which alone calls the sink's Segment and
// Flush. The sink therefore needs no locking. A socket goroutine waits for a
// free sockBatch when the sink falls behind; the kernel socket buffer then
// fills, and what it drops is counted (see Counters).
type Socket struct {
	cfg     SocketConfig
	log     *slog.Logger
	dec     *decap.Decoder
	readers []*sockReader
	started atomic.Bool
	closeMu sync.Mutex
	closed  bool
}

var _ event.Source = (*Socket)(nil)

// sockReader is one socket and its receive buffers.
type sockReader struct {
	conn *net.UDPConn
	raw  syscall.RawConn
	dec  *decap.Decoder
	free chan *sockBatch

	mu       sync.Mutex
	counters event.Counters // decoded outcomes
	ovfl     uint32         // last SO_RXQ_OVFL value: datagrams the kernel dropped
	memDrops uint32         // last SK_MEMINFO_DROPS value seen

	// recvmmsg call state, used only by the reading goroutine.
	cur    *sockBatch
	got    int
	errno  syscall.Errno
	recvFn func(fd uintptr) bool
}

// sockBatch is a set of datagram slots filled by one recvmmsg call, and the
// events decoded from them (payloads point into the slots).
type sockBatch struct {
	owner    *sockReader
	buf      []byte
	msgs     []unix.Mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet6
	ctrl     []byte
	hdrs     []event.Header
	payloads [][]byte
	n        int // events in hdrs/payloads
}

func newSockBatch(owner *sockReader) *sockBatch {
	b := &sockBatch{
		owner:    owner,
		buf:      make([]byte, slotsPerBatch*slotSize),
		msgs:     make([]unix.Mmsghdr, slotsPerBatch),
		iovs:     make([]unix.Iovec, slotsPerBatch),
		names:    make([]unix.RawSockaddrInet6, slotsPerBatch),
		ctrl:     make([]byte, slotsPerBatch*ctrlSize),
		hdrs:     make([]event.Header, slotsPerBatch),
		payloads: make([][]byte, slotsPerBatch),
	}
	for i := range b.msgs {
		b.iovs[i].Base = &b.buf[i*slotSize]
		b.iovs[i].SetLen(slotSize)
		h := &b.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.ctrl[i*ctrlSize]
	}
	return b
}

// reset prepares the message headers for the next recvmmsg call (the kernel
// overwrites the lengths and flags).
func (b *sockBatch) reset() {
	for i := range b.msgs {
		h := &b.msgs[i].Hdr
		h.Namelen = sockaddrMaxSize
		h.SetControllen(ctrlSize)
		h.Flags = 0
		b.msgs[i].Len = 0
	}
	b.n = 0
}

// NewSocket opens cfg.Sockets UDP sockets bound to the VXLAN port. It does
// not read until Run. It needs no privilege for ports above 1023.
func NewSocket(cfg SocketConfig, log *slog.Logger) (*Socket, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.VXLANPort == 0 {
		cfg.VXLANPort = decap.DefaultVXLANPort
	}
	if cfg.Sockets <= 0 {
		cfg.Sockets = runtime.GOMAXPROCS(0)
	}
	if cfg.RcvBuf <= 0 {
		cfg.RcvBuf = defaultRcvBuf
	}
	if cfg.Decap.VXLANPort == 0 {
		cfg.Decap.VXLANPort = cfg.VXLANPort
	}
	s := &Socket{cfg: cfg, log: log, dec: decap.New(cfg.Decap)}
	addr := net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(int(cfg.VXLANPort)))
	var forced atomic.Bool
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				serr = fmt.Errorf("set SO_REUSEPORT: %w", serr)
				return
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.RcvBuf) == nil {
				forced.Store(true)
			} else if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.RcvBuf); serr != nil {
				serr = fmt.Errorf("set SO_RCVBUF to %d: %w", cfg.RcvBuf, serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); serr != nil {
				serr = fmt.Errorf("set SO_RXQ_OVFL: %w", serr)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for i := 0; i < cfg.Sockets; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			s.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("socket capture: listen on udp %s: the port is taken by another program (a kernel VXLAN device or another shadowtap?); stop it or choose --vxlan-port/--listen-addr: %w", addr, err)
			}
			return nil, fmt.Errorf("socket capture: listen on udp %s: %w", addr, err)
		}
		conn := pc.(*net.UDPConn)
		raw, err := conn.SyscallConn()
		if err != nil {
			conn.Close()
			s.Close()
			return nil, fmt.Errorf("socket capture: %w", err)
		}
		r := &sockReader{conn: conn, raw: raw, dec: s.dec, free: make(chan *sockBatch, batchesPerRead)}
		r.recvFn = r.recv
		for range batchesPerRead {
			r.free <- newSockBatch(r)
		}
		s.readers = append(s.readers, r)
	}
	got := 0
	_ = s.readers[0].raw.Control(func(fd uintptr) {
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	got /= 2 // the kernel reports twice the usable size
	log.Info("socket capture listening", "addr", s.readers[0].conn.LocalAddr().String(),
		"sockets", cfg.Sockets, "rcvbuf_bytes", got, "rcvbuf_forced", forced.Load())
	if got < cfg.RcvBuf/2 {
		log.Warn("socket receive buffer smaller than asked: bursts may be dropped by the kernel (counted in lost_ringbuf); run with CAP_NET_ADMIN or raise net.core.rmem_max",
			"asked", cfg.RcvBuf, "got", got)
	}
	return s, nil
}

// Addr returns the bound local address.
func (s *Socket) Addr() netip.AddrPort {
	if len(s.readers) == 0 {
		return netip.AddrPort{}
	}
	return s.readers[0].conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Close closes the sockets. Run, if running, returns.
func (s *Socket) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, r := range s.readers {
		r.refreshDrops() // keep the kernel's last drop count
		if err := r.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Counters returns the outcome counters summed over the sockets, with the
// same names as the BPF program's. Datagrams the kernel dropped because a
// socket buffer was full (SO_RXQ_OVFL, or SK_MEMINFO_DROPS when fresher)
// are counted in LostSocket (the queue between the kernel and the reader
// overflowed, and their outcome is unknown); LostRingbuf stays for the
// reader's own hand-over failures, as with XDP. KernelDrops reports the
// former alone.
func (s *Socket) Counters() (event.Counters, error) {
	s.refreshDrops()
	var c event.Counters
	for _, r := range s.readers {
		r.mu.Lock()
		c.Add(&r.counters)
		c.Outcomes[event.LostSocket] += uint64(max(r.ovfl, r.memDrops))
		r.mu.Unlock()
	}
	return c, nil
}

// KernelDrops returns the datagrams the kernel dropped on the sockets
// (Counters' LostSocket).
func (s *Socket) KernelDrops() uint64 {
	s.refreshDrops()
	var n uint64
	for _, r := range s.readers {
		r.mu.Lock()
		n += uint64(max(r.ovfl, r.memDrops))
		r.mu.Unlock()
	}
	return n
}

// refreshDrops updates every open socket's kernel drop count.
func (s *Socket) refreshDrops() {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return
	}
	for _, r := range s.readers {
		r.refreshDrops()
	}
}

// refreshDrops reads SK_MEMINFO_DROPS, so kernel drops show even when no
// datagram arrived since (SO_RXQ_OVFL only comes with a datagram).
func (r *sockReader) refreshDrops() {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mem))
	var errno syscall.Errno
	err := r.raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	})
	if err != nil || errno != 0 {
		return
	}
	r.mu.Lock()
	r.memDrops = max(r.memDrops, mem[unix.SK_MEMINFO_DROPS])
	r.mu.Unlock()
}

// Run reads the sockets and delivers the segments to sink until ctx is done,
// then returns nil. It can be called once.
func (s *Socket) Run(ctx context.Context, sink event.Batcher) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("socket capture: Run called twice")
	}
	s.closeMu.Lock()
	closed := s.closed
	s.closeMu.Unlock()
	if closed {
		return errors.New("socket capture: Run after Close")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	out := make(chan *sockBatch, len(s.readers)*batchesPerRead) // never full: holds every sockBatch there is
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	for _, r := range s.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.loop(ctx, out); err != nil {
				errOnce.Do(func() { runErr = err })
				cancel()
			}
		}()
	}
	// Wake readers blocked in the poller when ctx ends.
	stop := context.AfterFunc(ctx, func() {
		for _, r := range s.readers {
			_ = r.conn.SetReadDeadline(time.Now())
		}
	})
	defer stop()
	go func() { wg.Wait(); close(out) }()

	for b := range out {
		for i := range b.n {
			sink.Segment(&b.hdrs[i], b.payloads[i])
		}
		b.owner.free <- b // never blocks: the channel holds all of the owner's batches
		if len(out) == 0 {
			sink.Flush()
		}
	}
	sink.Flush()
	return runErr
}

// loop is one socket's goroutine.
func (r *sockReader) loop(ctx context.Context, out chan<- *sockBatch) error {
	var local event.Counters
	for {
		var b *sockBatch
		select {
		case b = <-r.free:
		case <-ctx.Done():
			return nil
		}
		b.reset()
		r.cur, r.got, r.errno = b, 0, 0
		err := r.raw.Read(r.recvFn)
		if err == nil && r.errno != 0 {
			err = r.errno
		}
		if err != nil {
			r.free <- b
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EBADF) {
				return nil
			}
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			return fmt.Errorf("socket capture: recvmmsg on %s: %w", r.conn.LocalAddr(), err)
		}
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		now := uint64(ts.Nano())
		local = event.Counters{}
		var ovfl uint32
		for i := range r.got {
			m := &b.msgs[i]
			src := sockaddrAddr(&b.names[i])
			data := b.buf[i*slotSize : i*slotSize+int(m.Len)]
			h := &b.hdrs[b.n]
			p, o := r.dec.VXLAN(src, data, h)
			decap.Count(&local, o, h, len(data))
			if o == event.Emit {
				h.TimeNs = now
				b.payloads[b.n] = p
				b.n++
			}
			if v, ok := rxqOvfl(b.ctrl[i*ctrlSize : i*ctrlSize+int(m.Hdr.Controllen)]); ok {
				ovfl = max(ovfl, v)
			}
		}
		r.mu.Lock()
		r.counters.Add(&local)
		r.ovfl = max(r.ovfl, ovfl)
		r.mu.Unlock()
		if b.n > 0 {
			out <- b // never blocks: out holds every sockBatch there is
		} else {
			r.free <- b
		}
	}
}

// recv is the RawConn.Read callback: one non-blocking recvmmsg.
func (r *sockReader) recv(fd uintptr) bool {
	b := r.cur
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])),
		uintptr(len(b.msgs)), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN {
		return false // wait in the poller
	}
	r.got, r.errno = int(n), errno
	if errno != 0 {
		r.got = 0
	}
	return true
}

func sockaddrAddr(sa *unix.RawSockaddrInet6) netip.Addr {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(sa4.Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// rxqOvfl finds the SO_RXQ_OVFL control message (the socket's cumulative
// drop count) in a control buffer, without allocating.
func rxqOvfl(b []byte) (uint32, bool) {
	hdr := unix.CmsgLen(0)
	for len(b) >= hdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(c.Len)
		if l < hdr || l > len(b) {
			return 0, false
		}
		if c.Level == unix.SOL_SOCKET && c.Type == unix.SO_RXQ_OVFL && l >= hdr+4 {
			return *(*uint32)(unsafe.Pointer(&b[hdr])), true
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(b) {
			return 0, false
		}
		b = b[next:]
	}
	return 0, false
}

// UnservedPorts reports the ports of segments dropped as drop_port.
func (s *Socket) UnservedPorts() ([]event.PortCount, error) { return s.dec.UnservedPorts() }
