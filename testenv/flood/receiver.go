package flood

import (
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

// MetricsAddr is where a Receiver serves /metrics in the lab's receiver
// namespace (the lab's own, so it collides with nothing).
const MetricsAddr = "127.0.0.1:9464"

// Receiver is a `shadowtap run` binary started in the lab's receiver
// namespace with the lab's flags, for the flood and soak commands.
type Receiver struct {
	Proc
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	client  *http.Client
	done    chan struct{}
	waitErr error
}

// StartReceiver runs bin with capture mode (xdp or socket), the lab's VNI,
// source and mirrored port, --target target, and extra flags, logging to
// logPath, and waits until /readyz answers.
func StartReceiver(ctx context.Context, lab *testenv.Lab, bin, mode, pinRoot, target, logPath string, extra ...string) (*Receiver, error) {
	args := []string{"run",
		"--capture", mode,
		"--ports", fmt.Sprint(Port),
		"--vni", fmt.Sprint(lab.VNI),
		"--source", lab.MirrorSourcePrefix().String(),
		"--target", target,
		"--metrics-addr", MetricsAddr,
		"--no-systemd",
		"--log-interval", "10s",
	}
	if mode == "xdp" {
		args = append(args, "--iface", lab.RecvIface, "--pin-root", pinRoot)
	}
	args = append(args, extra...)
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("shadowtap log: %w", err)
	}
	cmd := lab.NsenterCommand(context.Background(), lab.RecvNS, bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	fmt.Fprintf(lf, "# %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting shadowtap: %w", err)
	}
	r := &Receiver{
		Proc: Proc{PID: cmd.Process.Pid}, cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{}),
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{DialContext: lab.DialContext(lab.RecvNS), DisableKeepAlives: true},
		},
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.done)
	}()
	if err := r.waitReady(ctx, 60*time.Second, filepath.Base(bin)); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// Exited reports whether the process has ended.
func (r *Receiver) Exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *Receiver) waitReady(ctx context.Context, timeout time.Duration, base string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if r.Exited() {
			return fmt.Errorf("shadowtap exited before it was ready (%v):\n%s", r.waitErr, r.LogTail(20))
		}
		// nsenter execs shadowtap in place: the PID is shadowtap's once
		// the exec happened.
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", r.PID))
		if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == base {
			if _, err := r.get(ctx, "/readyz"); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shadowtap not ready after %s:\n%s", timeout, r.LogTail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *Receiver) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+MetricsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", path, resp.Status)
	}
	return b, err
}

// Metrics scrapes /metrics.
func (r *Receiver) Metrics(ctx context.Context) (testenv.Metrics, error) {
	b, err := r.get(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping shadowtap: %w", err)
	}
	return testenv.ParseMetrics(strings.NewReader(string(b)))
}

// Stop sends SIGTERM and waits for the drain and exit; after 30 s it kills.
func (r *Receiver) Stop() error {
	defer r.logFile.Close()
	defer r.client.CloseIdleConnections()
	if !r.Exited() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
			return errors.New("shadowtap did not stop within 30s of SIGTERM: killed")
		}
	}
	if r.waitErr != nil {
		return fmt.Errorf("shadowtap: %w:\n%s", r.waitErr, r.LogTail(10))
	}
	return nil
}

// LogTail returns the last n lines of the process's log.
func (r *Receiver) LogTail(n int) string {
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
