package testenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mirrored is one VXLAN datagram that arrived in recv, decoded down to TCP.
type mirrored struct {
	outerSrc netip.Addr
	vni      uint32
	frameLen int // inner Ethernet frame length
	src, dst netip.AddrPort
	seq      uint32
	flags    uint8
	payload  []byte
	csumOK   bool
}

// decodeVXLAN decodes a VXLAN datagram's payload down to the inner TCP
// segment. ok is false for inner frames that are not IPv4/IPv6 TCP.
func decodeVXLAN(b []byte) (m mirrored, ok bool, err error) {
	if len(b) < 8 || b[0]&0x08 == 0 {
		return m, false, fmt.Errorf("not a VXLAN header with the I flag: % x", b[:min(8, len(b))])
	}
	m.vni = binary.BigEndian.Uint32(b[4:8]) >> 8
	f := b[8:]
	m.frameLen = len(f)
	if len(f) < 14 {
		return m, false, fmt.Errorf("inner frame of %d bytes", len(f))
	}
	var l4 []byte
	var pseudo []byte
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[9] != 6 {
			return m, false, nil
		}
		ihl, total := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:4]))
		if total > len(ip) || ihl > total {
			return m, false, fmt.Errorf("inner IPv4 length %d, %d bytes arrived", total, len(ip))
		}
		src, _ := netip.AddrFromSlice(ip[12:16])
		dst, _ := netip.AddrFromSlice(ip[16:20])
		l4 = ip[ihl:total]
		m.src, m.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		pseudo = append(append([]byte{}, ip[12:20]...), 0, 6, byte(len(l4)>>8), byte(len(l4)))
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[6] != 6 {
			return m, false, nil
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return m, false, fmt.Errorf("inner IPv6 payload length %d, %d bytes arrived", plen, len(ip)-40)
		}
		src, _ := netip.AddrFromSlice(ip[8:24])
		dst, _ := netip.AddrFromSlice(ip[24:40])
		l4 = ip[40 : 40+plen]
		m.src, m.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, 6)
	default:
		return m, false, nil
	}
	if len(l4) < 20 || int(l4[12]>>4)*4 > len(l4) {
		return m, false, fmt.Errorf("inner TCP header cut: %d bytes", len(l4))
	}
	m.src = netip.AddrPortFrom(m.src.Addr(), binary.BigEndian.Uint16(l4[0:2]))
	m.dst = netip.AddrPortFrom(m.dst.Addr(), binary.BigEndian.Uint16(l4[2:4]))
	m.seq = binary.BigEndian.Uint32(l4[4:8])
	m.flags = l4[13]
	m.payload = l4[int(l4[12]>>4)*4:]
	m.csumOK = checksum(pseudo, l4) == 0
	return m, true, nil
}

// checksum is the Internet checksum over a then b (a has even length).
func checksum(a, b []byte) uint16 {
	var sum uint32
	for _, p := range [][]byte{a, b} {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(p[i:]))
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// stream puts one direction of a connection back together from its mirrored
// segments, by sequence number relative to the SYN.
func stream(segs []mirrored, src, dst netip.AddrPort) (data []byte, maxFrame int, err error) {
	var isn uint32
	var haveSYN bool
	for _, s := range segs {
		if s.src == src && s.dst == dst && s.flags&0x02 != 0 {
			isn, haveSYN = s.seq, true
		}
	}
	if !haveSYN {
		return nil, 0, fmt.Errorf("no SYN from %v to %v among %d segments", src, dst, len(segs))
	}
	for _, s := range segs {
		if s.src != src || s.dst != dst || len(s.payload) == 0 {
			continue
		}
		maxFrame = max(maxFrame, s.frameLen)
		off := int(s.seq - isn - 1)
		if end := off + len(s.payload); end > len(data) {
			data = append(data, make([]byte, end-len(data))...)
		}
		copy(data[off:], s.payload)
	}
	return data, maxFrame, nil
}

func TestMirrorDeliversBothDirections(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
	}{
		{"outer IPv4", Options{VNI: 4242}},
		{"outer IPv6", Options{OuterIPv6: true, VNI: 0x123456}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLab(t, tt.opt)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			pc, err := l.ListenPacket(l.RecvNS, "udp", fmt.Sprintf(":%d", l.VXLANPort))
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			setRcvBuf(t, pc, 32<<20)

			var mu sync.Mutex
			var segs []mirrored
			var bad []string
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				buf := make([]byte, 65536)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					m, ok, err := decodeVXLAN(buf[:n])
					mu.Lock()
					if err != nil {
						bad = append(bad, err.Error())
					}
					if ok {
						m.outerSrc = from.(*net.UDPAddr).AddrPort().Addr().Unmap()
						m.payload = bytes.Clone(m.payload)
						segs = append(segs, m)
					}
					mu.Unlock()
				}
			}()

			srv, err := StartHTTPServer(ctx, l, l.ProdNS, ":8080")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()

			convs := []*Conversation{}
			for _, c := range []struct {
				addr string
				reqs []Request
			}{
				// Client and server each send jumbo segments.
				{HostPort(l.ProdAddr4, 8080), []Request{
					{Method: "POST", Target: "/echo", Body: Pattern(20000)},
					{Target: "/size/200000"},
					{Target: "/chunked/9000", Close: true},
				}},
				{HostPort(l.ProdAddr6, 8080), []Request{{Target: "/size/30000"}, {Method: "HEAD", Target: "/"}}},
			} {
				conv, err := l.KeepAlive(ctx, l.ClientNS, c.addr, c.reqs...)
				if err != nil {
					t.Fatal(err)
				}
				convs = append(convs, conv)
			}

			// Wait until every conversation has come through the mirror whole.
			check := func() error {
				mu.Lock()
				defer mu.Unlock()
				for _, conv := range convs {
					for _, dir := range []struct {
						name     string
						src, dst netip.AddrPort
						want     []byte
					}{
						{"request", conv.Local, conv.Remote, conv.Sent},
						{"response", conv.Remote, conv.Local, conv.Received},
					} {
						got, maxFrame, err := stream(segs, dir.src, dir.dst)
						if err != nil {
							return err
						}
						if !bytes.Equal(got, dir.want) {
							return fmt.Errorf("%s stream %v->%v: mirrored %d bytes, the connection carried %d (or they differ)",
								dir.name, dir.src, dir.dst, len(got), len(dir.want))
						}
						if len(dir.want) > 9000 && maxFrame < 8000 {
							return fmt.Errorf("%s stream %v->%v: largest inner frame %d bytes, want a jumbo segment over 8000",
								dir.name, dir.src, dir.dst, maxFrame)
						}
					}
				}
				return nil
			}
			var lastErr error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if lastErr = check(); lastErr == nil {
					break
				}
			}
			if lastErr != nil {
				t.Fatal(lastErr)
			}
			pc.Close()
			<-readDone

			if len(bad) > 0 {
				t.Errorf("%d undecodable mirror datagrams, first: %s", len(bad), bad[0])
			}
			maxFrame, badCsum := 0, 0
			for _, s := range segs {
				if s.vni != l.VNI {
					t.Fatalf("mirrored segment with VNI %d, want %d", s.vni, l.VNI)
				}
				if s.outerSrc != l.MirrorSource() {
					t.Fatalf("mirrored segment from %v, want the mirror source %v", s.outerSrc, l.MirrorSource())
				}
				if !s.csumOK {
					badCsum++
				}
				maxFrame = max(maxFrame, s.frameLen)
			}
			if maxFrame > l.ClientMTU+14 {
				t.Errorf("inner frame of %d bytes: segments are not wire-sized (MTU %d)", maxFrame, l.ClientMTU)
			}
			if badCsum > 0 {
				t.Errorf("%d of %d mirrored segments have a bad inner TCP checksum", badCsum, len(segs))
			}
			t.Logf("%d mirrored TCP segments, largest inner frame %d bytes", len(segs), maxFrame)
		})
	}
}

// setRcvBuf enlarges a socket's receive buffer beyond rmem_max (root only),
// so a burst of jumbo mirror datagrams is not dropped before it is read.
func setRcvBuf(t *testing.T, pc net.PacketConn, n int) {
	t.Helper()
	sc, ok := pc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no raw socket", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n)
	}); err != nil || serr != nil {
		t.Fatalf("SO_RCVBUFFORCE: %v %v", err, serr)
	}
}

func TestSetMirrorAndLinkStats(t *testing.T) {
	l := NewLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := StartHTTPServer(ctx, l, l.ProdNS, ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pc, err := l.ListenPacket(l.RecvNS, "udp", ":4789")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	setRcvBuf(t, pc, 8<<20)
	// drain counts the datagrams that arrive until the mirror is quiet.
	drain := func() int {
		n := 0
		buf := make([]byte, 65536)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return n
			}
			n++
		}
	}
	get := func() {
		t.Helper()
		if _, err := l.KeepAlive(ctx, l.ClientNS, HostPort(l.ProdAddr4, 8080), Request{Target: "/size/20000"}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		enabled bool
		wantAny bool
	}{
		{"off", false, false},
		{"off again", false, false},
		{"on", true, true},
		{"on again", true, true},
	}
	for _, tt := range tests {
		if err := l.SetMirror(ctx, tt.enabled); err != nil {
			t.Fatalf("%s: SetMirror(%v): %v", tt.name, tt.enabled, err)
		}
		// Copies made before the switch (the kernel's own IPv6 neighbour
		// and multicast traffic on a new link among them) may still be in
		// flight: let them arrive before counting.
		drain()
		before, err := l.LinkStats(ctx, l.RecvNS, l.RecvIface)
		if err != nil {
			t.Fatal(err)
		}
		get()
		n := drain()
		after, err := l.LinkStats(ctx, l.RecvNS, l.RecvIface)
		if err != nil {
			t.Fatal(err)
		}
		if got := n > 0; got != tt.wantAny {
			t.Errorf("%s: %d mirror datagrams arrived", tt.name, n)
		}
		// Every datagram read came in on the receiver interface.
		if rx := after.RxPackets - before.RxPackets; rx < uint64(n) {
			t.Errorf("%s: %s counted %d packets, the socket read %d", tt.name, l.RecvIface, rx, n)
		}
	}
}
