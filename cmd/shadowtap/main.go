// Command shadowtap receives AWS VPC Traffic Mirroring traffic, rebuilds the
// HTTP conversations and replays the safe requests to a shadow fleet.
//
// It only wires flags to pkg/pipeline (run) and pkg/xdp (stats).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

const usage = `shadowtap — replay mirrored production HTTP traffic to a shadow fleet

Usage:
  shadowtap run   --iface IF --ports 8080[,80] --vni N|--source CIDR [--target URL]... [flags]
  shadowtap stats --iface IF
  shadowtap verdict --from URL|FILE... | --prometheus URL [criteria]  (exit 0 pass, 1 fail, 3 too few)
  shadowtap report  --from URL|FILE... | --prometheus URL [--diff-log FILE] [--html FILE]
  shadowtap help [run|stats|verdict|report]

Run 'shadowtap run --help' for every flag.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "stats":
		err = cmdStats(args[1:], stdout, stderr)
	case "verdict":
		return cmdVerdict(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "shadowtap: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "shadowtap %s: %v (see 'shadowtap %s --help')\n", args[0], err, args[0])
		return 2
	default:
		fmt.Fprintf(stderr, "shadowtap %s: %v\n", args[0], err)
		return 1
	}
}

// usageError marks a bad command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func newFlagSet(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	// Errors are reported in one line by run; the flag list only on --help.
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage of shadowtap %s:\n%s", name, fs.FlagUsages())
	}
	return fs
}

func parse(fs *pflag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage()
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
