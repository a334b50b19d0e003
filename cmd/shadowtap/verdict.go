package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/spf13/pflag"

	"github.com/shadowtap/shadowtap/pkg/fleet"
	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/report"
)

// judgeFlags are the source and criteria flags `verdict` and `report` share.
type judgeFlags struct {
	src         fleet.Sources
	crit        gate.Criteria
	max         []string
	routeFilter string
	color       string
	slack       time.Duration
}

func addJudgeFlags(fs *pflag.FlagSet, j *judgeFlags) {
	j.crit = gate.DefaultCriteria()
	fs.StringArrayVar(&j.src.From, "from", nil, "a receiver's metrics address (http://127.0.0.1:9464; GET /verdict) or a --verdict-out file, - for stdin (repeatable: merged exactly)")
	fs.StringVar(&j.src.Prometheus, "prometheus", "", "a Prometheus server scraping every receiver (http://prometheus:9090): the fleet's sums")
	fs.StringVar(&j.src.Match, "prometheus-match", "", `label matchers added to every PromQL selector, e.g. 'job="shadowtap"'`)
	fs.DurationVar(&j.src.Timeout, "timeout", 10*time.Second, "per HTTP request to a receiver or Prometheus")
	fs.Float64Var(&j.crit.MaxDiffRate, "max-diff-rate", j.crit.MaxDiffRate, "fail above this percentage of compared exchanges differing (over all routes, and per route with --min-route-exchanges)")
	fs.StringArrayVar(&j.max, "max", nil, "KIND=PCT: fail above this percentage differing by KIND (status, header, cookie, body, shadow_error; repeatable)")
	fs.Float64Var(&j.crit.MaxLatencyRatio, "max-latency-ratio", 0, "fail when a route's shadow latency quantile exceeds production's times R (0 = latency not judged)")
	fs.Float64Var(&j.crit.LatencyQuantile, "latency-quantile", j.crit.LatencyQuantile, "the quantile --max-latency-ratio compares")
	fs.DurationVar(&j.slack, "latency-slack", 0, "with --max-latency-ratio: a route fails only if the shadow is also this much slower (e.g. 20ms)")
	fs.Uint64Var(&j.crit.MinExchanges, "min-exchanges", j.crit.MinExchanges, "fewer compared exchanges = not enough data (exit 3)")
	fs.Uint64Var(&j.crit.MinRouteExchanges, "min-route-exchanges", j.crit.MinRouteExchanges, "routes with at least this many exchanges are judged on their own")
	fs.StringVar(&j.routeFilter, "route-filter", "", `only routes matching this regular expression count, e.g. '^GET /api/'`)
	fs.StringVar(&j.color, "color", "auto", "colour: auto (on a terminal, unless NO_COLOR), always or never")
}

// finish checks the flags and fills the criteria.
func (j *judgeFlags) finish() error {
	j.crit.LatencySlack = j.slack.Seconds()
	for _, m := range j.max {
		k, v, err := gate.ParseMax(m)
		if err != nil {
			return usageError{err}
		}
		j.crit.MaxKind[k] = v
	}
	if j.routeFilter != "" {
		re, err := regexp.Compile(j.routeFilter)
		if err != nil {
			return usageError{fmt.Errorf("--route-filter: %w", err)}
		}
		j.crit.RouteFilter = re
	}
	if err := j.crit.Validate(); err != nil {
		return usageError{err}
	}
	if err := j.src.Check(); err != nil {
		return usageError{err}
	}
	switch j.color {
	case "auto", "always", "never":
	default:
		return usageError{fmt.Errorf("--color %q: want auto, always or never", j.color)}
	}
	return nil
}

// style says whether to colour w.
func (j *judgeFlags) style(w io.Writer) report.Style {
	switch j.color {
	case "always":
		return report.Style{Color: true}
	case "never":
		return report.Style{}
	}
	return report.Style{Color: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// verdictCmd is `shadowtap verdict`. Its exit status is its answer:
// 0 pass, 1 fail, 3 not enough data, 2 usage or source error.
func verdictCmd(fs *pflag.FlagSet, stdout, stderr io.Writer) func(context.Context) error {
	var j judgeFlags
	addJudgeFlags(fs, &j)
	asJSON := fs.Bool("json", false, "print the decision as one JSON document (schema in the README) instead of text")
	return func(ctx context.Context) error {
		if err := j.finish(); err != nil {
			return err
		}
		doc, err := fleet.Load(ctx, j.src)
		if err != nil {
			// Never a pass on a source that cannot be read.
			fmt.Fprintf(stderr, "shadowtap verdict: %v\n", err)
			if *asJSON {
				writeJSON(stdout, gate.ErrorResult(j.crit, err))
			}
			return exitStatus(2)
		}
		res := gate.Judge(doc, j.crit)
		if *asJSON {
			err = writeJSON(stdout, res)
		} else {
			err = report.WriteVerdict(stdout, res, j.style(stdout))
		}
		if err != nil {
			fmt.Fprintf(stderr, "shadowtap verdict: writing: %v\n", err)
			return exitStatus(2)
		}
		return exitStatus(res.ExitStatus)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
