package replay

import (
	"errors"
	"net"
	"syscall"
)

// socketReadable reports whether nc's socket has bytes to read or has been
// closed by the peer, without reading or blocking (recv MSG_PEEK|
// MSG_DONTWAIT). It reports false for a connection without a socket.
func socketReadable(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	readable := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			readable = true // data
		case rerr == nil:
			readable = true // n == 0: the peer closed
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EINTR):
		default:
			readable = true // a pending error (reset): reading reports it
		}
		return true
	})
	return err == nil && readable
}
