package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// slowShadow is a shadow server slower than the mirrored traffic: each
// answer takes delay. It counts the requests of each user (the first
// X-Forwarded-For address: the one the mirrored load balancer appended).
type slowShadow struct {
	mu     sync.Mutex
	byUser map[string]int
}

func startSlowShadow(t *testing.T, lab *testenv.Lab, port int, delay time.Duration) *slowShadow {
	t.Helper()
	ln, err := lab.Listen(lab.ShadowNS, "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	s := &slowShadow{byUser: map[string]int{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		user, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ",")
		s.mu.Lock()
		s.byUser[strings.TrimSpace(user)]++
		s.mu.Unlock()
		w.Write([]byte("ok\n"))
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("slow shadow: %v", err)
		}
	})
	return s
}

func (s *slowShadow) users() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.byUser))
	for k, v := range s.byUser {
		out[k] = v
	}
	return out
}

// TestOverloadShedsSessions (issue 12): the shadow answers about 100
// requests/s (2 connections, 20 ms an answer) while the mirror carries
// about 550 keep-alive page views/s from load balancer users (X-Forwarded-
// For, the default sample key). Capture and parsing lose nothing (every
// frame emitted, every connection opened, every request parsed); replay
// sheds before queueing, by whole sessions, counted dropped "overload"
// (the queue never overflows), with the admitted fraction below 1; and once
// control has settled (a first phase of other users), each user of the
// second phase is replayed whole or shed whole.
func TestOverloadShedsSessions(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	shadow := startSlowShadow(t, lab, shadowPort, 20*time.Millisecond)
	target := shadowTarget(lab, shadowPort)
	p := startRun(t, lab, newPinRoot(t), "--target", target, "--max-inflight", "2", "--queue", "256", "--no-compare")

	var srcMAC, dstMAC net.HardwareAddr
	for _, x := range []struct {
		ns, dev string
		mac     *net.HardwareAddr
	}{{lab.ProdNS, testenv.ProdMirrorIface, &srcMAC}, {lab.RecvNS, lab.RecvIface, &dstMAC}} {
		if err := lab.Do(x.ns, func() error {
			ifi, err := net.InterfaceByName(x.dev)
			if err == nil {
				*x.mac = ifi.HardwareAddr
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var w *mirrorgen.PacketWriter
	if err := lab.Do(lab.ProdNS, func() error {
		var err error
		w, err = mirrorgen.NewPacketWriter(testenv.ProdMirrorIface)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// Two phases back to back, 40 users each: the first lets control
	// settle, the second is checked.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sent, frames, opened uint64
	var phase2 []mirrorgen.Conversation
	for phase, conns := range []int{120, 80} {
		g, err := mirrorgen.New(mirrorgen.Config{
			Conns: 8, TotalConns: conns, RequestsPerConn: 10,
			Mix: mirrorgen.Mix{Page: 1}, LeanAcks: true, Users: 40, UserBase: 1000 * (phase + 1),
			VNI: lab.VNI, VXLANPort: lab.VXLANPort,
			Source: lab.MirrorSource4, Receiver: lab.RecvAddr4, SrcMAC: srcMAC, DstMAC: dstMAC,
			Server: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(phase), 10}), prodPort),
			Seed:   uint64(phase) + 7, Rate: 3000, Batch: 16, Truth: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := g.Run(ctx, w)
		if err != nil {
			t.Fatalf("phase %d: %v", phase+1, err)
		}
		sent += sum.RequestsSent
		frames += sum.Packets
		opened += sum.Conns
		if phase == 1 {
			phase2 = g.Truth()
		}
	}
	if d := w.Dropped(); d != 0 {
		t.Fatalf("the raw socket refused %d frames", d)
	}
	ratio := p.metrics().Get(t, "shadowtap_replay_admitted_ratio")
	m := waitEnded(p, float64(sent), target)

	// Capture and parsing lost nothing.
	if got := m.Get(t, "shadowtap_capture_packets_total", "outcome", "emit"); got != float64(frames) {
		t.Errorf("emitted %v of %d frames", got, frames)
	}
	if got := m.Get(t, "shadowtap_capture_packets_total", "outcome", "lost_ringbuf"); got != 0 {
		t.Errorf("lost_ringbuf %v", got)
	}
	if got := m.Get(t, "shadowtap_flow_queue_full_events_total"); got != 0 {
		t.Errorf("shard queue full %v times", got)
	}
	if got := m.Get(t, "shadowtap_flow_conns_opened_total"); got != float64(opened) {
		t.Errorf("opened %v connections, the mirror carried %d", got, opened)
	}
	checkIdentity(t, m, float64(sent), target)

	// Shed before queueing, counted, the queue never full.
	overload := m.Get(t, "shadowtap_replay_dropped_total", "target", target, "reason", "overload")
	if overload == 0 {
		t.Error("nothing shed as overload")
	}
	if q := m.Get(t, "shadowtap_replay_dropped_total", "target", target, "reason", "queue"); q != 0 {
		t.Errorf("%v dropped at a full queue", q)
	}
	if ratio <= 0 || ratio >= 1 {
		t.Errorf("admitted ratio %v at the end of the traffic, want in (0, 1)", ratio)
	}

	// Whole sessions in the second phase.
	want := map[string]int{}
	for _, c := range phase2 {
		for _, r := range c.Requests {
			want[r.ForwardedFor]++
		}
	}
	got := shadow.users()
	var whole, shed, cut int
	for user, n := range want {
		switch got[user] {
		case n:
			whole++
		case 0:
			shed++
		default:
			cut++
			t.Errorf("user %s: %d of its %d requests replayed", user, got[user], n)
		}
	}
	t.Logf("sent %d requests, replayed %v, shed %v (overload), admitted ratio %.3f; phase 2: %d users replayed whole, %d shed whole, %d cut",
		sent, m.Get(t, "shadowtap_replay_replayed_total", "target", target), overload, ratio, whole, shed, cut)
	if whole == 0 || shed == 0 {
		t.Errorf("phase 2: %d users replayed, %d shed: want both", whole, shed)
	}
}
