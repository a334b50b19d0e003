package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadCompareFlags: the comparison flags are checked at start like the
// others: exit status 2 and one line naming the flag or the value.
func TestBadCompareFlags(t *testing.T) {
	base := []string{"run", "--iface", "stx-none0", "--ports", "8080", "--vni", "42", "--metrics-addr", "", "--no-systemd", "--target", "http://shadow"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"baseline scheme", []string{"--baseline", "ftp://old"}, "--baseline"},
		{"baseline is a target", []string{"--baseline", "http://shadow"}, "also a target"},
		{"replay delay negative", []string{"--replay-delay", "-1s"}, "--replay-delay"},
		{"ignore header not a name", []string{"--ignore-header", "X Bad"}, "X Bad"},
		{"redact header not a name", []string{"--redact-header", "a:b"}, "a:b"},
		{"json path without $", []string{"--ignore-json-path", "items.price"}, "items.price"},
		{"json path route not a path", []string{"--ignore-json-path", "users=$.x"}, "users=$.x"},
		{"route placeholder not a segment", []string{"--route", "/users/id{id}"}, "/users/id{id}"},
		{"route not a path", []string{"--route", "users/{id}"}, "users/{id}"},
		{"max routes zero", []string{"--max-routes", "0"}, "--max-routes"},
		{"diff log examples zero", []string{"--diff-log-examples", "0"}, "--diff-log-examples"},
		{"diff log max bytes tiny", []string{"--diff-log-max-bytes", "10"}, "--diff-log-max-bytes"},
		{"verdict queue zero", []string{"--verdict-queue", "0"}, "--verdict-queue"},
		{"compare body bytes zero", []string{"--compare-body-bytes", "0"}, "--compare-body-bytes"},
		{"compare budget below body bytes", []string{"--compare-budget", "1000", "--compare-body-bytes", "2000"}, "--compare-budget"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), base...), tc.args...)
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			out := stderr.String()
			if code != 2 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "shadowtap run: ") || !strings.Contains(out, tc.want) {
				t.Errorf("shadowtap %s: exit status %d, stderr %q; want 2 and one line naming %q", strings.Join(args, " "), code, out, tc.want)
			}
		})
	}
	// Without a target the baseline has nothing to be compared with.
	var stdout, stderr bytes.Buffer
	args := append(without(base, "--target", "http://shadow"), "--baseline", "http://old")
	if code := run(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--target") {
		t.Errorf("--baseline without --target: exit status %d, stderr %q", code, stderr.String())
	}
}
