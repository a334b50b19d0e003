package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shadowtap/shadowtap/testenv"
)

// counterNames are the fields of the XDP program's per-CPU stats struct, as
// bpftool prints them from the map's BTF.
var counterNames = []string{
	"pass_not_vxlan", "pass_vni", "pass_source", "drop_malformed", "drop_not_tcp",
	"drop_fragment", "drop_port", "emit", "lost_ringbuf", "truncated", "bytes",
}

// bpftoolStats runs `bpftool map dump pinned <pins>/<iface>/stats`, checks
// that every CPU's value names every counter, and returns the sums over CPUs.
func bpftoolStats(t *testing.T, pinRoot, iface string) map[string]uint64 {
	t.Helper()
	path := filepath.Join(pinRoot, iface, "stats")
	out, err := exec.Command("bpftool", "map", "dump", "pinned", path).CombinedOutput()
	if err != nil {
		t.Fatalf("bpftool map dump pinned %s: %v\n%s", path, err, out)
	}
	var dump []struct {
		Key    uint32 `json:"key"`
		Values []struct {
			CPU   int                        `json:"cpu"`
			Value map[string]json.RawMessage `json:"value"`
		} `json:"values"`
	}
	if err := json.Unmarshal(out, &dump); err != nil || len(dump) != 1 || len(dump[0].Values) == 0 {
		t.Fatalf("bpftool map dump pinned %s: want one key with per-CPU values named from BTF (%v):\n%s", path, err, out)
	}
	sum := map[string]uint64{}
	for _, v := range dump[0].Values {
		for _, name := range counterNames {
			raw, ok := v.Value[name]
			if !ok {
				t.Fatalf("bpftool dump of %s: CPU %d has no counter %q:\n%s", path, v.CPU, name, out)
			}
			n, err := strconv.ParseUint(string(raw), 10, 64)
			if err != nil {
				t.Fatalf("bpftool dump of %s: %s = %s: %v", path, name, raw, err)
			}
			sum[name] += n
		}
		if len(v.Value) != len(counterNames) {
			t.Errorf("bpftool dump of %s: CPU %d has %d fields, want %d (%v)", path, v.CPU, len(v.Value), len(counterNames), counterNames)
		}
	}
	return sum
}

// statsCommand runs `shadowtap stats` (the test binary in main mode) and
// returns its table as counter -> value.
func statsCommand(t *testing.T, pinRoot, iface string) (map[string]uint64, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "stats", "--iface", iface, "--pin-root", pinRoot)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("shadowtap stats: %v: %s", err, stderr.String())
	}
	table := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] == "counter" {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("shadowtap stats: line %q: %v", sc.Text(), err)
		}
		table[f[0]] = n
	}
	return table, nil
}

// TestPinnedStats checks issue 2's "done when": while run is attached,
// bpftool prints the pinned counters by name and emit grows with the
// mirrored traffic; `shadowtap stats` prints the same counters as a table.
func TestPinnedStats(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	startServer(t, lab, lab.ShadowNS, shadowPort)
	pins := newPinRoot(t)
	p := startRun(t, lab, pins, "--target", shadowTarget(lab, shadowPort))

	before := bpftoolStats(t, pins, lab.RecvIface)
	const n = 5
	var reqs []testenv.Request
	for i := range n {
		reqs = append(reqs, testenv.Request{Target: fmt.Sprintf("/size/%d", 1000*(i+1))})
	}
	converse(t, lab, testenv.HostPort(lab.ProdAddr4, prodPort), reqs...)
	p.waitMetrics("5 requests replayed", func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_replayed_total") >= n
	})

	after := bpftoolStats(t, pins, lab.RecvIface)
	// Each request and each response is at least one segment with payload.
	if after["emit"] < before["emit"]+2*n {
		t.Errorf("emit went from %d to %d over %d exchanges; want at least %d more", before["emit"], after["emit"], n, 2*n)
	}
	if after["bytes"] <= before["bytes"] {
		t.Errorf("bytes did not grow: %d -> %d", before["bytes"], after["bytes"])
	}
	if after["lost_ringbuf"] != 0 || after["truncated"] != 0 {
		t.Errorf("lost_ringbuf %d, truncated %d: want 0 at this rate", after["lost_ringbuf"], after["truncated"])
	}

	table, err := statsCommand(t, pins, lab.RecvIface)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(counterNames, "packets") {
		if _, ok := table[name]; !ok {
			t.Errorf("shadowtap stats has no row %q: %v", name, table)
		}
	}
	// Read in order, so each reading is at least the one before.
	m := p.metrics()
	if table["emit"] < after["emit"] {
		t.Errorf("shadowtap stats emit %d < bpftool's %d read before it", table["emit"], after["emit"])
	}
	if got := uint64(m.Get(t, "shadowtap_capture_packets_total", "outcome", "emit")); got < table["emit"] {
		t.Errorf("/metrics emit %d < shadowtap stats' %d read before it", got, table["emit"])
	}
	var outcomes uint64
	for _, name := range counterNames[:9] {
		outcomes += table[name]
	}
	if table["packets"] != outcomes {
		t.Errorf("shadowtap stats: packets %d, but the outcomes add up to %d", table["packets"], outcomes)
	}

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if _, err := statsCommand(t, pins, lab.RecvIface); err == nil || !strings.Contains(err.Error(), "shadowtap run") {
		t.Errorf("shadowtap stats after run exited: %v; want an error saying to start shadowtap run", err)
	}
}

// TestStopDrainsAndDetaches checks an orderly stop: on SIGTERM (as systemd
// sends) or SIGINT (Ctrl-C), replays in flight to a slow shadow are
// finished, not cut, the exit status is 0, the final summary is logged, and
// neither the XDP program nor the pins are left behind.
func TestStopDrainsAndDetaches(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			pins := newPinRoot(t)
			p := startRun(t, lab, pins, "--target", shadowTarget(lab, shadowPort), "--drain-timeout", "60s")
			// Production and the shadow both answer /slow/1500 after 1.5 s,
			// so the replays are in flight when the signal comes.
			const n = 4
			tag := strconv.Itoa(int(sig))
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
					defer cancel()
					if _, err := lab.KeepAlive(ctx, lab.ClientNS, prod4,
						testenv.Request{Target: fmt.Sprintf("/slow/1500?sig=%s&i=%d", tag, i)}); err != nil {
						t.Errorf("client %d: %v", i, err)
					}
				})
			}
			p.waitMetrics("all replays in flight", func(m testenv.Metrics) bool {
				return m.Get(t, "shadowtap_replay_inflight") == n
			})
			if code := p.stop(sig); code != 0 {
				t.Errorf("exit status %d after %v, want 0", code, sig)
			}
			wg.Wait()
			got := 0 // replays the shadow answered in full, not cancelled
			for _, ex := range shadow.Exchanges() {
				if strings.Contains(ex.Target, "sig="+tag+"&") && strings.HasPrefix(string(ex.ResponseBody), "slept") {
					got++
				}
			}
			if got != n {
				t.Errorf("the shadow answered %d of %d replays in flight at %v: not drained", got, n, sig)
			}
			out := p.out.String()
			final := lastLine(out, "msg=final")
			if final == "" {
				t.Errorf("no final summary line after %v:\n%s", sig, out)
			} else if !strings.Contains(final, fmt.Sprintf("replay.replayed=%d ", n)) || !strings.Contains(final, "replay.pending=0") {
				t.Errorf("final summary %q: want replay.replayed=%d and replay.pending=0", final, n)
			}
			if xdpAttached(t, lab.RecvNS, lab.RecvIface) {
				t.Errorf("an XDP program is left on %s after %v", lab.RecvIface, sig)
			}
			if _, err := os.Stat(filepath.Join(pins, lab.RecvIface)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pins left under %s after %v (stat: %v)", pins, sig, err)
			}
		})
	}
}

// TestKillLeavesNoProgram checks that the XDP link is not pinned: after
// kill -9 the program goes away with the process, the host's traffic on the
// interface is untouched, and the next run, with the same pin directory
// (its maps still pinned), attaches and replays.
func TestKillLeavesNoProgram(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	pins := newPinRoot(t)
	target := shadowTarget(lab, shadowPort)

	p := startRun(t, lab, pins, "--target", target)
	if !xdpAttached(t, lab.RecvNS, lab.RecvIface) {
		t.Fatalf("no XDP program on %s while run is ready", lab.RecvIface)
	}
	if code := p.stop(syscall.SIGKILL); code != -1 {
		t.Errorf("exit status %d after SIGKILL; want -1 (killed)", code)
	}
	waitNoXDP(t, lab)

	// The mirror still arrives and nothing answers it: the host sees VXLAN
	// to a port nothing listens on. What matters is that the next run works.
	p = startRun(t, lab, pins, "--target", target)
	converse(t, lab, testenv.HostPort(lab.ProdAddr4, prodPort), testenv.Request{Target: "/after-kill"})
	p.waitMetrics("the request replayed", func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_replayed_total") >= 1 && settled(t, m)
	})
	got := 0
	for _, ex := range shadow.Exchanges() {
		if ex.Target == "/after-kill" {
			got++
		}
	}
	if got != 1 {
		t.Errorf("shadow received /after-kill %d times after the restart, want once", got)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	waitNoXDP(t, lab)
}

// lastLine returns the last line of s containing sub, or "".
func lastLine(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
