package mirrorgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/testenv"
)

func genFrames(t *testing.T, cfg Config) [][]byte {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out collect
	if _, err := g.Run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	return out.frames
}

func TestUDPWriterLoopback(t *testing.T) {
	cfg := Config{Conns: 8, RequestsPerConn: 3, Mix: Mix{Small: 3, Large: 1}, LargeKiB: 8, Seed: 5}
	frames := genFrames(t, cfg)

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.(*net.UDPConn).SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	w, err := NewUDPWriter(netip.MustParseAddrPort(pc.LocalAddr().String()), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Send in small batches so the receive buffer never overflows.
	for i := 0; i < len(frames); i += 16 {
		if err := w.WriteFrames(frames[i:min(i+16, len(frames))]); err != nil {
			t.Fatal(err)
		}
	}
	flowPorts := map[uint16]int{} // outer flow hash port → sending socket port
	buf := make([]byte, 65536)
	for i := range frames {
		if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(frames), err)
		}
		// Datagrams from different sockets may interleave: find by content.
		port := from.(*net.UDPAddr).Port
		var match []byte
		for _, g := range frames {
			if bytes.Equal(g[OuterHeaderLen:], buf[:n]) {
				match = g
				break
			}
		}
		if match == nil {
			t.Fatalf("datagram %d (%d bytes) is no generated frame", i, n)
		}
		hash := binary.BigEndian.Uint16(match[34:36])
		if p, ok := flowPorts[hash]; ok && p != port {
			t.Fatalf("flow %d left from ports %d and %d", hash, p, port)
		}
		flowPorts[hash] = port
	}
	ports := map[int]bool{}
	for _, p := range flowPorts {
		ports[p] = true
	}
	if len(ports) < 2 {
		t.Errorf("%d flows all left from %d source port(s)", len(flowPorts), len(ports))
	}
}

// TestPacketWriterVeth sends whole frames into one end of a veth pair in a
// private network namespace and reads them at the other end.
func TestPacketWriterVeth(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.UniqueName("mg")
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	for _, args := range [][]string{
		{"link", "add", "mga", "type", "veth", "peer", "name", "mgb"},
		{"link", "set", "mga", "mtu", "9100", "up"}, // jumbo frames
		{"link", "set", "mgb", "mtu", "9100"},
		{"link", "set", "mgb", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	frames := genFrames(t, Config{Conns: 4, RequestsPerConn: 3, Mix: Mix{Small: 1, Large: 1}, LargeKiB: 16, MSS: JumboMSS, Seed: 9})

	var w *PacketWriter
	var rx int
	err := testenv.DoInNamespace(ns, func() error {
		var err error
		if w, err = NewPacketWriter("mga"); err != nil {
			return err
		}
		rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("mgb")
		if err != nil {
			return err
		}
		return unix.Bind(rx, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer unix.Close(rx)
	_ = unix.SetsockoptInt(rx, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrames(frames); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16384)
	for i := 0; i < len(frames); {
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			t.Fatalf("frame %d of %d: %v (writer dropped %d)", i, len(frames), err, w.Dropped())
		}
		// Skip the kernel's own traffic (IPv6 router solicitations and such).
		if n < innerStart || binary.BigEndian.Uint16(buf[12:]) != 0x0800 || binary.BigEndian.Uint16(buf[36:]) != DefaultVXLANPort {
			continue
		}
		if !bytes.Equal(buf[:n], frames[i]) {
			t.Fatalf("frame %d arrived changed (%d bytes, sent %d)", i, n, len(frames[i]))
		}
		i++
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
