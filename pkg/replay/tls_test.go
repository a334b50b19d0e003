package replay

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/shadowtap/shadowtap/testenv"
)

// tlsShadow is an HTTPS shadow that records the server name each client
// hello asked for and the requests it answered, with the client
// certificate's common name.
type tlsShadow struct {
	*httptest.Server
	mu       sync.Mutex
	sni      []string
	hosts    []string
	clientCN []string
}

func newTLSShadow(t *testing.T, cert tls.Certificate, clientCA *testenv.CA) *tlsShadow {
	t.Helper()
	s := &tlsShadow{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.clientCN = append(s.clientCN, cn)
		s.mu.Unlock()
		w.Write([]byte("secure"))
	}))
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.sni = append(s.sni, hello.ServerName)
			s.mu.Unlock()
			return nil, nil
		},
	}
	if clientCA != nil {
		s.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		s.TLS.ClientCAs = clientCA.Pool()
	}
	s.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError) // refused handshakes are the point
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsShadow) seen() (sni, hosts, clientCN []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sni...), append([]string(nil), s.hosts...), append([]string(nil), s.clientCN...)
}

// TestHTTPSShadows (issue 11): an https target is trusted through the
// configured roots (the CA file) only, a client certificate is presented
// when the shadow requires one, the server name (SNI, and the name the
// certificate must carry) follows the Host override, and skipping
// verification is logged loudly.
func TestHTTPSShadows(t *testing.T) {
	ca, err := testenv.NewCA("shadow CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testenv.NewCA("someone else")
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := testenv.NewCA("client CA")
	if err != nil {
		t.Fatal(err)
	}
	shadowCert, err := ca.IssueServer("shadow.test")
	if err != nil {
		t.Fatal(err)
	}
	shopCert, err := ca.IssueServer("shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, err := other.IssueServer("shadow.test")
	if err != nil {
		t.Fatal(err)
	}
	client, err := clientCA.IssueClient("shadowtap-client")
	if err != nil {
		t.Fatal(err)
	}

	const warning = "identity is not checked"
	tests := []struct {
		name       string
		server     *testenv.Issued
		requireCA  *testenv.CA // the shadow requires a client certificate from it
		tls        *tls.Config
		host       string // Config.Host
		wantOK     bool
		wantSNI    string
		wantHost   string
		wantClient string
		wantWarn   bool
	}{
		{name: "CA file trusts the shadow", server: shadowCert, tls: &tls.Config{RootCAs: ca.Pool()},
			wantOK: true, wantSNI: "shadow.test", wantHost: "shop.example.com"},
		{name: "SNI follows the Host override", server: shopCert, tls: &tls.Config{RootCAs: ca.Pool()}, host: "shop.example.com:443",
			wantOK: true, wantSNI: "shop.example.com", wantHost: "shop.example.com:443"},
		{name: "certificate for the URL's host but Host override set", server: shadowCert, tls: &tls.Config{RootCAs: ca.Pool()}, host: "shop.example.com",
			wantSNI: "shop.example.com"},
		{name: "a certificate from another CA is refused", server: strangerCert, tls: &tls.Config{RootCAs: ca.Pool()},
			wantSNI: "shadow.test"},
		{name: "system roots do not know a private CA", server: shadowCert,
			wantSNI: "shadow.test"},
		{name: "client certificate required, none given", server: shadowCert, requireCA: clientCA, tls: &tls.Config{RootCAs: ca.Pool()},
			wantSNI: "shadow.test"},
		{name: "client certificate presented", server: shadowCert, requireCA: clientCA,
			tls:    &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}},
			wantOK: true, wantSNI: "shadow.test", wantHost: "shop.example.com", wantClient: "shadowtap-client"},
		{name: "insecure skip verify", server: strangerCert, tls: &tls.Config{InsecureSkipVerify: true},
			wantOK: true, wantSNI: "shadow.test", wantHost: "shop.example.com", wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTLSShadow(t, tt.server.TLS, tt.requireCA)
			var buf strings.Builder
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			u := mustURL(t, "https://shadow.test:"+mustURL(t, srv.URL).Port())
			cfg := testConfig(u)
			cfg.TLS, cfg.Host = tt.tls, tt.host
			r, err := New(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			r.targets[0].addr = srv.Listener.Addr().String() // shadow.test resolves nowhere
			runErr := make(chan error, 1)
			go func() { runErr <- r.Run(t.Context()) }()
			r.Request(get(t, "/"))
			if err := r.Drain(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := <-runErr; err != nil {
				t.Fatal(err)
			}
			s := r.Stats().Snapshot()
			ts := s.Targets[0]
			sni, hosts, cns := srv.seen()
			if tt.wantOK {
				if ts.Replayed[Class2xx] != 1 || len(hosts) != 1 {
					t.Fatalf("replayed %d, shadow answered %d; want 1, 1 (%+v)", ts.Replayed[Class2xx], len(hosts), ts)
				}
				if hosts[0] != tt.wantHost || cns[0] != tt.wantClient {
					t.Errorf("shadow saw Host %q, client certificate %q; want %q, %q", hosts[0], cns[0], tt.wantHost, tt.wantClient)
				}
			} else if ts.Failed() != 1 || len(hosts) != 0 {
				t.Errorf("failed %d, shadow answered %d; want 1, 0 (%+v)", ts.Failed(), len(hosts), ts)
			}
			if len(sni) == 0 || sni[0] != tt.wantSNI {
				t.Errorf("client hellos asked for %q, want %q", sni, tt.wantSNI)
			}
			if err := s.Check(); err != nil {
				t.Error(err)
			}
			mu.Lock()
			out := buf.String()
			mu.Unlock()
			if got := strings.Contains(out, warning) && strings.Contains(out, "level=WARN"); got != tt.wantWarn {
				t.Errorf("warning %q logged: %v, want %v:\n%s", warning, got, tt.wantWarn, out)
			}
		})
	}
}

// TestServerName: the TLS server name is the Host override's host name
// (without port or IPv6 brackets), else the URL's host.
func TestServerName(t *testing.T) {
	tests := []struct{ host, url, want string }{
		{"", "https://shadow.test:8443/base", "shadow.test"},
		{"", "https://[2001:db8::1]:8443", "2001:db8::1"},
		{"shop.example.com", "https://10.0.0.1", "shop.example.com"},
		{"shop.example.com:8443", "https://10.0.0.1", "shop.example.com"},
		{"[2001:db8::2]:443", "https://10.0.0.1", "2001:db8::2"},
		{"[2001:db8::2]", "https://10.0.0.1", "2001:db8::2"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := serverName(tt.host, u); got != tt.want {
			t.Errorf("serverName(%q, %s) = %q, want %q", tt.host, tt.url, got, tt.want)
		}
	}
}
