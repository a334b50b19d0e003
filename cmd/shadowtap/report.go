package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/shadowtap/shadowtap/pkg/fleet"
	"github.com/shadowtap/shadowtap/pkg/gate"
	"github.com/shadowtap/shadowtap/pkg/report"
)

// cmdReport is `shadowtap report`: the terminal report, or with --html one
// self-contained page. It exits 0 whatever the verdict (it is for people;
// `shadowtap verdict` is the gate), 2 on a usage or source error.
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("report", stderr)
	var j judgeFlags
	addJudgeFlags(fs, &j)
	opt := report.DefaultOptions()
	diffLogs := fs.StringArray("diff-log", nil, "the run's --diff-log JSONL file(s), for example differences (repeatable; give FILE.1 before FILE)")
	html := fs.String("html", "", "write a self-contained HTML report to this file instead of the terminal report")
	fs.IntVar(&opt.Routes, "routes", opt.Routes, "routes listed in the terminal table (0 = all)")
	fs.IntVar(&opt.Worst, "worst", opt.Worst, "worst routes shown with an example difference")
	err := parse(fs, args)
	if err == nil {
		err = j.finish()
	}
	if err == nil && (opt.Routes < 0 || opt.Worst < 0) {
		err = usageError{errors.New("--routes and --worst cannot be negative")}
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "shadowtap report: %v (see 'shadowtap report --help')\n", err)
		return 2
	}
	doc, err := fleet.Load(ctx, j.src)
	if err != nil {
		fmt.Fprintf(stderr, "shadowtap report: %v\n", err)
		return 2
	}
	ex, err := report.ReadDiffLogs(*diffLogs)
	if err != nil {
		fmt.Fprintf(stderr, "shadowtap report: %v\n", err)
		return 2
	}
	opt.DiffLogs = len(*diffLogs) > 0
	opt.FromPrometheus = j.src.Prometheus != ""
	res := gate.Judge(doc, j.crit)

	if *html == "" {
		opt.Style = j.style(stdout)
		if err := report.WriteTerminal(stdout, doc, res, ex, opt); err != nil {
			fmt.Fprintf(stderr, "shadowtap report: writing: %v\n", err)
			return 2
		}
		return 0
	}
	if err := writeHTMLFile(*html, func(w io.Writer) error { return report.WriteHTML(w, doc, res, ex, opt) }); err != nil {
		fmt.Fprintf(stderr, "shadowtap report: %v\n", err)
		return 2
	}
	abs, _ := filepath.Abs(*html)
	fmt.Fprintf(stdout, "wrote %s (verdict %s, %d routes)\n", abs, res.Verdict, len(res.Routes))
	return 0
}

// writeHTMLFile writes through a temporary file and renames it, so a
// browser never shows half a report.
func writeHTMLFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("--html %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("--html %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("--html %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--html %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--html %s: %w", path, err)
	}
	return nil
}
