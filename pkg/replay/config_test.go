package replay

import (
	"math"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.Targets = []*url.URL{mustURL(t, "http://shadow:8080/base")}
		return c
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero optional fields", func(c *Config) { *c = Config{Targets: c.Targets} }, ""},
		{"https target", func(c *Config) { c.Targets = []*url.URL{mustURL(t, "https://shadow")} }, ""},
		{"no target", func(c *Config) { c.Targets = nil }, "no target"},
		{"bad scheme", func(c *Config) { c.Targets = []*url.URL{mustURL(t, "ftp://shadow")} }, "scheme must be http or https"},
		{"no scheme", func(c *Config) { c.Targets = []*url.URL{mustURL(t, "shadow:8080")} }, "scheme"},
		{"no host", func(c *Config) { c.Targets = []*url.URL{mustURL(t, "http:///x")} }, "no host"},
		{"user info", func(c *Config) { c.Targets = []*url.URL{mustURL(t, "http://u:secret@shadow")} }, "user info"},
		{"query", func(c *Config) { c.Targets = []*url.URL{mustURL(t, "http://shadow/?a=1")} }, "query"},
		{"duplicate", func(c *Config) { c.Targets = append(c.Targets, mustURL(t, "http://shadow:8080/base")) }, "twice"},
		{"bad method", func(c *Config) { c.Methods = []string{"GE T"} }, "method"},
		{"percent high", func(c *Config) { c.SamplePercent = 100.5 }, "want 0 to 100"},
		{"percent negative", func(c *Config) { c.SamplePercent = -1 }, "want 0 to 100"},
		{"percent NaN", func(c *Config) { c.SamplePercent = math.NaN() }, "want 0 to 100"},
		{"bad sample key", func(c *Config) { c.SampleKey = "ip" }, "sample key"},
		{"negative rps", func(c *Config) { c.MaxRPS = -1 }, "max rps"},
		{"negative inflight", func(c *Config) { c.MaxInflight = -1 }, "max inflight"},
		{"negative queue", func(c *Config) { c.Queue = -1 }, "queue"},
		{"negative timeout", func(c *Config) { c.Timeout = -1 }, "timeout"},
		{"nil include", func(c *Config) { c.IncludePath = []*regexp.Regexp{nil} }, "include path"},
		{"set host", func(c *Config) { c.SetHeaders = []HeaderKV{{"host", "x"}} }, "host override"},
		{"set content-length", func(c *Config) { c.SetHeaders = []HeaderKV{{"Content-Length", "1"}} }, "cannot be overridden"},
		{"set hop-by-hop", func(c *Config) { c.SetHeaders = []HeaderKV{{"Connection", "close"}} }, "hop-by-hop"},
		{"set and drop", func(c *Config) {
			c.SetHeaders = []HeaderKV{{"X-A", "1"}}
			c.DropHeaders = []string{"x-a"}
		}, "both set and dropped"},
		{"bad drop name", func(c *Config) { c.DropHeaders = []string{"X A"} }, "drop header"},
		{"bad host override", func(c *Config) { c.Host = "a b" }, "host"},
		{"pipeline off", func(c *Config) { c.Pipeline = 1 }, ""},
		{"pipeline max", func(c *Config) { c.Pipeline = MaxPipeline }, ""},
		{"pipeline too deep", func(c *Config) { c.Pipeline = MaxPipeline + 1 }, "pipeline 65: want 1"},
		{"pipeline negative", func(c *Config) { c.Pipeline = -1 }, "pipeline -1: want 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
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
				t.Fatalf("Validate: error is more than one line: %q", err)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("Validate: error leaks the password: %q", err)
			}
			if _, nerr := New(c, nil); (nerr == nil) != (err == nil) {
				t.Fatalf("New disagrees with Validate: %v vs %v", nerr, err)
			}
		})
	}
}

func TestParseSampleKey(t *testing.T) {
	tests := []struct {
		in      string
		want    SampleKey
		wantErr bool
	}{
		{"", SampleKey{Kind: SampleXFF}, false},
		{"xff", SampleKey{Kind: SampleXFF}, false},
		{"client-ip", SampleKey{Kind: SampleClientIP}, false},
		{"header:X-User-Id", SampleKey{Kind: SampleHeader, Name: "X-User-Id"}, false},
		{"cookie:session", SampleKey{Kind: SampleCookie, Name: "session"}, false},
		{"header:", SampleKey{}, true},
		{"header:a b", SampleKey{}, true},
		{"cookie:a;b", SampleKey{}, true},
		{"query:id", SampleKey{}, true},
		{"client", SampleKey{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSampleKey(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSampleKey(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && tt.in != "" {
			if s := got.String(); s != tt.in {
				t.Errorf("SampleKey.String() = %q, want %q", s, tt.in)
			}
		}
	}
}

func TestParseHeaderKV(t *testing.T) {
	tests := []struct {
		in      string
		want    HeaderKV
		wantErr bool
	}{
		{"X-Env: shadow", HeaderKV{"X-Env", "shadow"}, false},
		{"X-Env:shadow", HeaderKV{"X-Env", "shadow"}, false},
		{"X-Url: http://a:b/c", HeaderKV{"X-Url", "http://a:b/c"}, false},
		{"X-Empty:", HeaderKV{"X-Empty", ""}, false},
		{"NoColon", HeaderKV{}, true},
		{": value", HeaderKV{}, true},
		{"Bad Name: v", HeaderKV{}, true},
		{"X-A: a\r\nX-B: b", HeaderKV{}, true},
		{"Host: other", HeaderKV{}, true},
		{"Transfer-Encoding: chunked", HeaderKV{}, true},
	}
	for _, tt := range tests {
		got, err := ParseHeaderKV(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseHeaderKV(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
