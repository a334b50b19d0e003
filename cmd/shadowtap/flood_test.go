package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

// floodRSSBudget is what shadowtap may use, resident, during the floods
// below: the default budget of the flags given (shards of 16.5 MiB
// preallocated, the 16 MiB ring buffer, --max-conns connections per shard,
// the Go runtime), with room for the race detector's shadow memory when
// the tests run with -race.
const floodRSSBudget = 512 << 20

// floodScale is the size of the flood of TestFloodKeepsEstablishedReplayed:
// small in CI; SHADOWTAP_FLOOD=full (make flood) sends a million flows to
// a receiver with the default --shards and --max-conns.
type floodScale struct {
	flows, randoms int64
	maxConns       int // 0: the default, with the default shards
}

func floodSize() floodScale {
	if os.Getenv("SHADOWTAP_FLOOD") == "full" {
		return floodScale{flows: 1_000_000, randoms: 200_000}
	}
	return floodScale{flows: 200 * 256, randoms: 20_000, maxConns: 256}
}

// peakRSS is the process's peak resident memory (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kib float64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kib); err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kib * 1024
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// TestFloodKeepsEstablishedReplayed is the small version of the flood
// runs: while an established keep-alive connection (one exchange done)
// sends a request every few milliseconds, split over two segments, the
// mirror's allowed source
// sends (a) a flood of distinct new flows, a SYN and one segment each, 200
// times --max-conns (a million with SHADOWTAP_FLOOD=full), then (b) VXLAN
// frames of random inner bytes. Every
// request of the established connection is still parsed and replayed
// once, only flood flows are evicted, and shadowtap stays inside its
// memory budget.
func TestFloodKeepsEstablishedReplayed(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	if lab.OuterIPv6 {
		t.Skip("the flood sender builds IPv4 outer frames")
	}
	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	size := floodSize()
	args := []string{"--target", shadowTarget(lab, shadowPort)}
	if size.maxConns > 0 {
		args = append(args, "--shards", "1", "--max-conns", fmt.Sprint(size.maxConns))
	}
	p := startRun(t, lab, newPinRoot(t), args...)

	// The flood: VXLAN to the receiver from the mirror's own source address.
	pc, err := lab.ListenPacket(lab.ProdNS, "udp4", netip.AddrPortFrom(lab.MirrorSource4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.RecvAddr4, lab.VXLANPort))
	var flows, randoms atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	flood := func() {
		rng := rand.New(rand.NewPCG(1, 2))
		frame := make([]byte, 0, 2048)
		server := netip.AddrPortFrom(lab.ProdAddr4, prodPort)
		for i := 0; ctx.Err() == nil; i++ {
			if flows.Load() < size.flows {
				client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), uint16(1024+i%60000))
				frame = vxlanTCP(frame[:0], lab.VNI, client, server, 7, tcpSYN, nil)
				pc.WriteTo(frame, dst)
				frame = vxlanTCP(frame[:0], lab.VNI, client, server, 8, tcpACK|tcpPSH, []byte("GET /flood HTTP/1.1\r\nHost: x\r\n"))
				pc.WriteTo(frame, dst)
				flows.Add(1)
				continue
			}
			// Random inner bytes behind a valid VXLAN header.
			frame = append(frame[:0], 0x08, 0, 0, 0, byte(lab.VNI>>16), byte(lab.VNI>>8), byte(lab.VNI), 0)
			for range 14 + rng.IntN(1400) {
				frame = append(frame, byte(rng.Uint32()))
			}
			pc.WriteTo(frame, dst)
			randoms.Add(1)
		}
	}

	// The established connection, throughout the flood: at least 40
	// requests, and more until the flood ends.
	const minRequests = 40
	floodDone := func() bool { return flows.Load() >= size.flows && randoms.Load() >= size.randoms }
	requests := 0
	dial := lab.DialContext(lab.ClientNS)
	nc, err := dial(context.Background(), "tcp", testenv.HostPort(lab.ProdAddr4, prodPort))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	for i := 0; i < minRequests || !floodDone(); i++ {
		requests++
		if i == 1 {
			// Established: it has carried a request and its answer.
			wg.Go(flood)
		}
		q := fmt.Sprintf("GET /est/%d HTTP/1.1\r\nHost: shop\r\n\r\n", i)
		half := len(q) / 2
		if _, err := io.WriteString(nc, q[:half]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // the flood runs between the two segments
		if _, err := io.WriteString(nc, q[half:]); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	nc.Close()
	stop()
	wg.Wait()
	t.Logf("sent %d flood flows and %d random frames during %d requests", flows.Load(), randoms.Load(), requests)

	m := p.waitMetrics(fmt.Sprintf("%d requests replayed", requests), func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_replayed_total") >= float64(requests) && settled(t, m)
	})
	if got := m.Get(t, "shadowtap_replay_replayed_total"); got != float64(requests) {
		t.Errorf("replayed %v requests, want the established connection's %d", got, requests)
	}
	seen := map[string]int{}
	for _, ex := range shadow.Exchanges() {
		seen[ex.Target]++
	}
	for i := range requests {
		if n := seen[fmt.Sprintf("/est/%d", i)]; n != 1 {
			t.Errorf("/est/%d reached the shadow %d times, want once", i, n)
		}
	}
	evicted := m.Get(t, "shadowtap_flow_closed_evicted_total")
	if unconf := m.Get(t, "shadowtap_flow_evicted_unconfirmed_total"); evicted == 0 || unconf != evicted {
		t.Errorf("evicted %v connections, %v of them unconfirmed: want the flood to evict only unconfirmed flows", evicted, unconf)
	}
	t.Logf("capture: emit %v, lost_ringbuf %v, drop_not_tcp %v; flow: opened %v, evicted %v (unconfirmed %v), tracked %v (unconfirmed %v)",
		m.Get(t, "shadowtap_capture_packets_total", "outcome", "emit"), m.Get(t, "shadowtap_capture_packets_total", "outcome", "lost_ringbuf"),
		m.Get(t, "shadowtap_capture_packets_total", "outcome", "drop_not_tcp"), m.Get(t, "shadowtap_flow_conns_opened_total"),
		evicted, m.Get(t, "shadowtap_flow_evicted_unconfirmed_total"), m.Get(t, "shadowtap_flow_conns_tracked"),
		m.Get(t, "shadowtap_flow_conns_unconfirmed_tracked"))
	if rss := peakRSS(t, p.pid()); rss > floodRSSBudget {
		t.Errorf("peak resident memory %.0f MiB, budget %d MiB", rss/(1<<20), floodRSSBudget>>20)
	} else {
		t.Logf("peak resident memory %.0f MiB (budget %d MiB)", rss/(1<<20), floodRSSBudget>>20)
	}
	if strings.Contains(p.out.String(), "panic") {
		t.Errorf("shadowtap panicked:\n%s", p.out.String())
	}
}

// TCP flags of the flood's inner segments.
const (
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// vxlanTCP appends to b a VXLAN payload (the UDP datagram's content): the
// VXLAN header with vni, then an inner Ethernet frame carrying an IPv4 TCP
// segment from client to server with seq, flags and data.
func vxlanTCP(b []byte, vni uint32, client, server netip.AddrPort, seq uint32, flags byte, data []byte) []byte {
	b = append(b, 0x08, 0, 0, 0, byte(vni>>16), byte(vni>>8), byte(vni), 0)
	b = append(b, 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00) // Ethernet, IPv4
	ip := len(b)
	total := 20 + 20 + len(data)
	b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, 64, 6, 0, 0)
	c, s := client.Addr().As4(), server.Addr().As4()
	b = append(b, c[:]...)
	b = append(b, s[:]...)
	var sum uint32
	for i := ip; i < ip+20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[ip+10:], ^uint16(sum))
	b = binary.BigEndian.AppendUint16(b, client.Port())
	b = binary.BigEndian.AppendUint16(b, server.Port())
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = append(b, 5<<4, flags, 0xff, 0xff, 0, 0, 0, 0) // no TCP checksum: the mirror path does not check it
	return append(b, data...)
}

// TestHugeResponseHeads is the small version of the flood run (c): a
// shadow answering every replayed request with a 100 MiB response head.
// shadowtap reads at most --max-response-header-bytes of each, counts the
// request failed "response_too_large", and stays inside its memory budget.
func TestHugeResponseHeads(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	const port = 8081
	ln, err := lab.Listen(lab.ShadowNS, "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var sentHead atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				chunk := []byte(strings.Repeat("h", 64<<10))
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if _, err := io.WriteString(nc, "HTTP/1.1 200 OK\r\nX-Big: "); err != nil {
						return
					}
					for range (100 << 20) / len(chunk) {
						n, err := nc.Write(chunk)
						sentHead.Add(int64(n))
						if err != nil {
							return
						}
					}
					io.WriteString(nc, "\r\nContent-Length: 0\r\n\r\n")
				}
			})
		}
	})
	p := startRun(t, lab, newPinRoot(t), "--target", shadowTarget(lab, port), "--shards", "1")
	const requests = 10
	var reqs []testenv.Request
	for i := range requests {
		reqs = append(reqs, testenv.Request{Target: fmt.Sprintf("/huge/%d", i)})
	}
	converse(t, lab, testenv.HostPort(lab.ProdAddr4, prodPort), reqs...)
	m := p.waitMetrics(fmt.Sprintf("%d requests ended", requests), func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_failed_total")+m.Get(t, "shadowtap_replay_replayed_total") >= requests && settled(t, m)
	})
	if got := m.Get(t, "shadowtap_replay_failed_total", "reason", "response_too_large"); got != requests {
		t.Errorf("failed response_too_large %v, want %d:\n%s", got, requests, m.String())
	}
	if got := m.Get(t, "shadowtap_replay_replayed_total"); got != 0 {
		t.Errorf("%v answers with a 100 MiB head counted as replayed", got)
	}
	if rss := peakRSS(t, p.pid()); rss > floodRSSBudget {
		t.Errorf("peak resident memory %.0f MiB, budget %d MiB", rss/(1<<20), floodRSSBudget>>20)
	} else {
		t.Logf("peak resident memory %.0f MiB (budget %d MiB); the shadow wrote %d MiB of heads before shadowtap closed",
			rss/(1<<20), floodRSSBudget>>20, sentHead.Load()>>20)
	}
}
