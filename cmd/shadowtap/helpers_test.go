package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

// Generous deadlines: these only catch hangs, they time nothing.
const (
	startDeadline = 90 * time.Second // until /readyz answers
	waitDeadline  = 90 * time.Second // until counters or servers reach a value
	exitDeadline  = 60 * time.Second // until the process exits after a signal
)

// metricsAddr is where shadowtap serves /metrics inside the lab's receiver
// namespace; every lab has its own namespace, so the port never clashes.
const metricsAddr = "127.0.0.1:9464"

// shadowPort is the shadow server's port in ShadowNS, and prodPort
// production's (the mirrored service).
const (
	shadowPort = 8080
	prodPort   = 8080
)

// proc is a `shadowtap run` started by a test: the test binary itself, with
// mainEnv set, in the lab's receiver namespace.
type proc struct {
	t       *testing.T
	lab     *testenv.Lab
	cmd     *exec.Cmd
	pinRoot string
	out     *syncBuffer // stdout and stderr
	done    chan struct{}
	state   *os.ProcessState // valid after done
	scrape  *http.Client
}

// syncBuffer is a bytes.Buffer safe for the writer goroutines of exec and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newPinRoot returns a fresh bpffs directory for one test's pins and
// removes it at cleanup (a killed run leaves its pins behind).
func newPinRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join("/sys/fs/bpf", testenv.UniqueName("stcmd"))
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("removing pins %s: %v", root, err)
		}
	})
	return root
}

// runArgs is the command line of a `shadowtap run` on the lab's receiver
// interface, before the test's own flags.
func runArgs(lab *testenv.Lab, pinRoot string) []string {
	return []string{"run",
		"--iface", lab.RecvIface, "--ports", strconv.Itoa(prodPort),
		"--vni", strconv.FormatUint(uint64(lab.VNI), 10),
		"--source", lab.MirrorSourcePrefix().String(),
		"--metrics-addr", metricsAddr,
		"--pin-root", pinRoot,
		"--no-systemd", "--log-interval", "1s",
	}
}

// shadowTarget is the --target URL of a server in ShadowNS on port.
func shadowTarget(lab *testenv.Lab, port int) string {
	return "http://" + testenv.HostPort(lab.ShadowAddr4, port)
}

// startRun starts `shadowtap run` with runArgs and extra, and waits until
// /readyz says it is attached and running. The process is killed at cleanup
// if the test has not stopped it.
func startRun(t *testing.T, lab *testenv.Lab, pinRoot string, extra ...string) *proc {
	t.Helper()
	return startRunWrapped(t, lab, pinRoot, nil, extra...)
}

// startRunWrapped is startRun with the command line prefix wrap instead of
// the test binary (e.g. setpriv ... /copy/of/the/test/binary, to drop
// privileges); the run arguments follow it.
func startRunWrapped(t *testing.T, lab *testenv.Lab, pinRoot string, wrap []string, extra ...string) *proc {
	t.Helper()
	args := append(runArgs(lab, pinRoot), extra...)
	p := &proc{
		t: t, lab: lab, pinRoot: pinRoot, out: &syncBuffer{}, done: make(chan struct{}),
		scrape: &http.Client{
			Transport: &http.Transport{DialContext: lab.DialContext(lab.RecvNS), DisableKeepAlives: true},
			Timeout:   10 * time.Second,
		},
	}
	// Not CommandContext: the test decides how the process ends.
	if len(wrap) == 0 {
		p.cmd = lab.NsenterCommand(context.Background(), lab.RecvNS, os.Args[0], args...)
	} else {
		p.cmd = lab.NsenterCommand(context.Background(), lab.RecvNS, wrap[0], append(wrap[1:len(wrap):len(wrap)], args...)...)
	}
	p.cmd.Env = append(os.Environ(), mainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting shadowtap: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("shadowtap %s output:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	p.waitReady()
	return p
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		select {
		case <-p.done:
			p.t.Fatalf("shadowtap exited before it was ready (%v):\n%s", p.state, p.out.String())
		default:
		}
		resp, err := p.scrape.Get("http://" + metricsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("shadowtap not ready after %v (last: %v):\n%s", startDeadline, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the process id of shadowtap itself. nsenter without --fork execs
// the program, so it is the process the test started; the check makes
// sure a signal sent to it reaches shadowtap, not a wrapper.
func (p *proc) pid() int {
	p.t.Helper()
	pid := p.cmd.Process.Pid
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		p.t.Fatalf("reading /proc/%d/exe: %v", pid, err)
	}
	self, err := os.Executable()
	if err != nil {
		p.t.Fatal(err)
	}
	if exe != self {
		p.t.Fatalf("process %d runs %s, not the test binary %s: nsenter forked", pid, exe, self)
	}
	return pid
}

// stop sends sig to shadowtap and waits for it to exit; it returns the exit
// status (-1 when killed by a signal).
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	if err := syscall.Kill(p.pid(), sig); err != nil {
		p.t.Fatalf("sending %v to shadowtap: %v", sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(exitDeadline):
		p.t.Fatalf("shadowtap still running %v after %v:\n%s", exitDeadline, sig, p.out.String())
	}
	return p.state.ExitCode()
}

// metrics scrapes /metrics.
func (p *proc) metrics() testenv.Metrics {
	p.t.Helper()
	resp, err := p.scrape.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		p.t.Fatalf("scraping shadowtap: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		p.t.Fatalf("scraping shadowtap: %s: %s", resp.Status, b)
	}
	m, err := testenv.ParseMetrics(resp.Body)
	if err != nil {
		p.t.Fatalf("parsing /metrics: %v", err)
	}
	return m
}

// waitMetrics scrapes until cond holds and returns that scrape.
func (p *proc) waitMetrics(what string, cond func(testenv.Metrics) bool) testenv.Metrics {
	p.t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		m := p.metrics()
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waited %v for %s; last scrape:\n%s", waitDeadline, what, m.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settled is true when the replay stage holds nothing: every accepted
// request has ended for every target.
func settled(t testing.TB, m testenv.Metrics) bool {
	return m.Get(t, "shadowtap_replay_queued") == 0 && m.Get(t, "shadowtap_replay_inflight") == 0
}

// xdpAttached reports whether an XDP program is attached to dev in ns, from
// `ip -j link show`, which lists "xdp" for any attach mode.
func xdpAttached(t *testing.T, ns, dev string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", "dev", dev).Output()
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v", ns, dev, err)
	}
	var links []map[string]json.RawMessage
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show: %q: %v", out, err)
	}
	_, ok := links[0]["xdp"]
	return ok
}

// waitNoXDP waits until no XDP program is attached to the receiver
// interface: the kernel releases the link when the last fd closes, which
// may happen a moment after the process is reaped.
func waitNoXDP(t *testing.T, lab *testenv.Lab) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for xdpAttached(t, lab.RecvNS, lab.RecvIface) {
		if time.Now().After(deadline) {
			out, _ := exec.Command("ip", "-n", lab.RecvNS, "link", "show", "dev", lab.RecvIface).CombinedOutput()
			t.Fatalf("an XDP program is still attached to %s:\n%s", lab.RecvIface, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer starts a lab HTTP server in ns on :port, stopped at cleanup.
func startServer(t *testing.T, lab *testenv.Lab, ns string, port int) *testenv.Server {
	t.Helper()
	srv, err := testenv.StartHTTPServer(context.Background(), lab, ns, fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return srv
}

// converse runs one keep-alive conversation from the client namespace to
// production and fails the test on error.
func converse(t *testing.T, lab *testenv.Lab, prod string, reqs ...testenv.Request) *testenv.Conversation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	conv, err := lab.KeepAlive(ctx, lab.ClientNS, prod, reqs...)
	if err != nil {
		t.Fatalf("conversation with production %s: %v", prod, err)
	}
	if len(conv.Exchanges) != len(reqs) {
		t.Fatalf("conversation with production %s: %d answers to %d requests", prod, len(conv.Exchanges), len(reqs))
	}
	return conv
}
