package xdp

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/event"
)

func TestConfigDefaults(t *testing.T) {
	ok := Config{Iface: "eth0", Ports: []uint16{8080}}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring of the error; "" = valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"no ports", func(c *Config) { c.Ports = nil }, "--ports"},
		{"port 0", func(c *Config) { c.Ports = []uint16{0} }, "--ports"},
		{"bad mode", func(c *Config) { c.Mode = "fast" }, "auto, native or generic"},
		{"generic mode", func(c *Config) { c.Mode = ModeGeneric }, ""},
		{"ring not a power of two", func(c *Config) { c.RingSize = 5000 }, "power of two"},
		{"ring below a page", func(c *Config) { c.RingSize = 2048 }, "power of two"},
		{"VNI above 24 bits", func(c *Config) { c.VNIs = []uint32{1 << 24} }, "24-bit"},
		{"largest VNI", func(c *Config) { c.VNIs = []uint32{1<<24 - 1} }, ""},
		{"too many VNIs", func(c *Config) { c.VNIs = make([]uint32, maxVNIs+1) }, "at most"},
		{"invalid prefix", func(c *Config) { c.Sources = []netip.Prefix{{}} }, "CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			got, err := c.withDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.VXLANPort != 4789 || got.PinRoot != "/sys/fs/bpf/shadowtap" || got.RingSize != 16<<20 || got.Mode == "" {
				t.Errorf("defaults not applied: %+v", got)
			}
		})
	}
}

func TestSourceKey(t *testing.T) {
	tests := []struct {
		prefix string
		bits   uint32
		family uint8
		addr   [16]byte
	}{
		{"10.0.0.0/8", 16, event.FamilyIPv4, [16]byte{10}},
		{"10.1.2.3/8", 16, event.FamilyIPv4, [16]byte{10}}, // masked
		{"203.0.113.7/32", 40, event.FamilyIPv4, [16]byte{203, 0, 113, 7}},
		{"0.0.0.0/0", 8, event.FamilyIPv4, [16]byte{}},
		{"fd00::/8", 16, event.FamilyIPv6, [16]byte{0xfd}},
		{"::/0", 8, event.FamilyIPv6, [16]byte{}},
		{"2001:db8::1/128", 136, event.FamilyIPv6, netip.MustParseAddr("2001:db8::1").As16()},
	}
	for _, tt := range tests {
		k := sourceKey(netip.MustParsePrefix(tt.prefix))
		if k.Prefixlen != tt.bits || k.Family != tt.family || k.Addr != tt.addr {
			t.Errorf("%s: key {%d %d %v}, want {%d %d %v}", tt.prefix, k.Prefixlen, k.Family, k.Addr, tt.bits, tt.family, tt.addr)
		}
	}
}

func TestWakeupBytes(t *testing.T) {
	for _, tt := range []struct{ ring, want int }{{4096, 1024}, {256 << 10, 64 << 10}, {16 << 20, 64 << 10}} {
		if got := wakeupBytes(tt.ring); got != uint32(tt.want) {
			t.Errorf("wakeupBytes(%d) = %d, want %d", tt.ring, got, tt.want)
		}
	}
}

func TestFormatCounters(t *testing.T) {
	var c event.Counters
	for o := event.Outcome(0); o <= event.LostRingbuf; o++ {
		c.Outcomes[o] = uint64(o + 1) // 1..9
	}
	c.Truncated, c.Bytes = 77, 123456
	var buf bytes.Buffer
	if err := FormatCounters(&buf, c); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"counter value"}
	for o := event.Outcome(0); o <= event.LostRingbuf; o++ {
		want = append(want, o.String()+" "+string(rune('0'+o+1)))
	}
	want = append(want, "truncated 77", "bytes 123456", "packets 45")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[i] {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
}
