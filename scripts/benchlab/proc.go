package main

import (
	"context"
	"fmt"
	"github.com/prometheus/procfs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// /proc is read through prometheus/procfs (already a dependency of the
// Prometheus client), not parsed here.

// procCPU returns the user+system CPU time pid has used.
func procCPU(pid int) (time.Duration, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	return seconds(st.CPUTime()), nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// procPeakRSS returns pid's peak resident set size in bytes (VmHWM).
func procPeakRSS(pid int) (uint64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("reading peak RSS of pid %d: %w", pid, err)
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, fmt.Errorf("reading peak RSS of pid %d: %w", pid, err)
	}
	return st.VmHWM, nil
}

// sysCPU is the machine-wide CPU time from /proc/stat.
type sysCPU struct {
	Busy, SoftIRQ, Total time.Duration
}

func readSysCPU() (sysCPU, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return sysCPU{}, fmt.Errorf("reading /proc/stat: %w", err)
	}
	st, err := fs.Stat()
	if err != nil {
		return sysCPU{}, fmt.Errorf("reading /proc/stat: %w", err)
	}
	c := st.CPUTotal
	// Guest time is already part of user.
	total := c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	return sysCPU{Busy: seconds(total - c.Idle - c.Iowait), SoftIRQ: seconds(c.SoftIRQ), Total: seconds(total)}, nil
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
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if cpus, err := fs.CPUInfo(); err == nil && len(cpus) > 0 {
			m.CPUModel = cpus[0].ModelName
		}
	}
	return m
}

// loadAvg returns /proc/loadavg's three averages, to show what else ran.
func loadAvg() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return "?"
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", l.Load1, l.Load5, l.Load15)
}
