package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
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

// shapeText describes a shape for the report.
func shapeText(o options, shape string) string {
	switch shape {
	case shapeConn:
		return "1 request per connection: a ~400-byte GET answered with 4.4 KB in 4 segments, 10 frames per connection (3 handshake, 1 request, 4 response, 2 FIN)"
	case shapeKeepAlive:
		return "keep-alive: 10 such exchanges per connection, 55 frames (the next request or the FIN acknowledges each response)"
	}
	return fmt.Sprintf("mix `%s`, small bodies ~%d B, large %d KiB (1448-byte segments), %d exchanges per connection",
		o.gen.mix, o.gen.smallBody, o.gen.largeKiB, o.gen.requestsPerConn)
}

var variantText = map[string]string{
	variantParse:     "parse-only",
	variantCompare:   "end to end",
	variantNoCompare: "end to end, --no-compare",
}

// cpuPerReplayed is the CPU shadowtap spent per replayed request in an end
// to end step e: its CPU minus what the parse-only step p of the same
// requested rate spent, scaled to e's packets, over e's replayed requests.
func cpuPerReplayed(e, p stepResult) (µs float64, ok bool) {
	if e.Replayed == 0 || p.Gen.Sent() == 0 {
		return 0, false
	}
	parse := p.CPU.Seconds() * float64(e.Gen.Sent()) / float64(p.Gen.Sent())
	return (e.CPU.Seconds() - parse) / e.Replayed * 1e6, true
}

// printReport writes the Markdown report: per shape, every step, the
// highest lossless rate of each variant, and comparison on vs off.
func printReport(w io.Writer, o options, m machine, args []string, runs []runResult) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n### Lab load benchmark (`scripts/benchlab`)\n\n")
	p("- Machine: %s, %d CPUs, kernel %s, %s; load average at the end %s.\n", m.CPUModel, m.CPUs, m.Kernel, m.GoVersion, loadAvg())
	cmd := "sudo go run ./scripts/benchlab"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	p("- Command: `%s`.\n", cmd)
	p("- Shadow: %s, in its own process. Traffic: mirrorgen, %d concurrent connections, %d AF_PACKET writer(s) on prod mir0 to recv mir0 (VXLAN, VNI 42), steps of %s; "+
		"the generator, the kernel's packet path, the shadow and shadowtap share the %d cores. Rates are those the generator achieved (\"max\": as fast as it goes).\n",
		o.shadow, o.gen.conns, o.gen.workers, o.step, m.CPUs)
	p("- Lossless: every mirrored frame sent was emitted by the capture stage and every request sent completely was parsed and, end to end, answered by the shadow " +
		"(none dropped, failed or filtered). Cores: CPU time over the step and its settle time. CPU per replayed request: (shadowtap's CPU end to end − its CPU parse-only " +
		"at the same requested rate, scaled to the same packets) / requests answered.\n")

	shapes := []string{}
	for _, r := range runs {
		if !slices.Contains(shapes, r.Shape) {
			shapes = append(shapes, r.Shape)
		}
	}
	for _, shape := range shapes {
		p("\n#### Shape %s: %s\n\n", shape, shapeText(o, shape))
		parse := map[string]map[float64]stepResult{} // mode → requested → step
		for _, r := range runs {
			if r.Shape == shape && r.Variant == variantParse {
				parse[r.Mode] = map[float64]stepResult{}
				for _, s := range r.Steps {
					parse[r.Mode][s.Requested] = s
				}
			}
		}
		p("| capture | variant | highest lossless rate | requests/s | shadowtap CPU s / M pkts | peak RSS | run |\n")
		p("| --- | --- | ---: | ---: | ---: | ---: | --- |\n")
		best := map[string]map[string]stepResult{}
		for _, r := range runs {
			if r.Shape != shape {
				continue
			}
			status := "complete"
			if r.Err != nil {
				status = "ended: " + firstLine(r.Err.Error())
			}
			b, ok := r.best()
			if !ok {
				p("| %s | %s | none | | | %s | %s |\n", r.Mode, variantText[r.Variant], mib(r.PeakRSS), status)
				continue
			}
			if best[r.Mode] == nil {
				best[r.Mode] = map[string]stepResult{}
			}
			best[r.Mode][r.Variant] = b
			p("| %s | %s | %s pkt/s | %s | %.2f | %s | %s |\n", r.Mode, variantText[r.Variant], kfmt(b.Gen.PPS()), kfmt(b.Gen.RPS()),
				cpuPerMpkt(b.CPU, b.Gen.Sent()), mib(r.PeakRSS), status)
		}
		for _, mode := range slices.Sorted(maps.Keys(best)) {
			on, okOn := best[mode][variantCompare]
			off, okOff := best[mode][variantNoCompare]
			if okOn && okOff && off.Gen.PPS() > 0 {
				p("\nComparison on vs off (%s): highest lossless rate %s / %s pkt/s = %.2f (issue 8: at least 0.85).\n",
					mode, kfmt(on.Gen.PPS()), kfmt(off.Gen.PPS()), on.Gen.PPS()/off.Gen.PPS())
			}
		}

		// Issue 12's targets for this shape.
		for _, mode := range slices.Sorted(maps.Keys(best)) {
			if b, ok := best[mode][variantCompare]; ok {
				verdict := "✘"
				if b.Requested >= 200e3 && b.Gen.PPS() >= 0.995*200e3 || b.Requested == 0 && b.Gen.PPS() >= 200e3 {
					verdict = "✔" // the generator paces to within a few hundred packets a second
				}
				p("\nEnd to end (%s, comparison on), every request answered up to %s pkt/s: target ≥ 200 k %s.", mode, kfmt(b.Gen.PPS()), verdict)
			}
		}
		var cprs []string
		for _, r := range runs {
			if r.Shape != shape || r.Variant == variantParse {
				continue
			}
			for _, st := range r.Steps {
				if ps, ok := parse[st.Mode][st.Requested]; ok && st.answered() >= 99 {
					if v, ok := cpuPerReplayed(st, ps); ok {
						cprs = append(cprs, fmt.Sprintf("%s at %s: %.1f µs", variantText[r.Variant], rateName(st.Requested), v))
					}
				}
			}
		}
		if len(cprs) > 0 {
			p("\nCPU per replayed request (steps with at least 99 %% answered; target ≤ 10 µs): %s.\n", strings.Join(cprs, "; "))
		}
		// Overload: the steps where replay shed.
		header := false
		for _, r := range runs {
			if r.Shape != shape {
				continue
			}
			for _, st := range r.Steps {
				shed := st.DropReasons["overload"]
				if !st.endToEnd() || (shed == 0 && st.Requested != 0) {
					continue
				}
				if !header {
					p("\nOverload (issue 12: capture loses nothing, replay sheds whole sessions before queueing):\n\n")
					p("| capture | variant | requested | achieved pkt/s | dropped on the link | lost at capture (ring/socket) | flow queue full | parsed / sent | answered | shed (overload) | dropped at a full queue | admitted at the end |\n")
					p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
					header = true
				}
				p("| %s | %s | %s | %s | %.0f | %.0f | %.0f | %.0f / %d | %.1f %% | %.0f | %.0f | %.2f |\n",
					st.Mode, variantText[st.Variant], rateName(st.Requested), kfmt(st.Gen.PPS()), st.lostAtCapture()-st.Lost, st.Lost,
					st.FlowQueueFull, st.Parsed, st.Gen.RequestsSent, st.answered(), shed, st.DropReasons["queue"], st.Admitted)
			}
		}

		p("\n| capture | variant | requested | achieved pkt/s | req/s | pkts/req | parsed / sent | answered | lost at capture | flow queue full | dropped | shadowtap cores | shadow cores | generator cores | other cores | µs CPU / replayed req | admitted | result |\n")
		p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, r := range runs {
			if r.Shape != shape {
				continue
			}
			for _, s := range r.Steps {
				win := s.window().Seconds()
				ppr := 0.0
				if s.Gen.RequestsSent > 0 {
					ppr = float64(s.Gen.Sent()) / float64(s.Gen.RequestsSent)
				}
				answered, cpr, admitted := "", "", ""
				if s.endToEnd() {
					answered = fmt.Sprintf("%.1f %%", s.answered())
					admitted = fmt.Sprintf("%.2f", s.Admitted)
					if ps, ok := parse[s.Mode][s.Requested]; ok {
						if v, ok := cpuPerReplayed(s, ps); ok {
							cpr = fmt.Sprintf("%.1f", v)
						}
					}
				}
				dropped := ""
				if s.Dropped > 0 {
					dropped = fmt.Sprintf("%.0f %v", s.Dropped, s.DropReasons)
				}
				p("| %s | %s | %s | %s | %s | %.1f | %.0f / %d | %s | %.0f | %.0f | %s | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |\n",
					s.Mode, variantText[s.Variant], rateName(s.Requested), kfmt(s.Gen.PPS()), kfmt(s.Gen.RPS()), ppr,
					s.Parsed, s.Gen.RequestsSent, answered, s.lostAtCapture(), s.FlowQueueFull, dropped,
					s.CPU.Seconds()/win, s.ShadowCPU.Seconds()/win, s.SelfCPU.Seconds()/win, s.others().Seconds()/win,
					cpr, admitted, verdict(s))
			}
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
