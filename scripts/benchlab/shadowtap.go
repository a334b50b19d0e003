package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

// metricsAddr is where shadowtap serves /metrics inside the receiver's
// namespace; the namespace is the lab's own, so it collides with nothing.
const metricsAddr = "127.0.0.1:9464"

// receiver is a `shadowtap run` process in the lab's receiver namespace.
type receiver struct {
	mode    string
	variant string
	cmd     *exec.Cmd
	pid     int // the shadowtap process (not nsenter's, should it differ)
	logPath string
	logFile *os.File
	client  *http.Client
	done    chan struct{}
	waitErr error
}

type receiverConfig struct {
	bin, mode, pinRoot, logDir string
	shape, variant             string
	lab                        *testenv.Lab
	extra                      []string
}

// startReceiver starts shadowtap with the lab's flags and waits for /readyz.
func startReceiver(ctx context.Context, rc receiverConfig) (*receiver, error) {
	lab := rc.lab
	args := []string{"run",
		"--capture", rc.mode,
		"--ports", "8080",
		"--vni", fmt.Sprint(lab.VNI),
		"--source", lab.MirrorSourcePrefix().String(),
		"--metrics-addr", metricsAddr,
		"--no-systemd",
		"--log-interval", "5s",
	}
	switch rc.variant {
	case variantCompare:
		args = append(args, "--target", "http://"+testenv.HostPort(lab.ShadowAddr4, 8080))
	case variantNoCompare:
		args = append(args, "--target", "http://"+testenv.HostPort(lab.ShadowAddr4, 8080), "--no-compare")
	}
	if rc.mode == "xdp" {
		args = append(args, "--iface", lab.RecvIface, "--pin-root", rc.pinRoot)
	}
	args = append(args, rc.extra...)

	logPath := filepath.Join(rc.logDir, fmt.Sprintf("shadowtap-%s-%s-%s.log", rc.shape, rc.mode, rc.variant))
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("shadowtap log: %w", err)
	}
	// The process gets its own context: it is stopped with SIGTERM by stop,
	// or by cmd.Cancel when ctx ends first.
	cmd := lab.NsenterCommand(ctx, lab.RecvNS, rc.bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	fmt.Fprintf(lf, "# %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting shadowtap: %w", err)
	}
	r := &receiver{
		mode: rc.mode, variant: rc.variant, cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{}),
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{DialContext: lab.DialContext(lab.RecvNS), MaxIdleConns: 2},
		},
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.done)
	}()

	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	r.pid, err = resolveChild(pctx, cmd.Process.Pid, filepath.Base(rc.bin))
	cancel()
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("finding the shadowtap process: %w", err)
	}
	if err := r.waitReady(ctx, 30*time.Second); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

func (r *receiver) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *receiver) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if r.exited() {
			return fmt.Errorf("shadowtap --capture %s exited before it was ready (%v):\n%s", r.mode, r.waitErr, r.logTail(20))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/readyz", nil)
		resp, err := r.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("shadowtap --capture %s not ready after %s (%v):\n%s", r.mode, timeout, last, r.logTail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scrape reads /metrics.
func (r *receiver) scrape(ctx context.Context) (testenv.Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping shadowtap metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("scraping shadowtap metrics: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return testenv.ParseMetrics(resp.Body)
}

// cpu is shadowtap's user+system CPU time so far.
func (r *receiver) cpu() (time.Duration, error) { return procCPU(r.pid) }

// peakRSS is shadowtap's VmHWM in bytes.
func (r *receiver) peakRSS() (uint64, error) { return procPeakRSS(r.pid) }

// stop sends SIGTERM and waits for the drain and exit; after 30 s it kills.
func (r *receiver) stop() error {
	defer r.logFile.Close()
	defer r.client.CloseIdleConnections()
	if r.exited() {
		return r.exitErr()
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		return fmt.Errorf("shadowtap --capture %s did not stop within 30s of SIGTERM: killed", r.mode)
	}
	return r.exitErr()
}

func (r *receiver) exitErr() error {
	if r.waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(r.waitErr, &ee) {
		return fmt.Errorf("shadowtap --capture %s: %w:\n%s", r.mode, r.waitErr, r.logTail(10))
	}
	return fmt.Errorf("shadowtap --capture %s: %w", r.mode, r.waitErr)
}

// logTail returns the last n lines of the process's log.
func (r *receiver) logTail(n int) string {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
