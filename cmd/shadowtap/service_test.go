package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shadowtap/shadowtap/testenv"
)

// TestRunsUnprivilegedWithXDPCapabilities runs `shadowtap run` as the
// systemd unit does, without systemd (not PID 1 here): the unit's privileged
// ExecStartPre step (on a bpffs of the test's own instead of /sys/fs/bpf),
// then shadowtap as an unprivileged user holding only CAP_BPF, CAP_NET_ADMIN
// and CAP_PERFMON (ambient and bounding set). It must attach XDP, pin its
// maps and replay a mirrored request.
func TestRunsUnprivilegedWithXDPCapabilities(t *testing.T) {
	lab := testenv.NewLab(t, testenv.Options{})
	const uid = 65534 // nobody
	pinRoot := unitPrepare(t, uid)
	// The go test binary lives in a directory only root can enter.
	bin := copyExecutable(t)

	startServer(t, lab, lab.ProdNS, prodPort)
	shadow := startServer(t, lab, lab.ShadowNS, shadowPort)
	caps := "-all,+bpf,+net_admin,+perfmon"
	p := startRunWrapped(t, lab, pinRoot, []string{"setpriv",
		"--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), "--clear-groups",
		"--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps, bin,
	}, "--target", shadowTarget(lab, shadowPort))

	converse(t, lab, testenv.HostPort(lab.ProdAddr4, prodPort), testenv.Request{Target: "/unprivileged"})
	p.waitMetrics("the request replayed", func(m testenv.Metrics) bool {
		return m.Get(t, "shadowtap_replay_replayed_total", "class", "2xx") >= 1
	})
	if got := len(shadow.Exchanges()); got != 1 {
		t.Errorf("shadow received %d requests, want 1", got)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39): nothing else, in
	// the effective and the bounding set.
	const want = 1<<12 | 1<<38 | 1<<39
	for _, field := range []string{"CapEff", "CapBnd", "Uid"} {
		m := regexp.MustCompile(`(?m)^` + field + `:\s+(\S+)`).FindSubmatch(status)
		if m == nil {
			t.Fatalf("no %s in /proc/PID/status:\n%s", field, status)
		}
		switch field {
		case "Uid":
			if string(m[1]) != strconv.Itoa(uid) {
				t.Errorf("shadowtap runs as uid %s, want %d", m[1], uid)
			}
		default:
			if v, _ := strconv.ParseUint(string(m[1]), 16, 64); v != want {
				t.Errorf("%s = %#x, want %#x (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)", field, v, uint64(want))
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(pinRoot, lab.RecvIface, "stats")); err != nil {
		t.Errorf("stats map not pinned: %v", err)
	} else if s, ok := fi.Sys().(*unix.Stat_t); ok && s.Uid != uid {
		t.Errorf("stats pin owned by uid %d, want %d", s.Uid, uid)
	}
}

// unitPrepare runs the unit's ExecStartPre=+ command with /sys/fs/bpf
// replaced by a fresh directory and the shadowtap user by uid, and returns
// the pin root it prepared. The bpffs it mounts is unmounted at cleanup.
func unitPrepare(t *testing.T, uid int) string {
	t.Helper()
	raw, err := os.ReadFile("../../scripts/shadowtap.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStartPre=\+/bin/sh -c '(.*)'$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no ExecStartPre=+/bin/sh -c '...' in scripts/shadowtap.service")
	}
	dir, err := os.MkdirTemp("", "shadowtap-bpffs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting the test's bpffs: %v", err)
		}
		os.Remove(dir)
	})
	script := strings.NewReplacer("/sys/fs/bpf", dir, "shadowtap", strconv.Itoa(uid)).Replace(string(m[1]))
	if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("the unit's ExecStartPre (%s): %v\n%s", script, err, out)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("ExecStartPre did not mount bpffs on %s", dir)
	}
	return filepath.Join(dir, strconv.Itoa(uid))
}

// copyExecutable copies the test binary to a directory every user may enter.
func copyExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shadowtap-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "shadowtap")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
