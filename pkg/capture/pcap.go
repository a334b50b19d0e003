package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/pkg/decap"
	"github.com/shadowtap/shadowtap/pkg/event"
)

// PcapConfig configures the pcap-file source.
type PcapConfig struct {
	// File is a pcap or pcapng capture (gzip-compressed pcap too) of mirror
	// traffic, e.g. `tcpdump -i ens5 -w mirror.pcap udp port 4789`. Link
	// types Ethernet, Linux SLL (tcpdump -i any) and SLL2.
	File string
	// Speed is "max" (as fast as possible, the default when empty) or a
	// factor of the recorded pace such as "1x", "2x" or "0.5x".
	Speed string
	// Decap selects the mirror packets to accept, as for the other sources.
	Decap decap.Config
}

// PcapStats are the pcap source's own counters, beside the capture outcomes.
type PcapStats struct {
	// Frames is the records read and handed to the decoder; it equals the
	// sum of the capture outcomes.
	Frames uint64
	// Unreadable is the records that could not be read (a damaged or cut
	// file) or have an unsupported link type; they are in no outcome.
	Unreadable uint64
}

// Pcap is the `--capture pcap` source: it reads a capture file, decodes each
// frame with pkg/decap and hands the inner segments to the pipeline, at the
// recorded pace or as fast as it can. It implements event.Source.
type Pcap struct {
	cfg   PcapConfig
	speed float64 // 0: max
	dec   *decap.Decoder
	log   *slog.Logger

	mu    sync.Mutex
	ctr   event.Counters
	stats PcapStats
}

var _ event.Source = (*Pcap)(nil)

// ParseSpeed parses "max" (returns 0) or a pace factor "Nx" (N > 0).
func ParseSpeed(s string) (float64, error) {
	if s == "" || s == "max" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "x"), 64)
	if err != nil || !strings.HasSuffix(s, "x") || f <= 0 || f > 1e6 {
		return 0, fmt.Errorf("pcap speed %q: want max or a factor like 1x", s)
	}
	return f, nil
}

// NewPcap checks cfg and that the file opens as a capture; Run reads it.
func NewPcap(cfg PcapConfig, log *slog.Logger) (*Pcap, error) {
	speed, err := ParseSpeed(cfg.Speed)
	if err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, errors.New("pcap source: no file (--pcap-file)")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Pcap{cfg: cfg, speed: speed, dec: decap.New(cfg.Decap), log: log.With("source", "pcap", "file", cfg.File)}
	f, r, err := p.open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if r.kind == "pcap" {
		if lt := r.link(0); !pcapLinkSupported(lt) {
			return nil, fmt.Errorf("pcap source: %s: link type %v not supported (Ethernet, Linux SLL or SLL2)", cfg.File, lt)
		}
	}
	return p, nil
}

// Counters returns the capture outcome counters so far.
func (p *Pcap) Counters() (event.Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctr, nil
}

// Stats returns the pcap source's own counters so far.
func (p *Pcap) Stats() PcapStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// pcapPacketReader is what pcapgo's pcap and pcapng readers have in common.
type pcapPacketReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// pcapLinkTyper gives the link type of a record from its interface index.
type pcapLinkTyper func(ifIndex int) layers.LinkType

type pcapReader struct {
	pr   pcapPacketReader
	link pcapLinkTyper
	kind string
}

// open opens the file and sniffs pcap or pcapng from its magic number.
func (p *Pcap) open() (*os.File, pcapReader, error) {
	f, err := os.Open(p.cfg.File)
	if err != nil {
		return nil, pcapReader{}, fmt.Errorf("pcap source: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		return nil, pcapReader{}, fmt.Errorf("pcap source: %s: too short for a capture file: %w", p.cfg.File, err)
	}
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			f.Close()
			return nil, pcapReader{}, fmt.Errorf("pcap source: %s: bad pcapng: %w", p.cfg.File, err)
		}
		link := func(ifIndex int) layers.LinkType {
			intf, err := ng.Interface(ifIndex)
			if err != nil {
				return layers.LinkTypeNull
			}
			return intf.LinkType
		}
		return f, pcapReader{pr: ng, link: link, kind: "pcapng"}, nil
	}
	pc, err := pcapgo.NewReader(br)
	if err != nil {
		f.Close()
		return nil, pcapReader{}, fmt.Errorf("pcap source: %s: not a pcap or pcapng file: %w", p.cfg.File, err)
	}
	lt := pc.LinkType()
	return f, pcapReader{pr: pc, link: func(int) layers.LinkType { return lt }, kind: "pcap"}, nil
}

// pcapFlushEvery bounds how many frames pass between sink flushes, counter
// publications and cancellation checks.
const pcapFlushEvery = 256

// Run reads the file to its end and returns nil after flushing the sink, or
// ctx's error when cancelled. A damaged record ends the run with an error
// naming the record; a file cut mid-record (a capture that was killed) ends
// it normally with a warning.
func (p *Pcap) Run(ctx context.Context, sink event.Batcher) error {
	f, r, err := p.open()
	if err != nil {
		return err
	}
	defer f.Close()
	p.log.Info("reading capture", "format", r.kind, "speed", p.cfg.Speed)

	var (
		h       event.Header
		local   event.Counters // published every pcapFlushEvery frames
		stats   PcapStats
		first   time.Time // capture time of the first record
		wall    time.Time // wall clock when the first record was handed on
		base    = pcapMonotonicNs()
		lastNs  uint64
		pending int
	)
	publish := func() {
		p.mu.Lock()
		p.ctr, p.stats = local, stats
		p.mu.Unlock()
	}
	finish := func(err error) error {
		sink.Flush()
		publish()
		p.log.Info("capture file done", "frames", stats.Frames, "unreadable", stats.Unreadable,
			"emitted", local.Outcomes[event.Emit], "truncated", local.Truncated)
		return err
	}
	for record := uint64(1); ; record++ {
		data, ci, err := r.pr.ZeroCopyReadPacketData()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return finish(nil)
			case errors.Is(err, io.ErrUnexpectedEOF):
				stats.Unreadable++
				p.log.Warn("capture file ends inside a record; stopping there", "record", record)
				return finish(nil)
			default:
				stats.Unreadable++
				return finish(fmt.Errorf("pcap source: %s: record %d: %w", p.cfg.File, record, err))
			}
		}
		lt := r.link(ci.InterfaceIndex)
		frame, ok := pcapLinkFrame(lt, data)
		if !ok {
			if stats.Unreadable == 0 {
				p.log.Warn("skipping records of an unsupported link type", "record", record, "link_type", lt.String())
			}
			stats.Unreadable++
			continue
		}
		stats.Frames++

		// Event time: nanoseconds since the first record, on the monotonic
		// clock's scale, never going backwards.
		if first.IsZero() {
			first, wall = ci.Timestamp, time.Now()
		}
		rel := ci.Timestamp.Sub(first)
		if ns := base + uint64(max(rel, 0)); ns > lastNs {
			lastNs = ns
		}
		if p.speed > 0 {
			due := wall.Add(time.Duration(float64(rel) / p.speed))
			if d := time.Until(due); d > time.Millisecond {
				sink.Flush()
				publish()
				pending = 0
				if err := pcapSleep(ctx, d); err != nil {
					return finish(err)
				}
			}
		}

		payload, o := p.dec.Frame(frame, &h)
		if o == event.Emit {
			h.TimeNs = lastNs
			sink.Segment(&h, payload)
		}
		decap.Count(&local, o, &h, len(data))

		if pending++; pending >= pcapFlushEvery {
			pending = 0
			sink.Flush()
			publish()
			if err := ctx.Err(); err != nil {
				return finish(err)
			}
		}
	}
}

// pcapLinkFrame returns the record as an Ethernet-like frame for the decoder:
// the EtherType at offset 12 and the network header at 14. Linux cooked
// captures carry the protocol where the decoder can find it, at no copy.
func pcapLinkFrame(lt layers.LinkType, data []byte) ([]byte, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		return data, true
	case layers.LinkTypeLinuxSLL:
		// packet type, ARPHRD, address length, address[8], protocol: the
		// last 14 bytes look like an Ethernet header.
		if len(data) < 16 {
			return data[:0], true // decoder counts it as not VXLAN
		}
		return data[2:], true
	case layers.LinkTypeLinuxSLL2:
		// protocol, reserved, ifindex, ARPHRD, packet type, address
		// length, address[8]: move the protocol to just before the network
		// header (bytes 18..20, the end of the address field, unused by us).
		if len(data) < 20 {
			return data[:0], true
		}
		data[18], data[19] = data[0], data[1]
		return data[6:], true
	default:
		return nil, false
	}
}

func pcapLinkSupported(lt layers.LinkType) bool {
	_, ok := pcapLinkFrame(lt, nil)
	return ok
}

func pcapSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pcapMonotonicNs reads CLOCK_MONOTONIC, the clock bpf_ktime_get_ns uses, so
// pcap events share a time scale with XDP events.
func pcapMonotonicNs() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return uint64(ts.Nano())
}

// UnservedPorts reports the ports of segments dropped as drop_port.
func (p *Pcap) UnservedPorts() ([]event.PortCount, error) { return p.dec.UnservedPorts() }
