package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a goroutine-locked OS thread that has joined the network
// namespace ns (a name under /run/netns, e.g. l.ProdNS), and puts the thread
// back in its namespace afterwards.
//
// Only the network namespace changes: the mount namespace stays the
// process's, so /sys/fs/bpf pins made inside fn are visible everywhere. Note
// that /sys/class/net still shows the process's own namespace.
//
// Sockets created inside fn belong to ns for their whole life, so a test can
// Listen in prod and shadow, Dial from client, and then use the sockets from
// any goroutine. Goroutines started inside fn do not run in ns.
func (l *Lab) Do(ns string, fn func() error) error {
	return DoInNamespace(ns, fn)
}

// DoInNamespace is Lab.Do for any named network namespace.
func DoInNamespace(ns string, fn func() error) (err error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", ns, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", ns, err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			// Leave the thread locked: the runtime ends a thread that is
			// still locked when its goroutine exits, so no other goroutine
			// runs in the wrong namespace.
			err = errors.Join(err, fmt.Errorf("leaving network namespace %s: %w", ns, rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Command returns a command that runs name with args in namespace ns through
// `ip netns exec`. The command gets a fresh mount namespace with that
// namespace's /sys: BPF pins and mounts it makes are not visible outside.
// Programs that must leave pins visible to the rest of the system (for
// example `shadowtap run`, whose stats are read by `shadowtap stats`) should
// instead be started with NsenterCommand, which only enters the network
// namespace.
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// NsenterCommand returns a command that runs name with args in network
// namespace ns only (nsenter --net), keeping the caller's mount namespace, so
// bpffs pins under /sys/fs/bpf are shared with the caller. /sys/class/net
// inside the command still shows the caller's namespace; use netlink or
// ioctl (as ip and the Go net package do) for interface lookups.
func (l *Lab) NsenterCommand(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netnsDir + "/" + ns, "--", name}, args...)...)
}

// Listen is net.Listen inside namespace ns.
func (l *Lab) Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s in %s: %w", network, addr, ns, err)
	}
	return ln, nil
}

// ListenPacket is net.ListenPacket inside namespace ns (e.g. a UDP socket on
// the VXLAN port in RecvNS).
func (l *Lab) ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.Do(ns, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s in %s: %w", network, addr, ns, err)
	}
	return pc, nil
}

// DialContext dials from namespace ns. Its signature fits
// http.Transport.DialContext, so an http.Client can run in a namespace; see
// HTTPClient.
func (l *Lab) DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := l.Do(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dialing %s %s from %s: %w", network, addr, ns, err)
		}
		return c, nil
	}
}
