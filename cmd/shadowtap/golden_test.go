package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the CLI golden files in testdata/")

// TestCLIGolden pins what users script against and read: the help of every
// command (flag names, defaults, wording) and the one-line errors, with their
// exit statuses. A changed flag shows up here as a diff to review; rewrite
// the files with `go test ./cmd/shadowtap -run TestCLIGolden -update`.
func TestCLIGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"help", []string{"--help"}},
		{"run-help", []string{"run", "--help"}},
		{"stats-help", []string{"stats", "--help"}},
		{"verdict-help", []string{"verdict", "--help"}},
		{"report-help", []string{"report", "--help"}},
		{"no-command", nil},
		{"unknown-command", []string{"replay"}},
		{"unknown-flag", []string{"run", "--bogus"}},
		{"run-no-allowlist", []string{"run", "--iface", "eth0", "--ports", "8080"}},
		{"run-no-ports", []string{"run", "--iface", "eth0", "--vni", "42"}},
		{"verdict-no-source", []string{"verdict"}},
		{"stats-no-iface", []string{"stats"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			var got strings.Builder
			got.WriteString("$ shadowtap " + strings.Join(tc.args, " ") + "\n")
			got.WriteString("exit status: " + itoa(code) + "\n")
			got.WriteString("--- stdout\n" + stdout.String())
			got.WriteString("--- stderr\n" + stderr.String())
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with -update)", err)
			}
			if got.String() != string(want) {
				t.Errorf("shadowtap %q differs from %s (review, then -update):\n--- got\n%s\n--- want\n%s", tc.args, path, got.String(), want)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
