package xdp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/cilium/ebpf"

	"github.com/shadowtap/shadowtap/bpf"
	"github.com/shadowtap/shadowtap/pkg/event"
)

// readStats sums the per-CPU values of the stats map.
func readStats(m *ebpf.Map) (event.Counters, error) {
	var c event.Counters
	var perCPU []bpf.ShadowtapStats
	if err := m.Lookup(uint32(0), &perCPU); err != nil {
		return c, fmt.Errorf("read XDP counters: %w", err)
	}
	for i := range perCPU {
		addStats(&c, &perCPU[i])
	}
	return c, nil
}

// addStats adds one CPU's struct stats to c. The field order is event.Outcome's.
func addStats(c *event.Counters, s *bpf.ShadowtapStats) {
	c.Outcomes[event.PassNotVXLAN] += s.PassNotVxlan
	c.Outcomes[event.PassVNI] += s.PassVni
	c.Outcomes[event.PassSource] += s.PassSource
	c.Outcomes[event.DropMalformed] += s.DropMalformed
	c.Outcomes[event.DropNotTCP] += s.DropNotTcp
	c.Outcomes[event.DropFragment] += s.DropFragment
	c.Outcomes[event.DropPort] += s.DropPort
	c.Outcomes[event.Emit] += s.Emit
	c.Outcomes[event.LostRingbuf] += s.LostRingbuf
	c.Truncated += s.Truncated
	c.Bytes += s.Bytes
}

// ReadPinnedStats reads the counters that a running shadowtap pinned for
// iface under pinRoot ("" = /sys/fs/bpf/shadowtap), summed over CPUs. It
// works from another process while `shadowtap run` is attached.
func ReadPinnedStats(pinRoot, iface string) (event.Counters, error) {
	if pinRoot == "" {
		pinRoot = DefaultPinRoot
	}
	path := filepath.Join(pinRoot, iface, PinStats)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return event.Counters{}, fmt.Errorf("no shadowtap counters for %s at %s: is `shadowtap run --iface %s` running?", iface, path, iface)
		}
		if errors.Is(err, os.ErrPermission) {
			return event.Counters{}, fmt.Errorf("read %s: %w: run as root", path, err)
		}
		return event.Counters{}, fmt.Errorf("open pinned counters %s: %w", path, err)
	}
	defer m.Close()
	return readStats(m)
}

// FormatCounters writes c as a two-column table: each outcome, then
// truncated, bytes and the packet total.
func FormatCounters(w io.Writer, c event.Counters) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "counter\tvalue\n")
	// The program's own outcomes: lost_socket belongs to the socket source.
	for o := event.Outcome(0); o <= event.LostRingbuf; o++ {
		fmt.Fprintf(tw, "%s\t%d\n", o, c.Outcomes[o])
	}
	fmt.Fprintf(tw, "truncated\t%d\n", c.Truncated)
	fmt.Fprintf(tw, "bytes\t%d\n", c.Bytes)
	fmt.Fprintf(tw, "packets\t%d\n", c.Packets())
	return tw.Flush()
}

// UnservedPorts reads the program's sketch of the ports of segments dropped
// as drop_port (shadowtap_unsrv), summed over CPUs, most seen first.
func (p *Probe) UnservedPorts() ([]event.PortCount, error) {
	counts := map[uint16]uint64{}
	var per []bpf.ShadowtapUnserved
	for slot := uint32(0); slot < event.UnservedSlots; slot++ {
		if err := p.objs.ShadowtapUnsrv.Lookup(slot, &per); err != nil {
			return nil, fmt.Errorf("read the unserved-port sketch: %w", err)
		}
		for _, u := range per {
			if u.Count > 0 {
				counts[uint16(u.Port)] += u.Count
			}
		}
	}
	out := make([]event.PortCount, 0, len(counts))
	for port, n := range counts {
		out = append(out, event.PortCount{Port: port, Segments: n})
	}
	event.SortPortCounts(out)
	return out, nil
}
