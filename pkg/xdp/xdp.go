// Package xdp loads and attaches shadowtap's XDP program (bpf/) and reads the
// events it writes: it is the capture stage of the data path, between the NIC
// and the reassembly shards. Attach puts the program on an interface, fills
// its configuration maps and pins the counters under
// /sys/fs/bpf/shadowtap/<iface>/; Probe.Run reads the ring buffer without a
// heap allocation per event and hands each segment to an event.Batcher.
//
// The link is not pinned: when the process ends, however it ends, the kernel
// detaches the program and the host's traffic is untouched.
package xdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/shadowtap/shadowtap/bpf"
	"github.com/shadowtap/shadowtap/pkg/event"
)

// Defaults for the zero values of Config.
const (
	DefaultVXLANPort = 4789
	DefaultPinRoot   = "/sys/fs/bpf/shadowtap"
	DefaultRingSize  = 16 << 20
	DefaultMode      = ModeAuto
)

// Attach modes (Config.Mode), as the --xdp-mode flag spells them.
const (
	// ModeAuto attaches in native (driver) mode and falls back to generic
	// mode, saying so in the log, when the driver refuses.
	ModeAuto = "auto"
	// ModeNative attaches in native (driver) mode only.
	ModeNative = "native"
	// ModeGeneric attaches in generic (SKB) mode: slower, works on any device.
	ModeGeneric = "generic"
)

// PollInterval bounds event latency at low rates: the reader wakes at least
// this often even when the program asked for no wakeup.
const PollInterval = 5 * time.Millisecond

// maxWakeupBytes is how much pending data makes the program wake the reader;
// below it, the poll timer does.
const maxWakeupBytes = 64 << 10

// Limits of the allowlist maps (max_entries in bpf/shadowtap.c).
const (
	maxVNIs    = 1024
	maxSources = 1024
	maxVNI     = 1<<24 - 1
)

// Config says where to attach and what the program accepts.
type Config struct {
	// Iface is the interface the mirror traffic arrives on.
	Iface string
	// Ports are the mirrored service's TCP ports: a segment to one is a
	// request, from one a response. At least one.
	Ports []uint16
	// VNIs is the VNI allowlist; empty accepts any VNI.
	VNIs []uint32
	// Sources is the outer-source allowlist (IPv4 and IPv6 prefixes); empty
	// accepts any source.
	Sources []netip.Prefix
	// VXLANPort is the outer UDP destination port (0 = 4789).
	VXLANPort uint16
	// Mode is auto, native or generic ("" = auto).
	Mode string
	// Force replaces an XDP program already attached to Iface.
	Force bool
	// PinRoot is where maps are pinned, under a directory per interface
	// ("" = /sys/fs/bpf/shadowtap).
	PinRoot string
	// RingSize is the ring buffer size in bytes, a power of two of at least
	// one page (0 = 16 MiB).
	RingSize int
}

// withDefaults returns c with zero values replaced by defaults, or an error
// saying which setting is wrong.
func (c Config) withDefaults() (Config, error) {
	if c.VXLANPort == 0 {
		c.VXLANPort = DefaultVXLANPort
	}
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.PinRoot == "" {
		c.PinRoot = DefaultPinRoot
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	switch c.Mode {
	case ModeAuto, ModeNative, ModeGeneric:
	default:
		return c, fmt.Errorf("xdp mode %q: use auto, native or generic", c.Mode)
	}
	if len(c.Ports) == 0 {
		return c, fmt.Errorf("no service ports: give the mirrored service's TCP ports (--ports 8080)")
	}
	for _, p := range c.Ports {
		if p == 0 {
			return c, fmt.Errorf("service port 0 is not a port: give the mirrored service's TCP ports (--ports 8080)")
		}
	}
	if len(c.VNIs) > maxVNIs {
		return c, fmt.Errorf("%d VNIs allowed: at most %d", len(c.VNIs), maxVNIs)
	}
	for _, v := range c.VNIs {
		if v > maxVNI {
			return c, fmt.Errorf("VNI %d is not a 24-bit VXLAN network identifier (0–%d)", v, maxVNI)
		}
	}
	if len(c.Sources) > maxSources {
		return c, fmt.Errorf("%d source prefixes allowed: at most %d", len(c.Sources), maxSources)
	}
	for _, p := range c.Sources {
		if !p.IsValid() {
			return c, fmt.Errorf("source prefix %v is not valid: use CIDR notation (10.0.0.0/8, fd00::/8)", p)
		}
	}
	if c.RingSize < pageSize || c.RingSize&(c.RingSize-1) != 0 {
		return c, fmt.Errorf("ring size %d: must be a power of two of at least %d bytes", c.RingSize, pageSize)
	}
	return c, nil
}

// pageSize is the smallest ring buffer the kernel accepts.
const pageSize = 4096

// wakeupBytes is the pending-data threshold at which the program wakes the
// reader: 64 KiB, or a quarter of a smaller ring.
func wakeupBytes(ringSize int) uint32 {
	w := ringSize / 4
	if w > maxWakeupBytes {
		w = maxWakeupBytes
	}
	return uint32(w)
}

// programConfig returns the program's read-only configuration (struct config
// in bpf/shadowtap.h) for c. Short allowlists are also copied inline: the
// program compares them without a map lookup.
func programConfig(c Config) bpf.ShadowtapConfig {
	pc := bpf.ShadowtapConfig{
		VxlanPort:   c.VXLANPort,
		VniCount:    uint32(len(c.VNIs)),
		SourceCount: uint32(len(c.Sources)),
		WakeupBytes: wakeupBytes(c.RingSize),
	}
	if len(c.VNIs) <= len(pc.Vnis) {
		copy(pc.Vnis[:], c.VNIs)
	}
	if len(c.Sources) <= len(pc.Src4) {
		for _, p := range c.Sources {
			if p.Addr().Is4() {
				pc.Src4[pc.Src4Count] = prefix4(p)
				pc.Src4Count++
			} else {
				pc.Src6[pc.Src6Count] = prefix6(p)
				pc.Src6Count++
			}
		}
	}
	return pc
}

// prefixWords returns p's masked address and its mask as 32-bit words that
// hold the bytes in network order (struct prefix4 and prefix6 compare them
// with the words of the IP header as loaded).
func prefixWords(p netip.Prefix) (net, mask [4]uint32) {
	p = p.Masked()
	a := p.Addr().As16()
	if p.Addr().Is4() {
		a4 := p.Addr().As4()
		a = [16]byte{}
		copy(a[:], a4[:])
	}
	var m [16]byte
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	for i := range net {
		net[i] = binary.NativeEndian.Uint32(a[4*i:])
		mask[i] = binary.NativeEndian.Uint32(m[4*i:])
	}
	return net, mask
}

func prefix4(p netip.Prefix) bpf.ShadowtapPrefix4 {
	net, mask := prefixWords(p)
	return bpf.ShadowtapPrefix4{Net: net[0], Mask: mask[0]}
}

func prefix6(p netip.Prefix) bpf.ShadowtapPrefix6 {
	net, mask := prefixWords(p)
	return bpf.ShadowtapPrefix6{Net: net, Mask: mask}
}

// sourceKey returns the LPM trie key for p (struct source_key in
// bpf/shadowtap.h): the family byte is part of every prefix, so IPv4 and IPv6
// prefixes never match the other family.
func sourceKey(p netip.Prefix) bpf.ShadowtapSourceKey {
	p = p.Masked()
	k := bpf.ShadowtapSourceKey{Prefixlen: uint32(8 + p.Bits())}
	if p.Addr().Is4() {
		k.Family = event.FamilyIPv4
		a := p.Addr().As4()
		copy(k.Addr[:], a[:])
	} else {
		k.Family = event.FamilyIPv6
		k.Addr = p.Addr().As16()
	}
	return k
}
