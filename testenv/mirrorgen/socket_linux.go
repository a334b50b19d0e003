package mirrorgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsg holds reusable sendmmsg vectors.
type mmsg struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte // keeps the payloads referenced while the call runs
}

func (m *mmsg) reset() {
	m.hdrs, m.iovs, m.bufs = m.hdrs[:0], m.iovs[:0], m.bufs[:0]
}

func (m *mmsg) add(b []byte) {
	m.bufs = append(m.bufs, b)
	m.iovs = append(m.iovs, unix.Iovec{})
	m.hdrs = append(m.hdrs, unix.Mmsghdr{})
}

// send sends the collected messages on fd with sendmmsg. A message the kernel
// refuses with ENOBUFS or EAGAIN (a full queue) is counted in dropped and
// skipped; other errors are returned.
func (m *mmsg) send(fd int, dropped *atomic.Uint64) error {
	// Fill pointers only now: appends above may have moved the slices.
	for i, b := range m.bufs {
		m.iovs[i].Base = unsafe.SliceData(b)
		m.iovs[i].SetLen(len(b))
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	hdrs := m.hdrs
	for len(hdrs) > 0 {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
		switch {
		case errno == 0:
			hdrs = hdrs[int(r):]
		case errno == unix.EINTR:
		case errno == unix.ENOBUFS || errno == unix.EAGAIN || errno == unix.ECONNREFUSED:
			dropped.Add(1)
			hdrs = hdrs[1:]
		default:
			runtime.KeepAlive(m)
			return fmt.Errorf("sendmmsg: %w", errno)
		}
	}
	runtime.KeepAlive(m)
	return nil
}

// PacketWriter writes whole outer frames to an interface through an
// AF_PACKET raw socket, bypassing the qdisc, with batched sendmmsg. On a
// veth, the frames arrive at the peer, where the XDP program runs. It needs
// CAP_NET_RAW.
type PacketWriter struct {
	iface   string
	fd      int
	m       mmsg
	dropped atomic.Uint64
}

// NewPacketWriter opens a raw socket on the named interface.
func NewPacketWriter(iface string) (*PacketWriter, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("mirrorgen: interface %q: %w", iface, err)
	}
	// Protocol 0: this socket only sends, it receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mirrorgen: AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mirrorgen: bind AF_PACKET to %s: %w", iface, err)
	}
	// Best effort: older kernels lack qdisc bypass; SO_SNDBUFFORCE needs CAP_NET_ADMIN.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	}
	return &PacketWriter{iface: iface, fd: fd}, nil
}

// WriteFrames implements Writer.
func (w *PacketWriter) WriteFrames(frames [][]byte) error {
	w.m.reset()
	for _, f := range frames {
		w.m.add(f)
	}
	if err := w.m.send(w.fd, &w.dropped); err != nil {
		if errors.Is(err, unix.EMSGSIZE) {
			return fmt.Errorf("AF_PACKET on %s: %w: a frame is longer than the interface MTU allows; "+
				"raise it (a mirror target needs the source MTU + 50 bytes) or lower MSS / PacketLength", w.iface, err)
		}
		return fmt.Errorf("AF_PACKET on %s: %w", w.iface, err)
	}
	return nil
}

// Dropped returns the frames the kernel refused (queue full).
func (w *PacketWriter) Dropped() uint64 { return w.dropped.Load() }

// Close closes the socket.
func (w *PacketWriter) Close() error { return unix.Close(w.fd) }

// UDPWriter sends the VXLAN part of each frame (VXLAN header and inner
// frame) as a UDP datagram to a receiver; the kernel adds the outer
// Ethernet, IPv4 and UDP headers, so the outer source address is the
// host's. To vary the outer source port per flow as AWS does, it keeps a
// pool of sockets, each bound to its own ephemeral port, and picks one by
// the frame's flow hash: a flow always leaves from the same port.
type UDPWriter struct {
	fds     []int
	ms      []mmsg
	dropped atomic.Uint64
}

// NewUDPWriter opens sockets sockets (default 16) connected to dst.
func NewUDPWriter(dst netip.AddrPort, sockets int) (*UDPWriter, error) {
	if sockets <= 0 {
		sockets = 16
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	if dst.Addr().Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	} else if !dst.Addr().Is4() {
		return nil, fmt.Errorf("mirrorgen: bad UDP destination %v", dst)
	}
	w := &UDPWriter{ms: make([]mmsg, sockets)}
	for range sockets {
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("mirrorgen: UDP socket: %w", err)
		}
		w.fds = append(w.fds, fd)
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		}
		if err := unix.Connect(fd, sa); err != nil {
			w.Close()
			return nil, fmt.Errorf("mirrorgen: connect UDP to %v: %w", dst, err)
		}
	}
	return w, nil
}

// WriteFrames implements Writer. Frames shorter than the outer headers are
// skipped.
func (w *UDPWriter) WriteFrames(frames [][]byte) error {
	for i := range w.ms {
		w.ms[i].reset()
	}
	for _, f := range frames {
		if len(f) < OuterHeaderLen {
			continue
		}
		port := int(f[OuterHeaderLen-8])<<8 | int(f[OuterHeaderLen-7])
		w.ms[port%len(w.ms)].add(f[OuterHeaderLen:])
	}
	var errs []error
	for i := range w.ms {
		if len(w.ms[i].bufs) == 0 {
			continue
		}
		if err := w.ms[i].send(w.fds[i], &w.dropped); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("UDP: %w", errors.Join(errs...))
	}
	return nil
}

// Dropped returns the datagrams the kernel refused (buffer full).
func (w *UDPWriter) Dropped() uint64 { return w.dropped.Load() }

// Close closes the sockets.
func (w *UDPWriter) Close() error {
	var errs []error
	for _, fd := range w.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	w.fds = nil
	return errors.Join(errs...)
}
