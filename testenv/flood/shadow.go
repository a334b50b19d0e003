package flood

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

// Shadow is the shadow fleet's side of a flood: a keep-alive HTTP/1.1
// server that counts requests, the steady connection's (Host SteadyHost)
// apart, reads their bodies and answers 200 with a short body. It records
// nothing else, so it does not grow with the load.
type Shadow struct {
	ln     net.Listener
	steady atomic.Uint64
	others atomic.Uint64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// StartShadow listens on addr in ns of lab.
func StartShadow(lab *testenv.Lab, ns, addr string) (*Shadow, error) {
	ln, err := lab.Listen(ns, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("shadow server: %w", err)
	}
	s := &Shadow{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(s.serve)
	return s, nil
}

// Steady is the steady connection's requests received; Others the rest.
func (s *Shadow) Steady() uint64 { return s.steady.Load() }

// Others is the requests received that were not the steady connection's.
func (s *Shadow) Others() uint64 { return s.others.Load() }

// Close stops the server and its connections.
func (s *Shadow) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Shadow) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		})
	}
}

var okAnswer = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nshadow ok\n")

func (s *Shadow) handle(c net.Conn) {
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		req.Body.Close()
		if req.Host == SteadyHost {
			s.steady.Add(1)
		} else {
			s.others.Add(1)
		}
		if _, err := w.Write(okAnswer); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// Proc is a shadowtap process to watch.
type Proc struct {
	PID int
}

// Status is a process's memory from /proc/PID/status, in bytes.
type Status struct {
	RSS, PeakRSS uint64 // VmRSS, VmHWM
	Threads      int
}

// Status reads /proc/PID/status.
func (p Proc) Status() (Status, error) {
	b, err := readFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return Status{}, err
	}
	var st Status
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			st.RSS = n << 10
		case "VmHWM":
			st.PeakRSS = n << 10
		case "Threads":
			st.Threads = int(n)
		}
	}
	if st.PeakRSS == 0 {
		return st, fmt.Errorf("/proc/%d/status: no VmHWM", p.PID)
	}
	return st, nil
}

// PeakWatcher samples a process's RSS every interval and keeps the peak:
// VmHWM covers the process's whole life, the watcher one window of it.
type PeakWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	peak   atomic.Uint64
	err    atomic.Value
}

// WatchPeak starts sampling p.
func WatchPeak(p Proc, interval time.Duration) *PeakWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &PeakWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			st, err := p.Status()
			if err != nil {
				w.err.Store(err)
				return
			}
			if st.RSS > w.peak.Load() {
				w.peak.Store(st.RSS)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Stop ends the sampling and returns the highest RSS seen.
func (w *PeakWatcher) Stop() (uint64, error) {
	w.cancel()
	<-w.done
	if err, ok := w.err.Load().(error); ok && err != nil {
		return w.peak.Load(), err
	}
	return w.peak.Load(), nil
}

var errNoProc = errors.New("flood: no such process")

func readFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, errNoProc)
	}
	return b, err
}
