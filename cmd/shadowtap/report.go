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

// reportCmd is `shadowtap report`: the terminal report, or with --html one
// self-contained page. It exits 0 whatever the verdict (it is for people;
// `shadowtap verdict` is the gate), 2 on a usage or source error.
func reportCmd(fs *pflag.FlagSet, stdout, stderr io.Writer) func(context.Context) error {
	var j judgeFlags
	addJudgeFlags(fs, &j)
	opt := report.DefaultOptions()
	diffLogs := fs.StringArray("diff-log", nil, "the run's --diff-log JSONL file(s), for example differences (repeatable; give FILE.1 before FILE)")
	html := fs.String("html", "", "write a self-contained HTML report to this file instead of the terminal report")
	fs.IntVar(&opt.Routes, "routes", opt.Routes, "routes listed in the terminal table (0 = all)")
	fs.IntVar(&opt.Worst, "worst", opt.Worst, "worst routes shown with an example difference")
	return func(ctx context.Context) error {
		if err := j.finish(); err != nil {
			return err
		}
		if opt.Routes < 0 || opt.Worst < 0 {
			return usageError{errors.New("--routes and --worst cannot be negative")}
		}
		fail := func(format string, a ...any) error {
			fmt.Fprintf(stderr, "shadowtap report: "+format+"\n", a...)
			return exitStatus(2)
		}
		doc, err := fleet.Load(ctx, j.src)
		if err != nil {
			return fail("%v", err)
		}
		ex, err := report.ReadDiffLogs(*diffLogs)
		if err != nil {
			return fail("%v", err)
		}
		opt.DiffLogs = len(*diffLogs) > 0
		opt.FromPrometheus = j.src.Prometheus != ""
		res := gate.Judge(doc, j.crit)
		if *html == "" {
			opt.Style = j.style(stdout)
			if err := report.WriteTerminal(stdout, doc, res, ex, opt); err != nil {
				return fail("writing: %v", err)
			}
			return nil
		}
		if err := writeHTMLFile(*html, func(w io.Writer) error { return report.WriteHTML(w, doc, res, ex, opt) }); err != nil {
			return fail("%v", err)
		}
		abs, _ := filepath.Abs(*html)
		fmt.Fprintf(stdout, "wrote %s (verdict %s, %d routes)\n", abs, res.Verdict, len(res.Routes))
		return nil
	}
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
