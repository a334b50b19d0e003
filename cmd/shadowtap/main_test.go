package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// mainEnv makes the test binary act as the shadowtap command: the lab tests
// start it (os.Args[0]) with this variable set, so they test exactly what
// main does, flags, signals and exit status included.
const mainEnv = "SHADOWTAP_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		// The test framework's flags are not ours: os.Args[1:] is the
		// shadowtap command line.
		main()
		os.Exit(0) // main always exits; this is only a guard
	}
	os.Exit(m.Run())
}

// TestBadConfiguration checks that a configuration that cannot work is
// refused before anything is attached: exit status 2 and one line on stderr
// that names the problem. None of these need root: they must fail before the
// first privileged call.
func TestBadConfiguration(t *testing.T) {
	// A valid command line; each case changes one thing. --metrics-addr is
	// off so that a case wrongly accepted fails at attach, never listens.
	base := []string{"run", "--iface", "stx-none0", "--ports", "8080", "--vni", "42", "--metrics-addr", "", "--no-systemd"}
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"target not a URL", []string{"--target", "http://%zz"}, "http://%zz"},
		{"target scheme", []string{"--target", "ftp://shadow:21"}, "ftp://shadow:21"},
		{"target no host", []string{"--target", "http://"}, "no host"},
		{"target bare host", []string{"--target", "shadow.internal:8080"}, "shadow.internal:8080"},
		{"bad exclude regexp", []string{"--target", "http://shadow", "--exclude-path", "^/(admin"}, "^/(admin"},
		{"bad include regexp", []string{"--target", "http://shadow", "--include-path", "[a-"}, "[a-"},
		{"port above range", []string{"--ports", "70000"}, "70000"},
		{"port zero", []string{"--ports", "0"}, `"0"`},
		{"port not a number", []string{"--ports", "http"}, "http"},
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"misspelt flag", []string{"--targets", "http://shadow"}, "targets"},
		{"flag value not a duration", []string{"--timeout", "soon"}, "soon"},
		{"vni beyond 24 bits", []string{"--vni", "16777216"}, "16777216"},
		{"source not a CIDR", []string{"--source", "10.0.0.0/33"}, "10.0.0.0/33"},
		{"sample above 100", []string{"--sample", "101"}, "101"},
		{"sample key", []string{"--target", "http://shadow", "--sample-key", "ip"}, "ip"},
		{"set-header without colon", []string{"--target", "http://shadow", "--set-header", "X-Env staging"}, "X-Env staging"},
		{"log format", []string{"--log-format", "xml"}, "xml"},
		{"xdp mode", []string{"--xdp-mode", "fast"}, "fast"},
		{"capture source", []string{"--capture", "afpacket"}, "afpacket"},
		{"unexpected argument", []string{"eth0"}, "eth0"},
		{"no ports", nil, "--ports"},
		{"no iface", nil, "--iface"},
		// Without an allowlist anyone who can reach the VXLAN port injects
		// requests into the shadow fleet.
		{"no vni nor source", nil, "--allow-any-source"},
		{"no vni nor source names --vni", nil, "--vni"},
		{"no vni nor source names --source", nil, "--source"},
		{"no vni nor source, socket", []string{"--capture", "socket", "--listen-addr", "192.0.2.1"}, "--allow-any-source"},
		{"no vni nor source, pcap", []string{"--capture", "pcap", "--pcap-file", "/nonexistent/x.pcap"}, "--allow-any-source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), base...), tc.args...)
			switch tc.name {
			case "no ports":
				args = without(args, "--ports", "8080")
			case "no iface":
				args = without(args, "--iface", "stx-none0")
			}
			if strings.HasPrefix(tc.name, "no vni nor source") {
				args = without(args, "--vni", "42")
			}
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			out := stderr.String()
			if code != 2 {
				t.Errorf("shadowtap %s: exit status %d, want 2; stderr:\n%s", strings.Join(args, " "), code, out)
			}
			if n := strings.Count(out, "\n"); n != 1 || !strings.HasSuffix(out, "\n") {
				t.Errorf("stderr has %d lines, want exactly one:\n%s", n, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("stderr %q does not name %q", out, tc.want)
			}
			if !strings.HasPrefix(out, "shadowtap run: ") {
				t.Errorf("stderr %q: want it to start with \"shadowtap run: \"", out)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

// TestUnknownCommand checks the top level: an unknown command or none at all
// is a usage error (status 2) that shows how to get help.
func TestUnknownCommand(t *testing.T) {
	for _, args := range [][]string{nil, {"replay"}, {"--iface", "eth0"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("shadowtap %q: exit status %d, want 2", args, code)
		}
		if !strings.Contains(stderr.String(), "shadowtap run") {
			t.Errorf("shadowtap %q: stderr %q does not show the usage", args, stderr.String())
		}
	}
}

// without returns args without the flag and value pair.
func without(args []string, flag, value string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag && i+1 < len(args) && args[i+1] == value {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
