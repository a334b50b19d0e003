package xdp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/pkg/event"
	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/frames"
)

// vethPair creates a veth pair with names unique to this test process and
// removes it when the test ends. Frames sent on peer arrive on dev.
func vethPair(t *testing.T, tag string) (dev, peer netlink.Link) {
	t.Helper()
	name := fmt.Sprintf("stx%s%d", tag, os.Getpid()%100000)
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
		t.Fatalf("create veth %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	for _, n := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	dev, _ = netlink.LinkByName(name)
	peer, _ = netlink.LinkByName(name + "p")
	return dev, peer
}

// xdpProgID is the id of the XDP program on the interface, 0 for none.
func xdpProgID(t *testing.T, name string) uint32 {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

// pinRoot is a bpffs directory for this test, removed at the end.
func pinRoot(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("shadowtap-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_")))
	if err := ensureBPFFS(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// sendFrame writes a raw Ethernet frame out of l (it arrives on l's peer).
func sendFrame(t *testing.T, l netlink.Link, frame []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	defer unix.Close(fd)
	addr := &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6}
	if err := unix.Sendto(fd, frame, 0, addr); err != nil {
		t.Fatalf("send on %s: %v", l.Attrs().Name, err)
	}
}

// TestAttach attaches to a veth, sends a mirror frame through it, and checks
// what a user relies on: the event arrives, the pinned counters are readable
// from outside, a second attach is refused, and Close leaves no program and
// no pins behind.
func TestAttach(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []string{ModeNative, ModeGeneric} {
		t.Run(mode, func(t *testing.T) {
			dev, peer := vethPair(t, mode[:1])
			root := pinRoot(t)
			cfg := tableConfig()
			cfg.Iface, cfg.Mode, cfg.PinRoot = dev.Attrs().Name, mode, root
			p, err := Attach(cfg, nil)
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			closed := false
			defer func() {
				if !closed {
					p.Close()
				}
			}()
			if xdpProgID(t, cfg.Iface) == 0 {
				t.Fatal("no XDP program on the interface after Attach")
			}
			if _, err := os.Stat(filepath.Join(root, cfg.Iface, "stats")); err != nil {
				t.Errorf("stats not pinned: %v", err)
			}

			// A second shadowtap on the same interface is refused.
			if p2, err := Attach(cfg, nil); err == nil {
				p2.Close()
				t.Error("second Attach succeeded, want a refusal")
			} else if !strings.Contains(err.Error(), "--force") {
				t.Errorf("second Attach: %v; want an error mentioning --force", err)
			}

			// A mirror frame sent on the peer comes out of Run.
			f, _ := frames.VXLAN(outer(), inner([]byte("GET / HTTP/1.1\r\n\r\n")))
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan record, 1)
			sink := &batchSink{}
			sink.onSeg = func(n int) {
				if n == 1 {
					got <- sink.segs[0]
					cancel()
				}
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx, sink) }()
			sendFrame(t, peer, f)
			select {
			case r := <-got:
				if r.hdr.DstPort != frames.ServerPort || string(r.payload) != "GET / HTTP/1.1\r\n\r\n" {
					t.Errorf("event %+v payload %q", r.hdr, r.payload)
				}
			case <-time.After(10 * time.Second):
				cancel()
				t.Fatal("no event for a mirror frame sent through the veth")
			}
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}

			// Another process reads the same counters through the pins.
			c, err := ReadPinnedStats(root, cfg.Iface)
			if err != nil {
				t.Fatalf("ReadPinnedStats: %v", err)
			}
			if c.Outcomes[event.Emit] != 1 {
				t.Errorf("pinned emit = %d, want 1", c.Outcomes[event.Emit])
			}
			own, err := p.Counters()
			if err != nil || own != c {
				t.Errorf("Counters() = %+v, %v; pinned %+v", own, err, c)
			}

			closed = true
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if id := xdpProgID(t, cfg.Iface); id != 0 {
				t.Errorf("XDP program %d still attached after Close", id)
			}
			if _, err := os.Stat(filepath.Join(root, cfg.Iface)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pin directory left after Close: %v", err)
			}
			if _, err := ReadPinnedStats(root, cfg.Iface); err == nil || !strings.Contains(err.Error(), "shadowtap run") {
				t.Errorf("ReadPinnedStats after Close: %v; want an error saying to start shadowtap run", err)
			}
		})
	}
}

// TestAttachForce checks that a foreign XDP program is refused, and replaced
// with Force.
func TestAttachForce(t *testing.T) {
	testenv.RequireRoot(t)
	dev, _ := vethPair(t, "f")
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, int32(frames.Pass)), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if err := netlink.LinkSetXdpFdWithFlags(dev, prog.FD(), unix.XDP_FLAGS_SKB_MODE); err != nil {
		t.Fatalf("attach a foreign XDP program: %v", err)
	}
	foreign := xdpProgID(t, dev.Attrs().Name)

	cfg := tableConfig()
	cfg.Iface, cfg.PinRoot = dev.Attrs().Name, pinRoot(t)
	if p, err := Attach(cfg, nil); err == nil {
		p.Close()
		t.Fatal("Attach replaced a foreign XDP program without Force")
	} else if !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "xdp off") {
		t.Errorf("error %q: want it to say how to detach or to use --force", err)
	}
	if xdpProgID(t, cfg.Iface) != foreign {
		t.Fatal("the refused Attach changed the interface's program")
	}

	cfg.Force = true
	p, err := Attach(cfg, nil)
	if err != nil {
		t.Fatalf("Attach with Force: %v", err)
	}
	defer p.Close()
	if id := xdpProgID(t, cfg.Iface); id == 0 || id == foreign {
		t.Errorf("program id %d after a forced Attach, foreign was %d", id, foreign)
	}
}

func TestAttachNoSuchInterface(t *testing.T) {
	testenv.RequireRoot(t)
	cfg := tableConfig()
	cfg.Iface = "stx-missing0"
	_, err := Attach(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "ip link") {
		t.Errorf("error %v: want one saying there is no such interface and how to list them", err)
	}
}

// helperEnv makes the test binary act as a shadowtap process that attaches
// and waits to be killed (TestKillDetaches).
const helperEnv = "SHADOWTAP_XDP_HELPER_IFACE"

func TestMain(m *testing.M) {
	if iface := os.Getenv(helperEnv); iface != "" {
		cfg := tableConfig()
		cfg.Iface, cfg.Mode, cfg.PinRoot = iface, ModeNative, os.Getenv(helperEnv+"_PINS")
		if _, err := Attach(cfg, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("attached")
		select {} // until killed
	}
	os.Exit(m.Run())
}

// TestKillDetaches checks that the link is not pinned: when the process
// holding the program is killed with SIGKILL, no XDP program is left.
func TestKillDetaches(t *testing.T) {
	testenv.RequireRoot(t)
	dev, _ := vethPair(t, "k")
	name := dev.Attrs().Name
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+name, helperEnv+"_PINS="+pinRoot(t))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for xdpProgID(t, name) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the helper process never attached (its errors are above)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for xdpProgID(t, name) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("an XDP program is still attached after the process holding it was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
