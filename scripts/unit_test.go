// Package scripts holds the files `make install` puts on a host (the systemd
// unit, its sysusers entry, the env file) and the lab and benchmark drivers;
// this test checks the unit's hardening, which is what an operator relies on
// when running a BPF loader as a service.
package scripts

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unit parses a systemd unit into key -> values (repeated keys append).
func unit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not key=value: %q", path, line)
		}
		out[k] = append(out[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnitHardening(t *testing.T) {
	u := unit(t, "shadowtap.service")
	want := map[string]string{
		"User":                  "shadowtap",
		"CapabilityBoundingSet": "CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
		"AmbientCapabilities":   "CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectKernelTunables": "yes",
		"ProtectKernelLogs":     "yes",
		"ProtectProc":           "invisible",
		"UMask":                 "0077",
		"Type":                  "notify",
		"ExecStart":             "@PREFIX@/bin/shadowtap run $SHADOWTAP_FLAGS",
		"ReadWritePaths":        "/sys/fs/bpf/shadowtap",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if strings.Contains(strings.Join(u[k], " "), "CAP_SYS_ADMIN") {
			t.Errorf("%s keeps CAP_SYS_ADMIN", k)
		}
	}
	filter := strings.Fields(strings.Join(u["SystemCallFilter"], " "))
	for _, need := range []string{"@system-service", "bpf"} {
		found := false
		for _, f := range filter {
			found = found || f == need
		}
		if !found {
			t.Errorf("SystemCallFilter %v lacks %s", filter, need)
		}
	}
	for _, f := range filter {
		if strings.HasPrefix(f, "~") && strings.Contains(f, "@privileged") {
			t.Errorf("SystemCallFilter denies @privileged, which holds bpf(2): the program could not load")
		}
	}
	if w := u["WatchdogSec"]; len(w) != 1 {
		t.Errorf("WatchdogSec=%v: want one value", w)
	}
	// bpffs and the pin directory are prepared with full privileges ("+").
	pre := strings.Join(u["ExecStartPre"], "\n")
	if !strings.HasPrefix(pre, "+") || !strings.Contains(pre, "mount -t bpf") || !strings.Contains(pre, "-o shadowtap") {
		t.Errorf("ExecStartPre=%q: want a privileged (+) step mounting bpffs and handing the pin directory to shadowtap", pre)
	}
	sys, err := os.ReadFile("shadowtap.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u shadowtap `).Match(sys) {
		t.Errorf("shadowtap.sysusers does not create the shadowtap user:\n%s", sys)
	}
}

// TestInstallFollowsPrefix runs `make install` into a DESTDIR and checks
// where things land and with which modes, then `make uninstall`.
func TestInstallFollowsPrefix(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	dest := t.TempDir()
	bin := filepath.Join(t.TempDir(), "shadowtap")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(target string) {
		t.Helper()
		cmd := exec.Command("make", "-s", "-C", "..", "-o", "build", target, "BIN="+bin, "DESTDIR="+dest, "PREFIX=/opt/st")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	mk("install")
	svc := unit(t, filepath.Join(dest, "etc/systemd/system/shadowtap.service"))
	if got := svc["ExecStart"]; len(got) != 1 || got[0] != "/opt/st/bin/shadowtap run $SHADOWTAP_FLAGS" {
		t.Errorf("installed ExecStart=%q, want it under PREFIX /opt/st", got)
	}
	for path, mode := range map[string]os.FileMode{
		"opt/st/bin/shadowtap":              0o755,
		"etc/default/shadowtap":             0o640,
		"usr/lib/sysusers.d/shadowtap.conf": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %s, want %s", path, fi.Mode().Perm(), strconv.FormatUint(uint64(mode), 8))
		}
	}
	mk("uninstall")
	for _, path := range []string{"opt/st/bin/shadowtap", "etc/systemd/system/shadowtap.service"} {
		if _, err := os.Stat(filepath.Join(dest, path)); err == nil {
			t.Errorf("%s left after make uninstall", path)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/default/shadowtap")); err != nil {
		t.Errorf("make uninstall removed the operator's env file: %v", err)
	}
}

// TestSecurityExposure asks systemd-analyze for the unit's exposure score
// (offline: no running systemd needed). The README quotes the figure.
func TestSecurityExposure(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	raw, err := os.ReadFile("shadowtap.service")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "shadowtap.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(raw), "@PREFIX@", "/usr/local")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for shadowtap.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 2.5 {
		t.Errorf("exposure %.1f, want at most 2.5 (it was 4.5 when the unit ran as root):\n%s", score, out)
	}
}
