package main

import (
	"fmt"
	"io"
	"strings"
)

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kfmt(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// printReport writes the Markdown report: a summary per capture mode, the
// xdp/socket ratio, then every step.
func printReport(w io.Writer, o options, m machine, args []string, modes []modeResult) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n### Lab load benchmark (`scripts/benchlab`)\n\n")
	p("- Machine: %s, %d CPUs, kernel %s, %s.\n", m.CPUModel, m.CPUs, m.Kernel, m.GoVersion)
	cmd := "sudo go run ./scripts/benchlab"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	p("- Command: `%s` (`make bench` runs it with no flags).\n", cmd)
	p("- Traffic: mirrorgen, mix `%s`, small bodies ~%d B, large %d KiB (1448-byte segments), %d connections, %d exchanges each; "+
		"sent with %d AF_PACKET writer(s) on prod mir0 to recv mir0 (VXLAN, VNI 42), steps of %s.\n",
		o.gen.mix, o.gen.smallBody, o.gen.largeKiB, o.gen.conns, o.gen.requestsPerConn, o.gen.workers, o.step)
	p("- The generator, the kernel's packet path and the shadow server run on the same %d cores as shadowtap. "+
		"Rates are those the generator achieved, not those requested.\n", m.CPUs)
	p("- Lossless: every mirrored frame sent was emitted by the capture stage (none dropped on the link, lost in the ring buffer or socket), " +
		"and every request sent completely was parsed and replayed (none dropped, failed or filtered).\n\n")

	p("| capture | highest lossless rate | requests/s | shadowtap CPU s / M pkts | generator + shadow server CPU s / M pkts | shadowtap peak RSS | next step (achieved, verdict) |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	bests := map[string]stepResult{}
	for _, mr := range modes {
		b, ok := mr.best()
		next := "none run"
		if ok {
			bests[mr.Mode] = b
			for i, s := range mr.Steps {
				if s.Gen.PPS() == b.Gen.PPS() && i+1 < len(mr.Steps) {
					n := mr.Steps[i+1]
					next = fmt.Sprintf("%s pkt/s: %s", kfmt(n.Gen.PPS()), verdict(n))
				}
			}
		} else if len(mr.Steps) > 0 {
			next = fmt.Sprintf("%s pkt/s: %s", kfmt(mr.Steps[0].Gen.PPS()), verdict(mr.Steps[0]))
		}
		if mr.Err != nil {
			next += fmt.Sprintf(" (run ended: %s)", firstLine(mr.Err.Error()))
		}
		if !ok {
			p("| %s | none | | | | %s | %s |\n", mr.Mode, mib(mr.PeakRSS), next)
			continue
		}
		p("| %s | %s pkt/s | %s | %.2f | %.2f | %s | %s |\n", mr.Mode, kfmt(b.Gen.PPS()), kfmt(b.Gen.RPS()),
			cpuPerMpkt(b.CPU, b.Gen.Sent()), cpuPerMpkt(b.SelfCPU, b.Gen.Sent()), mib(mr.PeakRSS), next)
	}
	if x, ok := bests["xdp"]; ok {
		if s, ok := bests["socket"]; ok && s.Gen.PPS() > 0 {
			p("\nRatio xdp/socket: highest lossless rate %.2f (%s / %s pkt/s).", x.Gen.PPS()/s.Gen.PPS(), kfmt(x.Gen.PPS()), kfmt(s.Gen.PPS()))
			if rate, xs, ss, ok := commonStep(modes, "xdp", "socket"); ok && cpuPerMpkt(ss.CPU, ss.Gen.Sent()) > 0 {
				p(" shadowtap CPU per packet at the same rate (%s pkt/s requested): %.2f (%.2f / %.2f s per M pkts).",
					kfmt(rate), cpuPerMpkt(xs.CPU, xs.Gen.Sent())/cpuPerMpkt(ss.CPU, ss.Gen.Sent()),
					cpuPerMpkt(xs.CPU, xs.Gen.Sent()), cpuPerMpkt(ss.CPU, ss.Gen.Sent()))
			}
			p("\n")
		}
	}
	if len(bests) > 0 {
		p("\nshadowtap CPU counts the process only (utime+stime of /proc/PID/stat over the step and its settle time). The XDP program (xdp) and "+
			"the kernel's UDP receive path (socket) run in softirq, mostly in the sender's context, so they are charged to the driver "+
			"(generator + shadow server) or to nobody. \"other cores\" is the rest of the host's busy time during the step "+
			"(other processes; load average %s at the end): a step with other load is disturbed. Events dropped because a flow "+
			"shard's queue was full are counted in \"flow queue full\"; they make a step lossy only when a request is lost.\n", loadAvg())
	}

	p("\n| capture | requested pkt/s | achieved pkt/s | req/s | pkts/req | emitted | lost at capture | flow queue full | parsed / sent req | replayed | shadowtap cores | s / M pkts | driver cores | other cores | result |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, mr := range modes {
		for _, s := range mr.Steps {
			win := s.window().Seconds()
			ppr := 0.0
			if s.Gen.RequestsSent > 0 {
				ppr = float64(s.Gen.Sent()) / float64(s.Gen.RequestsSent)
			}
			p("| %s | %s | %s | %s | %.1f | %.0f | %.0f | %.0f | %.0f / %d | %.0f | %.2f | %.2f | %.2f | %.2f | %s |\n",
				s.Mode, kfmt(s.Requested), kfmt(s.Gen.PPS()), kfmt(s.Gen.RPS()), ppr, s.Emit, s.lostAtCapture(),
				s.FlowQueueFull, s.Parsed, s.Gen.RequestsSent, s.Replayed, s.CPU.Seconds()/win, cpuPerMpkt(s.CPU, s.Gen.Sent()),
				s.SelfCPU.Seconds()/win, s.others().Seconds()/win, verdict(s))
		}
	}
	p("\n")
}

func verdict(s stepResult) string {
	if s.Lossless {
		return "lossless"
	}
	return "lossy: " + strings.Join(s.Why, "; ")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// commonStep returns the steps of modes a and b at the highest requested
// rate both ran, so that CPU per packet is compared at the same load (it
// falls as the rate rises: part of the cost is fixed).
func commonStep(modes []modeResult, a, b string) (float64, stepResult, stepResult, bool) {
	steps := map[string]map[float64]stepResult{}
	for _, mr := range modes {
		steps[mr.Mode] = map[float64]stepResult{}
		for _, s := range mr.Steps {
			steps[mr.Mode][s.Requested] = s
		}
	}
	best, found := 0.0, false
	for r := range steps[a] {
		if _, ok := steps[b][r]; ok && r > best {
			best, found = r, true
		}
	}
	return best, steps[a][best], steps[b][best], found
}
