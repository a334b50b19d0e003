package pipeline

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestValidate: every configuration that cannot work, or that a flag's
// nonsense value produces, is refused with one line naming the flag; the
// valid ones pass.
func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Defaults()
		c.Iface = "eth0"
		c.Ports = []uint16{8080}
		c.VNIs = []uint32{42}
		c.Targets = []string{"http://shadow.internal:8080"}
		return c
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // in the error; "" = valid
	}{
		{"defaults with the required flags", func(*Config) {}, ""},
		{"source instead of vni", func(c *Config) { c.VNIs = nil; c.Sources = mustSources(t, "10.0.0.0/16") }, ""},
		{"allow any source", func(c *Config) { c.VNIs = nil; c.AllowAnySource = true }, ""},
		{"no allowlist", func(c *Config) { c.VNIs = nil }, "--allow-any-source"},

		{"unknown method", func(c *Config) { c.Methods = []string{"GET", "FOO"} }, `--methods "FOO"`},
		{"method not a token", func(c *Config) { c.Methods = []string{"GE T"} }, `--methods "GE T"`},
		{"empty method", func(c *Config) { c.Methods = []string{""} }, "--methods"},
		{"CONNECT", func(c *Config) { c.Methods = []string{"CONNECT"} }, "CONNECT"},
		{"lower-case method", func(c *Config) { c.Methods = []string{"get", "head"} }, ""},
		{"writing methods (a warning, not an error)", func(c *Config) { c.Methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"} }, ""},
		{"TRACE", func(c *Config) { c.Methods = []string{"TRACE"} }, ""},

		{"target port 0", func(c *Config) { c.Targets = []string{"http://127.0.0.1:0/"} }, "port"},
		{"target port above 65535", func(c *Config) { c.Targets = []string{"http://127.0.0.1:99999/"} }, "99999"},
		{"target empty port", func(c *Config) { c.Targets = []string{"http://127.0.0.1:/"} }, "port"},
		{"target port 65535", func(c *Config) { c.Targets = []string{"http://127.0.0.1:65535/"} }, ""},

		{"max body bytes 0", func(c *Config) { c.MaxBodyBytes = 0 }, "--max-body-bytes"},
		{"max body bytes negative", func(c *Config) { c.MaxBodyBytes = -1 }, "--max-body-bytes"},
		{"shards negative", func(c *Config) { c.Shards = -3 }, "--shards"},
		{"shards too many for memory", func(c *Config) { c.Shards = 4096 }, "MiB"},
		{"shards at the limit", func(c *Config) { c.Shards = MaxShards }, ""},
		{"max conns 0", func(c *Config) { c.MaxConns = 0 }, "--max-conns"},
		{"max conns negative", func(c *Config) { c.MaxConns = -5 }, "--max-conns"},
		{"idle timeout negative", func(c *Config) { c.IdleTimeout = -time.Second }, "--idle-timeout"},
		{"idle timeout 0", func(c *Config) { c.IdleTimeout = 0 }, "--idle-timeout"},
		{"sample NaN", func(c *Config) { c.Sample = math.NaN() }, "--sample"},
		{"sample +Inf", func(c *Config) { c.Sample = math.Inf(1) }, "--sample"},
		{"sample -Inf", func(c *Config) { c.Sample = math.Inf(-1) }, "--sample"},
		{"sample 0", func(c *Config) { c.Sample = 0 }, ""},
		{"max rps NaN", func(c *Config) { c.MaxRPS = math.NaN() }, "--max-rps"},
		{"max rps negative", func(c *Config) { c.MaxRPS = -1 }, "--max-rps"},
		{"max rps Inf", func(c *Config) { c.MaxRPS = math.Inf(1) }, "--max-rps"},
		{"sockets negative", func(c *Config) { c.Sockets = -1 }, "--sockets"},
		{"max response header bytes 0", func(c *Config) { c.MaxResponseHeaderBytes = 0 }, "--max-response-header-bytes"},
		{"pipeline 64", func(c *Config) { c.Pipeline = 64 }, ""},
		{"pipeline 0", func(c *Config) { c.Pipeline = 0 }, "--pipeline 0"},
		{"pipeline 65", func(c *Config) { c.Pipeline = 65 }, "--pipeline 65"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want an error naming %q", tc.want)
			case err != nil && (!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n")):
				t.Fatalf("error %q: want one line naming %q", err, tc.want)
			}
		})
	}
}

// TestWarnings: replaying a method that writes is allowed but warned about,
// saying why the default leaves it out; the default warns about nothing.
func TestWarnings(t *testing.T) {
	c := Defaults()
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("defaults warn: %q", w)
	}
	c.Methods = []string{"GET", "post", "DELETE"}
	ws := c.Warnings()
	if len(ws) != 2 {
		t.Fatalf("warnings %q: want one for POST, one for DELETE", ws)
	}
	for i, m := range []string{"POST", "DELETE"} {
		if !strings.Contains(ws[i], m) || !strings.Contains(ws[i], "write") {
			t.Errorf("warning %q does not say that %s writes", ws[i], m)
		}
	}
}

func mustSources(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	p, err := ParseSources(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPipelineReachesReplay: --pipeline is what the replay stage is told.
func TestPipelineReachesReplay(t *testing.T) {
	for _, n := range []int{1, 8} {
		c := Defaults()
		c.Targets = []string{"http://shadow.internal:8080"}
		c.Pipeline = n
		rc, err := replayConfig(c)
		if err != nil || rc.Pipeline != n {
			t.Errorf("--pipeline %d: replay Pipeline %d, err %v", n, rc.Pipeline, err)
		}
	}
}
