package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// portWatchAfter is how long mirror traffic must have flowed, none of it
// matching --ports, before shadowtap says so.
const portWatchAfter = 10 * time.Second

// watchPorts warns once when, portWatchAfter after the first mirrored TCP
// segment, not one has matched --ports while some were dropped for their
// ports (drop_port), naming the ports the mirror carries most (from the
// source's sketch when it keeps one). It polls every poll until ctx ends.
func watchPorts(ctx context.Context, src event.Source, ports []uint16, after, poll time.Duration, log *slog.Logger) {
	t := time.NewTicker(poll)
	defer t.Stop()
	var first time.Time // first poll that saw mirrored TCP
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c, err := src.Counters()
			if err != nil {
				continue
			}
			emitted, unserved := c.Outcomes[event.Emit]+c.Outcomes[event.LostRingbuf], c.Outcomes[event.DropPort]
			if emitted > 0 {
				return // something matched: nothing to say
			}
			if unserved == 0 {
				continue
			}
			if first.IsZero() {
				first = now
				continue
			}
			if now.Sub(first) < after {
				continue
			}
			attrs := []any{"ports", ports, "unserved_segments", unserved}
			if up, ok := src.(event.UnservedPorter); ok {
				if seen, err := up.UnservedPorts(); err == nil && len(seen) > 0 {
					attrs = append(attrs, "seen_most", formatPorts(seen, 5))
				}
			}
			log.Warn(fmt.Sprintf("no mirrored TCP segment matched --ports in %v of mirror traffic: check --ports against the ports below", after), attrs...)
			return
		}
	}
}

// formatPorts lists at most n ports as "8443 (1200 segments), ...".
func formatPorts(p []event.PortCount, n int) string {
	var b strings.Builder
	for i, pc := range p[:min(n, len(p))] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (%d segments)", pc.Port, pc.Segments)
	}
	return b.String()
}
