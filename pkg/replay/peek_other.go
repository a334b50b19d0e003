//go:build !linux

package replay

import "net"

// sockPeek cannot look into the socket on this system: only bytes already
// buffered are detected before a connection's reuse.
type sockPeek struct{}

func (*sockPeek) reset(net.Conn) {}
func (*sockPeek) readable() bool { return false }
