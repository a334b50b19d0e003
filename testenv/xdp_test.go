package testenv

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// TestXDPOnRecvIface checks what the XDP capture relies on: a native,
// multi-buffer (xdp.frags) program attached to RecvIface inside RecvNS sees
// every mirror packet, jumbo ones whole.
func TestXDPOnRecvIface(t *testing.T) {
	l := NewLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Per-CPU {packets, largest frame} counted by a program that passes everything.
	stats, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		t.Fatalf("creating the counter map: %v", err)
	}
	defer stats.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Flags:   unix.BPF_F_XDP_HAS_FRAGS,
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.FnXdpGetBuffLen.Call(),
			asm.Mov.Reg(asm.R7, asm.R0),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, stats.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
			asm.JGE.Reg(asm.R1, asm.R7, "out"),
			asm.StoreMem(asm.R0, 8, asm.R7, asm.DWord),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("out"), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("loading the XDP program: %v", err)
	}
	defer prog.Close()

	var lk link.Link
	err = l.Do(l.RecvNS, func() error {
		ifc, err := net.InterfaceByName(l.RecvIface)
		if err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attaching XDP natively to %s in %s: %v", l.RecvIface, l.RecvNS, err)
	}
	defer lk.Close()

	srv, err := StartHTTPServer(ctx, l, l.ProdNS, ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	before, err := l.LinkStats(ctx, l.ProdNS, ProdMirrorIface)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.KeepAlive(ctx, l.ClientNS, HostPort(l.ProdAddr4, 8080), Request{Target: "/size/100000"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	after, err := l.LinkStats(ctx, l.ProdNS, ProdMirrorIface)
	if err != nil {
		t.Fatal(err)
	}
	sent := after.TxPackets - before.TxPackets

	var per []struct{ Packets, Largest uint64 }
	if err := stats.Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	var packets, largest uint64
	for _, v := range per {
		packets += v.Packets
		largest = max(largest, v.Largest)
	}
	if packets < sent {
		t.Errorf("XDP saw %d packets, prod's %s sent %d", packets, ProdMirrorIface, sent)
	}
	if largest < 9000 {
		t.Errorf("largest frame XDP saw: %d bytes, want a whole jumbo mirror packet (> 9000)", largest)
	}
	t.Logf("XDP saw %d packets (mirror link sent %d), largest %d bytes", packets, sent, largest)
}
