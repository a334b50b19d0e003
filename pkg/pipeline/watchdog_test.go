package pipeline

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// clockSource is a capture source whose reader last ran at a set time.
type clockSource struct {
	event.Source
	last atomic.Int64
}

func (c *clockSource) LastActive() time.Time { return time.Unix(0, c.last.Load()) }

// TestWatchdogFollowsProgress plays systemd: a notify socket and
// WATCHDOG_USEC. The service must say READY, ping the watchdog while the
// capture reader is live, and stop pinging while it is stuck.
func TestWatchdogFollowsProgress(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "30000") // 30 ms: pings every 10 ms, stall after 15 ms
	t.Setenv("WATCHDOG_PID", "")

	src := &clockSource{}
	src.last.Store(time.Now().UnixNano())
	p := &stages{source: src}
	var ready atomic.Bool
	ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notifySystemd(ctx, &ready, p, slog.New(slog.DiscardHandler))

	// A live reader: keep it fresh in the background.
	live := make(chan struct{})
	go func() {
		for {
			select {
			case <-live:
				return
			case <-time.After(2 * time.Millisecond):
				src.last.Store(time.Now().UnixNano())
			}
		}
	}()
	count := func(d time.Duration) (ready, pings int) {
		buf := make([]byte, 256)
		deadline := time.Now().Add(d)
		for {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			ready += strings.Count(msg, "READY=1")
			pings += strings.Count(msg, "WATCHDOG=1")
		}
	}
	r, pings := count(300 * time.Millisecond)
	if r != 1 || pings < 5 {
		t.Fatalf("live pipeline: READY %d times, %d watchdog pings in 300 ms; want READY once and pings every ~10 ms", r, pings)
	}
	close(live) // the reader is now stuck
	count(50 * time.Millisecond)
	if _, pings := count(300 * time.Millisecond); pings != 0 {
		t.Errorf("stuck capture reader: %d watchdog pings, want none", pings)
	}
	if why := p.stalled(time.Now(), 15*time.Millisecond); !strings.Contains(why, "capture reader") {
		t.Errorf("stalled() = %q, want the capture reader named", why)
	}
}
