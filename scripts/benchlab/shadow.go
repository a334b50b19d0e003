package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// The shadow runs as its own process (this program re-executed with the
// shadowServerCmd argument, in the shadow namespace), so that its CPU time
// is measured apart from the generator's.
const shadowServerCmd = "shadow-server"

// Shadow kinds.
const (
	shadowMinimal = "minimal" // reads each request head, writes a canned 200
	shadowNetHTTP = "nethttp" // net/http's server, a handler that writes a short 200
	// shadowSame is the minimal server answering as production did in the
	// conn and keepalive shapes (mirrorgen.PageResponse): the comparison
	// finds no difference, as when the new code behaves.
	shadowSame = "same"
)

// cannedBody is what both shadows answer.
var cannedBody = []byte("shadow ok\n")

// shadowProc is the running shadow server.
type shadowProc struct {
	kind string
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
	err  error
}

// startShadowProc starts the shadow server in the shadow namespace and waits
// until it accepts connections.
func startShadowProc(ctx context.Context, lab *testenv.Lab, kind string, port uint16, logDir string) (*shadowProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("shadow server: %w", err)
	}
	lf, err := os.Create(filepath.Join(logDir, "shadow.log"))
	if err != nil {
		return nil, fmt.Errorf("shadow server log: %w", err)
	}
	cmd := lab.NsenterCommand(ctx, lab.ShadowNS, self, shadowServerCmd, "-kind", kind, "-addr", ":"+strconv.Itoa(int(port)))
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting the shadow server: %w", err)
	}
	s := &shadowProc{kind: kind, cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		lf.Close()
		close(s.done)
	}()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	s.pid, err = resolveChild(pctx, cmd.Process.Pid, filepath.Base(self))
	cancel()
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("finding the shadow server process: %w", err)
	}
	dial := lab.DialContext(lab.ShadowNS)
	addr := testenv.HostPort(lab.ShadowAddr4, int(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("the shadow server exited: %v", s.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("the shadow server does not accept on %s: %w", addr, err)
		}
	}
}

// cpu is the shadow server's CPU time so far.
func (s *shadowProc) cpu() (time.Duration, error) { return procCPU(s.pid) }

func (s *shadowProc) stop() error {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
		return nil
	}
	return s.err
}

// shadowServerMain is the shadow server process: it serves until SIGTERM.
func shadowServerMain(args []string) error {
	fs := flag.NewFlagSet(shadowServerCmd, flag.ContinueOnError)
	kind := fs.String("kind", shadowMinimal, "minimal, same or nethttp")
	addr := fs.String("addr", ":8080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	switch *kind {
	case shadowMinimal, shadowSame:
		go func() {
			<-ctx.Done()
			ln.Close()
		}()
		full := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(cannedBody)) + "\r\n\r\n" + string(cannedBody))
		if *kind == shadowSame {
			full = mirrorgen.PageResponse(0)
		}
		serveMinimal(ln, full)
		return nil
	case shadowNetHTTP:
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", strconv.Itoa(len(cannedBody)))
				_, _ = w.Write(cannedBody)
			}),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
		}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return fmt.Errorf("shadow kind %q: want %s, %s or %s", *kind, shadowMinimal, shadowSame, shadowNetHTTP)
}

// serveMinimal is the cheapest HTTP/1.1 server that keeps a replayer
// honest: per connection one goroutine reads each request head (and a
// Content-Length body) and answers with the canned response full (its head
// only to HEAD); requests that arrived together are answered with one
// write. Anything it does not understand (chunked bodies, bad heads)
// closes the connection.
func serveMinimal(ln net.Listener, full []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go minimalConn(c, full)
	}
}

func minimalConn(c net.Conn, full []byte) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 16<<10)
	head := full[:bytes.Index(full, []byte("\r\n\r\n"))+4]
	for {
		m, clen, ok := readHead(br)
		if !ok {
			return
		}
		if clen > 0 {
			if _, err := br.Discard(int(clen)); err != nil {
				return
			}
		}
		if m == "HEAD" {
			bw.Write(head)
		} else {
			bw.Write(full)
		}
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// readHead reads one request head and returns its method and
// Content-Length; ok is false at EOF or on anything unsupported.
func readHead(br *bufio.Reader) (method string, clen int64, ok bool) {
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", 0, false
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			if len(line) == 0 {
				continue // tolerated between requests
			}
			sp := bytes.IndexByte(line, ' ')
			if sp <= 0 {
				return "", 0, false
			}
			switch string(line[:sp]) { // no allocation for these
			case "GET":
				method = "GET"
			case "HEAD":
				method = "HEAD"
			default:
				method = string(line[:sp])
			}
			first = false
			continue
		}
		if len(line) == 0 {
			return method, clen, true
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return "", 0, false
		}
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
			if err != nil || n < 0 {
				return "", 0, false
			}
			clen = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			return "", 0, false
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i]|0x20, s[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}
