// Command lab brings shadowtap's mirror lab up and down for manual use and the
// demo (scripts/lab.sh wraps it). The lab's state is its namespaces, named
// after --name, so no state file is kept.
//
//	lab up     [--name N] [--vni 42] [--vxlan-port 4789] [--outer-ipv6] [--client-mtu 9001] [--receiver-mtu 9200]
//	lab down   [--name N]
//	lab status [--name N]
//	lab serve  [--name N] [--in prod|shadow] [--addr :8080]
//	lab sweep  (removes labs left by test processes that no longer run)
//
// up and status print the lab as KEY=VALUE lines (LAB_NAME, CLIENT_NS,
// PROD_NS, RECV_NS, SHADOW_NS, RECV_IFACE, PROD_ADDR4, MIRROR_SOURCE_CIDR,
// VNI, ...), ready for `eval` in a shell. serve runs the lab HTTP server
// (testenv.Server) in a namespace until interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shadowtap/shadowtap/testenv"
)

const defaultName = "shadowtap-lab"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

const usage = `usage: lab up|down|status|serve|sweep [flags]   (lab COMMAND -h for flags)`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("lab "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", defaultName, "lab name (prefix of its namespaces)")
	verbose := fs.Bool("v", false, "log every setup step")
	var opt testenv.Options
	var vni uint
	var port uint
	var in, addr string
	switch cmd {
	case "up":
		fs.UintVar(&vni, "vni", testenv.DefaultVNI, "VXLAN ID of the mirror session")
		fs.UintVar(&port, "vxlan-port", testenv.DefaultVXLANPort, "UDP port of the mirror")
		fs.BoolVar(&opt.OuterIPv6, "outer-ipv6", false, "send the mirror over IPv6")
		fs.IntVar(&opt.ClientMTU, "client-mtu", testenv.DefaultClientMTU, "MTU of the client<->prod link")
		fs.IntVar(&opt.ReceiverMTU, "receiver-mtu", testenv.DefaultReceiverMTU, "MTU of the prod<->recv link")
	case "down", "status", "sweep":
	case "serve":
		fs.StringVar(&in, "in", "prod", "namespace role to serve in: client, prod, recv or shadow")
		fs.StringVar(&addr, "addr", ":8080", "listen address")
	default:
		return fmt.Errorf("unknown command %q; %s", cmd, usage)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; %s", fs.Args(), usage)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if os.Geteuid() != 0 {
		return errors.New("the lab creates network namespaces: run as root (sudo)")
	}

	switch cmd {
	case "up":
		if vni > 0xffffff {
			return fmt.Errorf("--vni %d: a VXLAN ID has 24 bits", vni)
		}
		if port == 0 || port > 65535 {
			return fmt.Errorf("--vxlan-port %d: want 1..65535", port)
		}
		if l, err := testenv.Open(ctx, *name, log); err == nil {
			log.Info("lab already up; use down first to change its options", "name", *name)
			printEnv(stdout, l)
			return nil
		}
		opt.Name, opt.VNI, opt.VXLANPort, opt.Logger = *name, uint32(vni), uint16(port), log
		l, err := testenv.Up(ctx, opt)
		if err != nil {
			return err
		}
		printEnv(stdout, l)
		return nil
	case "down":
		return testenv.Remove(*name, log)
	case "sweep":
		removed, err := testenv.RemoveStale(log)
		for _, ns := range removed {
			fmt.Fprintln(stdout, "removed", ns)
		}
		return err
	case "status":
		l, err := testenv.Open(ctx, *name, log)
		if err != nil {
			return err
		}
		printEnv(stdout, l)
		return nil
	default: // serve
		l, err := testenv.Open(ctx, *name, log)
		if err != nil {
			return err
		}
		ns, ok := map[string]string{"client": l.ClientNS, "prod": l.ProdNS, "recv": l.RecvNS, "shadow": l.ShadowNS}[in]
		if !ok {
			return fmt.Errorf("--in %q: want client, prod, recv or shadow", in)
		}
		srv, err := testenv.StartHTTPServer(ctx, l, ns, addr)
		if err != nil {
			return err
		}
		log.Info("lab server up; Ctrl-C stops it", "ns", ns, "addr", srv.Addr.String())
		<-ctx.Done()
		err = srv.Close()
		log.Info("lab server stopped", "exchanges", len(srv.Exchanges()))
		return err
	}
}

func printEnv(w io.Writer, l *testenv.Lab) {
	fmt.Fprintln(w, strings.Join(l.Env(), "\n"))
}
