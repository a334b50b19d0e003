package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the tick counts in /proc/PID/stat and /proc/stat
// (USER_HZ, 100 on every Linux architecture Go supports).
const userHZ = 100

// procCPU returns the user+system CPU time pid has used, from fields 14
// and 15 of /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// parseStatCPU extracts utime+stime from the content of /proc/PID/stat. The
// command name (field 2) is in parentheses and may hold spaces, so fields
// are counted after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: utime/stime: %w", err)
	}
	return ticks(ut + st), nil
}

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// procStatusKB returns a "Key:   N kB" field of /proc/PID/status in bytes,
// e.g. VmHWM (peak RSS) or VmRSS.
func procStatusKB(pid int, key string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading /proc/%d/status: %w", pid, err)
	}
	return parseStatusKB(b, key)
}

func parseStatusKB(b []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status %s: %w", key, err)
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("status: no %s line", key)
}

// sysCPU is the machine-wide CPU time from the first line of /proc/stat.
type sysCPU struct {
	Busy, SoftIRQ, Total time.Duration
}

func readSysCPU() (sysCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return sysCPU{}, fmt.Errorf("reading /proc/stat: %w", err)
	}
	return parseSysCPU(b)
}

func parseSysCPU(b []byte) (sysCPU, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return sysCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [10]uint64
	for i := 1; i < len(f) && i <= len(v); i++ {
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return sysCPU{}, fmt.Errorf("/proc/stat: field %d: %w", i, err)
		}
		v[i-1] = n
	}
	// user nice system idle iowait irq softirq steal guest guest_nice; guest
	// time is already part of user.
	total := v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]
	idle := v[3] + v[4]
	return sysCPU{Busy: ticks(total - idle), SoftIRQ: ticks(v[6]), Total: ticks(total)}, nil
}

func (a sysCPU) sub(b sysCPU) sysCPU {
	return sysCPU{Busy: a.Busy - b.Busy, SoftIRQ: a.SoftIRQ - b.SoftIRQ, Total: a.Total - b.Total}
}

// selfCPU is the CPU time of this process (the generator and the shadow
// server).
func selfCPU() (time.Duration, error) { return procCPU(os.Getpid()) }

// resolveChild returns the PID that runs the program started as pid. nsenter
// without --fork enters the namespace and execs the program in place, so
// the PID is usually the same; should nsenter have forked, the program is
// its only child. It waits until the exec happened (up to ctx).
func resolveChild(ctx context.Context, pid int, wantBase string) (int, error) {
	for {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == wantBase {
			return pid, nil
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				child, err := strconv.Atoi(f[0])
				if err == nil {
					return resolveChild(ctx, child, wantBase)
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("pid %d still runs %s, not %s: %w", pid, exe, wantBase, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// machine describes the host for the report.
type machine struct {
	Kernel, CPUModel string
	CPUs             int
	GoVersion        string
}

func describeMachine(ctx context.Context) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Kernel: "?", CPUModel: "?"}
	if out, err := exec.CommandContext(ctx, "uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(b)
	}
	return m
}

func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// loadAvg returns the first field of /proc/loadavg, to show what else ran.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
