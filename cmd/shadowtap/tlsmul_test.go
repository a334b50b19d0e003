package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/verdict"
	"github.com/shadowtap/shadowtap/testenv"
)

// TestBadTLSAndMultiplyFlags (issue 11): HTTPS-shadow files and --multiply
// values that cannot work are refused at start: exit status 2, one line
// naming the flag. None needs root.
func TestBadTLSAndMultiplyFlags(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.der")
	if err := os.WriteFile(notPEM, []byte{0x30, 0x82, 0x01}, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"run", "--iface", "stx-none0", "--ports", "8080", "--vni", "42", "--metrics-addr", "", "--no-systemd",
		"--target", "https://shadow.test:8443"}
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"CA file missing", []string{"--ca-file", filepath.Join(dir, "nope.pem")}, "--ca-file " + filepath.Join(dir, "nope.pem")},
		{"CA file not PEM", []string{"--ca-file", notPEM}, "no PEM CERTIFICATE block"},
		{"client cert without key", []string{"--client-cert", notPEM}, "--client-cert and --client-key go together"},
		{"client key unreadable", []string{"--client-cert", notPEM, "--client-key", filepath.Join(dir, "nope.key")}, "--client-key " + filepath.Join(dir, "nope.key")},
		{"insecure with CA", []string{"--insecure-skip-verify", "--ca-file", notPEM}, "contradict"},
		{"multiply zero", []string{"--multiply", "0"}, `--multiply "0"`},
		{"multiply above the maximum", []string{"--multiply", "11"}, "0 < F <= 10"},
		{"multiply unknown target", []string{"--multiply", "http://other=2"}, "not the URL of a --target"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), base...), tc.args...)
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			out := stderr.String()
			if code != 2 {
				t.Errorf("shadowtap %s: exit status %d, want 2; stderr:\n%s", strings.Join(args, " "), code, out)
			}
			if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("stderr (%d lines) %q: want one line naming %q", n, out, tc.want)
			}
		})
	}
}

// tlsShadow is an HTTPS server in the lab's shadow namespace that records,
// for every request, the server name the client hello asked for and the
// client certificate presented.
type tlsShadow struct {
	srv  *http.Server
	done chan error
	mu   sync.Mutex
	reqs []tlsRequest
}

type tlsRequest struct {
	path, host, marker, sni, clientCN string
}

func startTLSShadow(t *testing.T, lab *testenv.Lab, port int, cert tls.Certificate, clientCA *testenv.CA) *tlsShadow {
	t.Helper()
	ln, err := lab.Listen(lab.ShadowNS, "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsShadow{done: make(chan error, 1)}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req := tlsRequest{path: r.URL.Path, host: r.Host, marker: r.Header.Get("X-Shadowtap-Replay"), sni: r.TLS.ServerName}
			if len(r.TLS.PeerCertificates) > 0 {
				req.clientCN = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			s.mu.Lock()
			s.reqs = append(s.reqs, req)
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s body=0\n", r.Method, r.RequestURI)
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientCA.Pool(),
		},
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError), // refused handshakes are part of the test
	}
	go func() { s.done <- s.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		s.srv.Close()
		if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("TLS shadow: %v", err)
		}
	})
	return s
}

func (s *tlsShadow) requests(prefix string) []tlsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tlsRequest
	for _, r := range s.reqs {
		if strings.HasPrefix(r.path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// TestReplayHTTPSShadow (issue 11): a shadow that speaks only TLS and
// requires a client certificate, behind a name (as a vhost-routing ingress
// would be). shadowtap trusts it through --ca-file, presents
// --client-cert, and sends --host as the server name; the mirrored requests
// are replayed over TLS, answered and compared. With a CA file that did not
// sign the shadow's certificate nothing reaches it; with
// --insecure-skip-verify it is reached and the start warns loudly.
func TestReplayHTTPSShadow(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	const name, port = "shadow.example.com", 8443
	ca, err := testenv.NewCA("lab shadow CA")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := testenv.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.IssueServer(name)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueClient("shadowtap-lab")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, strangerFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "stranger.pem")
	for file, data := range map[string][]byte{caFile: ca.PEM(), strangerFile: stranger.PEM()} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certFile, keyFile, err := client.WriteFiles(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	shadow := startTLSShadow(t, lab, port, serverCert.TLS, ca)
	target := "https://" + testenv.HostPort(lab.ShadowAddr4, port)
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)
	mtls := []string{"--client-cert", certFile, "--client-key", keyFile}
	const warning = "the shadow's identity is not checked"

	tests := []struct {
		name     string
		flags    []string
		answered bool // else every request fails for the target
		warn     bool
	}{
		{"ca-file and client certificate", append([]string{"--ca-file", caFile}, mtls...), true, false},
		{"ca-file of another CA", append([]string{"--ca-file", strangerFile}, mtls...), false, false},
		{"insecure-skip-verify", append([]string{"--insecure-skip-verify"}, mtls...), true, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startRun(t, lab, newPinRoot(t), append([]string{"--target", target, "--host", name}, tc.flags...)...)
			prefix := fmt.Sprintf("/tls%d/", i)
			const n = 3
			converse(t, lab, prod4,
				testenv.Request{Target: prefix + "a"},
				testenv.Request{Target: prefix + "b?q=1"},
				testenv.Request{Method: "HEAD", Target: prefix + "c"})
			m := waitEnded(p, n, target)
			m = p.waitMetrics("every answer handed to the comparison", func(m testenv.Metrics) bool {
				return m.Sum(verdict.MetricCompared)+m.Sum(verdict.MetricUncompared) >= n
			})
			out := p.out.String()
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
			checkIdentity(t, m, n, target)
			got := shadow.requests(prefix)
			if tc.answered {
				if r := m.Get(t, "shadowtap_replay_replayed_total", "target", target, "class", "2xx"); r != n {
					t.Errorf("replayed 2xx %v, want %v", r, n)
				}
				if c := m.Get(t, verdict.MetricCompared, "target", target); c != n {
					t.Errorf("compared %v exchanges, want %v", c, n)
				}
				if len(got) != n {
					t.Errorf("the TLS shadow answered %d requests, want %d", len(got), n)
				}
				for _, r := range got {
					if r.sni != name || r.host != name || r.clientCN != "shadowtap-lab" || r.marker != "1" {
						t.Errorf("%s: server name %q, Host %q, client certificate %q, marker %q; want %q, %q, shadowtap-lab, 1",
							r.path, r.sni, r.host, r.clientCN, r.marker, name, name)
					}
				}
			} else {
				if f := m.Get(t, "shadowtap_replay_failed_total", "target", target, "reason", "error"); f != n {
					t.Errorf("failed (error) %v, want %v: the shadow's certificate is not signed by --ca-file", f, n)
				}
				if len(got) != 0 {
					t.Errorf("the TLS shadow answered %d requests through an untrusted handshake", len(got))
				}
			}
			if w := strings.Contains(out, warning); w != tc.warn {
				t.Errorf("start-up warning %q logged: %v, want %v", warning, w, tc.warn)
			}
		})
	}
}

// TestReplayMultiply (issue 11): with --multiply 2 the shadow receives every
// replayed request twice, marked X-Shadowtap-Replay 1 and 2; the duplicates
// are counted apart, and the comparison sees each exchange once.
func TestReplayMultiply(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	target := shadowTarget(lab, shadowPort)
	p := startRun(t, lab, newPinRoot(t), "--target", target, "--multiply", "2")
	prod4 := testenv.HostPort(lab.ProdAddr4, prodPort)
	paths := []string{"/mul/a", "/mul/b?x=1", "/mul/c", "/mul/d"}
	var reqs []testenv.Request
	for _, path := range paths {
		reqs = append(reqs, testenv.Request{Target: path})
	}
	converse(t, lab, prod4, reqs...)
	n := float64(len(paths))
	m := p.waitMetrics("requests and their duplicates answered, every exchange compared", func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_replayed_total") >= n && m.Get(t, "shadowtap_replay_duplicates_replayed_total") >= n &&
			settled(t, m) && m.Sum(verdict.MetricCompared)+m.Sum(verdict.MetricUncompared) >= n
	})
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	checkIdentity(t, m, n, target)
	for name, want := range map[string]float64{
		"shadowtap_replay_replayed_total":            n,
		"shadowtap_replay_duplicates_total":          n,
		"shadowtap_replay_duplicates_replayed_total": n,
		"shadowtap_replay_duplicates_dropped_total":  0,
		"shadowtap_replay_duplicates_failed_total":   0,
		verdict.MetricCompared:                       n,
		verdict.MetricLegacyCompare:                  n, // one answer per exchange: the first copy's
	} {
		if got := m.Get(t, name, "target", target); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	markers := map[string][]string{}
	for _, ex := range shadow.Exchanges() {
		markers[ex.Target] = append(markers[ex.Target], ex.Header.Get("X-Shadowtap-Replay"))
	}
	for _, path := range paths {
		got := markers[path]
		slices.Sort(got)
		if !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("%s reached the shadow with markers %q, want once 1 and once 2", path, got)
		}
	}
	if len(markers) != len(paths) {
		t.Errorf("the shadow received %d distinct targets, want %d: %v", len(markers), len(paths), markers)
	}
}
