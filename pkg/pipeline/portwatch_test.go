package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// portSource is a capture source with set counters and unserved ports.
type portSource struct {
	event.Source
	mu       sync.Mutex
	counters event.Counters
}

func (s *portSource) set(emit, dropPort uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.Outcomes[event.Emit], s.counters.Outcomes[event.DropPort] = emit, dropPort
}

func (s *portSource) Counters() (event.Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters, nil
}

func (s *portSource) UnservedPorts() ([]event.PortCount, error) {
	return []event.PortCount{{Port: 8443, Segments: 900}, {Port: 443, Segments: 12}}, nil
}

// syncBuf is a log destination safe for the watcher goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func TestWatchPorts(t *testing.T) {
	tests := []struct {
		name           string
		emit, dropPort uint64
		warn           bool
	}{
		{"nothing matched --ports", 0, 5000, true},
		{"some matched", 10, 5000, false},
		{"no mirror traffic at all", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &portSource{}
			src.set(tt.emit, tt.dropPort)
			var out syncBuf
			log := slog.New(slog.NewTextHandler(&out, nil))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			watchPorts(ctx, src, []uint16{8080}, 50*time.Millisecond, 5*time.Millisecond, log)
			got := out.String()
			if warned := strings.Contains(got, "no mirrored TCP segment matched --ports"); warned != tt.warn {
				t.Fatalf("warned %v, want %v; log:\n%s", warned, tt.warn, got)
			}
			if tt.warn {
				if !strings.Contains(got, "8443 (900 segments), 443 (12 segments)") || strings.Count(got, "level=WARN") != 1 {
					t.Errorf("want one warning naming the ports seen most:\n%s", got)
				}
			}
		})
	}
}
