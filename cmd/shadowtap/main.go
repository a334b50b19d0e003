// Command shadowtap receives AWS VPC Traffic Mirroring traffic, rebuilds the
// HTTP conversations, replays the safe requests to a shadow fleet and
// compares the shadow's answers with production's.
//
// It only wires flags to the packages that do the work: pkg/pipeline (run),
// pkg/xdp (stats), pkg/fleet, pkg/gate and pkg/report (verdict, report).
// Subcommands, help and shell completion come from spf13/cobra.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shadowtap/shadowtap/pkg/buildinfo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks a bad command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitStatus ends a command with this status; what went wrong has already
// been written (verdict and report have statuses of their own).
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// subcommand is one of shadowtap's commands: setup declares its flags on fs
// and returns the action, which reads them once they are parsed.
type subcommand struct {
	use, short, long string
	setup            func(fs *pflag.FlagSet, stdout, stderr io.Writer) func(ctx context.Context) error
}

func subcommands() []subcommand {
	return []subcommand{
		{"run", "Capture mirror traffic, replay the safe requests to the shadow targets, compare the answers",
			"Capture VXLAN mirror traffic (XDP, a UDP socket or a pcap file), rebuild the HTTP/1.x\n" +
				"exchanges, replay the safe requests to every --target and compare the answers with\n" +
				"production's. --vni or --source is required (who may inject requests), and --ports.", runCmd},
		{"stats", "Print the XDP counters of a running `shadowtap run`", "", statsCmd},
		{"verdict", "Gate a canary step: exit 0 pass, 1 fail, 3 not enough data, 2 usage or source error",
			"Judge the comparison (from receivers, --verdict-out files or Prometheus) against the\n" +
				"criteria and exit 0 (pass), 1 (fail), 3 (not enough data) or 2 (usage or source error).", verdictCmd},
		{"report", "Show how the shadow differs from production, route by route (terminal or --html)", "", reportCmd},
	}
}

// newRoot builds the command tree writing to stdout and stderr.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	info := buildinfo.Read()
	root := &cobra.Command{
		Use:   "shadowtap",
		Short: "Replay mirrored production HTTP traffic to a shadow fleet and compare the answers",
		Long: "shadowtap receives AWS VPC Traffic Mirroring traffic (VXLAN), rebuilds the HTTP/1.x\n" +
			"conversations, replays the safe requests to a shadow fleet and shows how the shadow's\n" +
			"answers differ from production's.",
		Version:       info.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		// Without a subcommand: the usage on stderr, exit status 2.
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(stderr)
			_ = cmd.Usage()
			return exitStatus(2)
		},
	}
	root.SetVersionTemplate(info.String() + "\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = false
	for _, sc := range subcommands() {
		c := &cobra.Command{
			Use: sc.use, Short: sc.short, Long: sc.long,
			SilenceUsage: true, SilenceErrors: true,
			Args: func(_ *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usageError{fmt.Errorf("unexpected argument %q", args[0])}
				}
				return nil
			},
		}
		c.Flags().SortFlags = false
		act := sc.setup(c.Flags(), stdout, stderr)
		c.RunE = func(cmd *cobra.Command, _ []string) error { return act(cmd.Context()) }
		root.AddCommand(c)
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and BPF object hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(stdout, "shadowtap %s\ncommit:     %s\ngo:         %s\nbpf object: %s\n",
				info.Version, info.Commit, info.GoVersion, info.BPFObject)
			return err
		},
	})
	return root
}

// run runs the command line args and returns the exit status: 0, 1 for a
// failure, 2 for a bad command line (verdict and report add their own).
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(stdout, stderr)
	if args == nil {
		args = []string{} // cobra reads os.Args for nil
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	name := "shadowtap"
	if cmd != nil && cmd != root {
		name += " " + cmd.Name()
	}
	var status exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &status):
		return int(status)
	case cmd == root:
		// An unknown command or flag: say so, then what there is.
		fmt.Fprintf(stderr, "%s: %v\n\n", name, err)
		root.SetOut(stderr)
		_ = root.Usage()
		return 2
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "%s: %v (see '%s --help')\n", name, err, name)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}
