package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/buildinfo"
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
		// Nonsense values are refused, never silently defaulted.
		{"unknown method", []string{"--methods", "GET,FOO"}, "FOO"},
		{"target port above range", []string{"--target", "http://127.0.0.1:99999/"}, "99999"},
		{"target port zero", []string{"--target", "http://127.0.0.1:0/"}, "port"},
		{"max body bytes zero", []string{"--max-body-bytes", "0"}, "--max-body-bytes"},
		{"shards negative", []string{"--shards", "-3"}, "--shards"},
		{"shards zero", []string{"--shards", "0"}, "--shards"},
		{"shards beyond memory", []string{"--shards", "4096"}, "MiB"},
		{"max conns negative", []string{"--max-conns", "-5"}, "--max-conns"},
		{"idle timeout negative", []string{"--idle-timeout", "-1s"}, "--idle-timeout"},
		{"sample NaN", []string{"--sample", "NaN"}, "--sample"},
		{"sample Inf", []string{"--sample", "Inf"}, "--sample"},
		{"max rps NaN", []string{"--max-rps", "NaN"}, "--max-rps"},
		{"max response header bytes", []string{"--max-response-header-bytes", "0"}, "--max-response-header-bytes"},
		{"pipeline zero", []string{"--pipeline", "0"}, "--pipeline 0"},
		{"pipeline beyond 64", []string{"--pipeline", "65"}, "--pipeline 65"},
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

// TestWritingMethodsWarn: --methods with a method that writes starts (the
// user may have an isolated shadow) but logs a warning saying why the
// default leaves it out.
func TestWritingMethodsWarn(t *testing.T) {
	args := []string{"run", "--iface", "stx-none0", "--ports", "8080", "--vni", "42", "--metrics-addr", "", "--no-systemd",
		"--methods", "GET,POST,DELETE"}
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	out := stderr.String()
	if code != 1 || !strings.Contains(out, "no network interface") {
		t.Fatalf("exit status %d, want 1 at the missing interface (the flags are valid); stderr:\n%s", code, out)
	}
	for _, m := range []string{"POST", "DELETE"} {
		if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "includes "+m+": a method that writes") {
			t.Errorf("no warning about %s:\n%s", m, out)
		}
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
		if out := stderr.String(); !strings.Contains(out, "Available Commands") || !strings.Contains(out, "\n  run ") {
			t.Errorf("shadowtap %q: stderr %q does not show the usage", args, out)
		}
		if stdout.Len() > 0 {
			t.Errorf("shadowtap %q: a usage error wrote to stdout: %q", args, stdout.String())
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

// TestHelp: --help (and `help CMD`) prints on stdout and exits 0 for the
// top level and every subcommand, and lists the flags a user looks for.
func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"run", "stats", "verdict", "report", "version", "completion"}},
		{[]string{"help", "run"}, []string{"--iface", "--vni", "--log-level", "--pcap-speed"}},
		{[]string{"run", "--help"}, []string{"--target", "--baseline", "1x (as recorded), a multiple such as 2x or 0.5x, or max"}},
		{[]string{"stats", "--help"}, []string{"--iface string", "interface a running 'shadowtap run' is attached to"}},
		{[]string{"verdict", "--help"}, []string{"--max-diff-rate", "--prometheus"}},
		{[]string{"report", "--help"}, []string{"--html", "--diff-log"}},
		{[]string{"version", "--help"}, []string{"BPF object"}},
		{[]string{"completion", "--help"}, []string{"bash", "zsh"}},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
			t.Errorf("shadowtap %q: exit status %d, stderr %q; want 0 and nothing on stderr", tc.args, code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("shadowtap %q: help lacks %q:\n%s", tc.args, w, stdout.String())
			}
		}
	}
}

// TestVersion: `shadowtap --version` is one line, `shadowtap version` the
// same facts one per line; both name the BPF object's hash.
func TestVersion(t *testing.T) {
	info := buildinfo.Read()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("shadowtap %q: exit status %d: %s", args, code, stderr.String())
		}
		for _, w := range []string{info.Version, info.Commit, runtime.Version(), info.BPFObject} {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("shadowtap %q: %q lacks %q", args, stdout.String(), w)
			}
		}
	}
	var stdout bytes.Buffer
	run([]string{"--version"}, &stdout, io.Discard)
	if strings.Count(stdout.String(), "\n") != 1 {
		t.Errorf("--version printed %q, want one line", stdout.String())
	}
}

// TestCompletion: the scripts a shell loads name the subcommands and flags.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"completion", shell}, &stdout, &stderr); code != 0 {
			t.Fatalf("completion %s: exit status %d: %s", shell, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "shadowtap") || stdout.Len() < 1000 {
			t.Errorf("completion %s: %d bytes, no shadowtap function", shell, stdout.Len())
		}
	}
	// What the scripts ask the binary at a prompt: flags of run.
	var stdout bytes.Buffer
	run([]string{"__complete", "run", "--log-"}, &stdout, io.Discard)
	for _, w := range []string{"--log-format", "--log-level", "--log-interval"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("completing `run --log-`: %q lacks %s", stdout.String(), w)
		}
	}
}

// TestLogging: --log-level is checked, and with --log-format json the error
// that ends the run is a JSON log line (nothing else on stderr) whose
// durations are strings.
func TestLogging(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"run", "--ports", "8080", "--iface", "lo", "--vni", "1", "--log-level", "loud"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--log-level") {
		t.Errorf("--log-level loud: exit status %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	code := run([]string{"run", "--ports", "8080", "--iface", "lo", "--log-format", "json", "--drain-timeout", "-1s"}, &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	var rec map[string]any
	if code != 2 || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil || rec["level"] != "ERROR" || rec["err"] == nil {
		t.Errorf("json: exit status %d, stderr %q; want 2 and one JSON error line", code, stderr.String())
	}
	var buf bytes.Buffer
	log, err := newLogger("json", "debug", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("x", "took", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"took":"1.5s"`) {
		t.Errorf("duration in a JSON log line: %s, want \"1.5s\"", buf.String())
	}
}
