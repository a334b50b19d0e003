package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/testenv"
)

// TestShadowTLSFlags: the HTTPS-shadow and --multiply flags are checked at
// start, bad files and combinations refused with one line naming the flag;
// good ones reach the replay stage's configuration.
func TestShadowTLSFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, err := testenv.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueClient("shadowtap")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueClient("other")
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", append(append([]byte("# bundle\n"), ca.PEM()...), client.CertPEM...))
	certFile, keyFile, err := client.WriteFiles(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	otherKey := write("other.key", other.KeyPEM)
	keyOnly := write("key-only.pem", client.KeyPEM)
	broken := write("broken.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	empty := write("empty.pem", nil)

	const target = "https://shadow.test:8443"
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" = valid
	}{
		{"CA file", func(c *Config) { c.CAFile = caFile }, ""},
		{"mTLS", func(c *Config) { c.CAFile, c.ClientCert, c.ClientKey = caFile, certFile, keyFile }, ""},
		{"insecure", func(c *Config) { c.InsecureSkipVerify = true }, ""},
		{"https baseline only", func(c *Config) {
			c.Targets, c.Baseline, c.CAFile = []string{"http://shadow:8080"}, target, caFile
		}, ""},
		{"missing CA file", func(c *Config) { c.CAFile = filepath.Join(dir, "nope.pem") }, "--ca-file " + filepath.Join(dir, "nope.pem") + ": open"},
		{"empty CA file", func(c *Config) { c.CAFile = empty }, "no PEM CERTIFICATE block"},
		{"key instead of CA", func(c *Config) { c.CAFile = keyOnly }, "no PEM CERTIFICATE block"},
		{"broken certificate", func(c *Config) { c.CAFile = broken }, "--ca-file " + broken + ": certificate 1:"},
		{"cert without key", func(c *Config) { c.ClientCert = certFile }, "give both or neither"},
		{"key without cert", func(c *Config) { c.ClientKey = keyFile }, "give both or neither"},
		{"key does not match", func(c *Config) { c.ClientCert, c.ClientKey = certFile, otherKey }, "--client-cert " + certFile + ", --client-key " + otherKey},
		{"cert file missing", func(c *Config) { c.ClientCert, c.ClientKey = filepath.Join(dir, "x.crt"), keyFile }, "--client-cert"},
		{"insecure and CA", func(c *Config) { c.InsecureSkipVerify, c.CAFile = true, caFile }, "contradict"},
		{"no https target", func(c *Config) { c.Targets, c.CAFile = []string{"http://shadow:8080"}, caFile }, "apply to https:// targets"},
		{"insecure without https target", func(c *Config) { c.Targets, c.InsecureSkipVerify = []string{"http://shadow:8080"}, true }, "apply to https:// targets"},

		{"multiply", func(c *Config) { c.Multiply = []string{"2.5"} }, ""},
		{"multiply per target", func(c *Config) { c.Multiply = []string{"0.5", target + "=3"} }, ""},
		{"multiply zero", func(c *Config) { c.Multiply = []string{"0"} }, "want a factor F with 0 < F <= 10"},
		{"multiply too large", func(c *Config) { c.Multiply = []string{"10.5"} }, "0 < F <= 10"},
		{"multiply NaN", func(c *Config) { c.Multiply = []string{"NaN"} }, "0 < F <= 10"},
		{"multiply percent", func(c *Config) { c.Multiply = []string{"200%"} }, "0 < F <= 10"},
		{"multiply twice", func(c *Config) { c.Multiply = []string{"2", "3"} }, "already given"},
		{"multiply unknown target", func(c *Config) { c.Multiply = []string{"https://elsewhere=2"} }, "not the URL of a --target"},
		{"multiply same target twice", func(c *Config) { c.Multiply = []string{target + "=2", target + "=3"} }, "already has a factor"},
		{"multiply without target", func(c *Config) { c.Targets, c.Multiply = nil, []string{"2"} }, "--multiply needs a --target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			c.Iface, c.Ports, c.VNIs, c.Targets = "eth0", []uint16{8080}, []uint32{7}, []string{target}
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate: no error, want %q", tt.wantErr)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("Validate: more than one line: %q", err)
			}
		})
	}
}

// TestShadowTLSConfig: the files become the replay stage's roots (instead
// of the system pool) and client certificate, and --multiply its factors.
func TestShadowTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := testenv.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueClient("shadowtap")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := client.WriteFiles(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.Iface, c.Ports, c.VNIs = "eth0", []uint16{8080}, []uint32{7}
	c.Targets = []string{"https://a.test", "http://b.test:8080"}
	c.Baseline = "http://old.test"
	c.CAFile, c.ClientCert, c.ClientKey = caFile, certFile, keyFile
	c.Multiply = []string{"http://b.test:8080=0.5", "2", "http://old.test=1.5"}
	rc, err := replayConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if rc.TLS == nil || rc.TLS.RootCAs == nil || !rc.TLS.RootCAs.Equal(ca.Pool()) || len(rc.TLS.Certificates) != 1 || rc.TLS.InsecureSkipVerify {
		t.Errorf("TLS config %+v: want only the test CA as roots and the client certificate", rc.TLS)
	}
	if rc.Multiply != 2 || len(rc.TargetMultiply) != 2 || rc.TargetMultiply["http://b.test:8080"] != 0.5 || rc.TargetMultiply["http://old.test"] != 1.5 {
		t.Errorf("multiply %v, per target %v", rc.Multiply, rc.TargetMultiply)
	}
	c.CAFile, c.ClientCert, c.ClientKey, c.Multiply = "", "", "", nil
	if rc, err = replayConfig(c); err != nil || rc.TLS != nil || rc.Multiply != 1 {
		t.Errorf("no flags: TLS %+v, multiply %v, %v; want nil (system roots), 1", rc.TLS, rc.Multiply, err)
	}
}
