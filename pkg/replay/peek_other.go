//go:build !linux

package replay

import "net"

// socketReadable cannot look into the socket on this system: only bytes
// already buffered are detected before a connection's reuse.
func socketReadable(net.Conn) bool { return false }
