package replay

import (
	"errors"
	"net"
	"syscall"
)

// sockPeek tells whether a connection's socket has bytes to read or has
// been closed by the peer, without reading or blocking (recv with
// MSG_PEEK|MSG_DONTWAIT). It is set up once per connection so that the
// check before each reuse allocates nothing.
type sockPeek struct {
	rc   syscall.RawConn // nil: no socket to look into
	seen bool
	b    [1]byte
	fn   func(fd uintptr) bool // p.do, bound once
}

// reset points p at nc's socket (nc is the TCP connection, under any TLS).
func (p *sockPeek) reset(nc net.Conn) {
	p.rc = nil
	if p.fn == nil {
		p.fn = p.do
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
		}
	}
}

func (p *sockPeek) do(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case n > 0:
		p.seen = true // data
	case err == nil:
		p.seen = true // n == 0: the peer closed
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
	default:
		p.seen = true // a pending error (reset): reading reports it
	}
	return true
}

// readable reports whether the socket has bytes or an end to read now.
func (p *sockPeek) readable() bool {
	if p.rc == nil {
		return false
	}
	p.seen = false
	return p.rc.Read(p.fn) == nil && p.seen
}
