// Command mirrorgen emits VXLAN-wrapped HTTP/1.1 conversations, as AWS VPC
// Traffic Mirroring sends them, into a capture file, onto an interface
// (AF_PACKET, whole outer frames) or to a UDP receiver. It drives the lab,
// the demo and the benchmark; the work is done by testenv/mirrorgen.
//
//	mirrorgen --out pcap:FILE | --out pcapng:FILE | --out iface:NAME | --out udp:HOST:PORT
//	          [--rate PPS] [--duration D | --packets N | --total-conns N]
//	          [--conns N] [--requests N] [--mix small=70,large=20,post=5,head=5]
//	          [--vni 42] [--source 10.0.0.1] [--receiver 10.0.0.2]
//	          [--server 10.1.0.10:8080] [--mss 1448] [--seed 1]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "mirrorgen:") {
			msg = "mirrorgen: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mirrorgen", flag.ContinueOnError)
	var (
		out       = fs.String("out", "", "pcap:FILE, pcapng:FILE, iface:NAME (AF_PACKET) or udp:HOST:PORT")
		rate      = fs.Float64("rate", 0, "frames per second (0: as fast as possible)")
		duration  = fs.Duration("duration", 0, "stop after this long")
		packets   = fs.Uint64("packets", 0, "stop after this many frames")
		total     = fs.Int("total-conns", 0, "stop after this many connections (default --conns when no other limit)")
		conns     = fs.Int("conns", 16, "connections open at the same time")
		requests  = fs.Int("requests", 10, "requests per keep-alive connection")
		mixS      = fs.String("mix", "small=70,large=20,post=5,head=5", "weights: small, large, head, post, pipelined")
		largeKiB  = fs.Int("large-kib", 64, "body of large responses in KiB")
		vni       = fs.Uint("vni", 42, "VXLAN network identifier")
		source    = fs.String("source", "10.0.0.1", "outer source IPv4 (the source ENI)")
		receiver  = fs.String("receiver", "10.0.0.2", "outer destination IPv4 (the mirror target)")
		dstMAC    = fs.String("dst-mac", "02:00:00:00:00:02", "outer destination MAC (iface output)")
		srcMAC    = fs.String("src-mac", "02:00:00:00:00:01", "outer source MAC")
		server    = fs.String("server", "10.1.0.10:8080", "mirrored IPv4 server address:port")
		server6   = fs.String("server6", "[fd00:1::10]:8080", "mirrored IPv6 server address:port")
		v6        = fs.Int("ipv6-percent", 0, "share of connections over IPv6")
		mss       = fs.Int("mss", mirrorgen.DefaultMSS, "TCP payload per segment (8948 for jumbo frames)")
		pktLen    = fs.Int("packet-length", 0, "cut inner frames to this many bytes, as a session's PacketLength")
		seed      = fs.Uint64("seed", 1, "random seed")
		batch     = fs.Int("batch", mirrorgen.DefaultBatch, "frames per write")
		udpSocks  = fs.Int("udp-sockets", 16, "udp output: source sockets (one outer source port each)")
		logFormat = fs.String("log-format", "text", "text or json")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(h)

	mix, err := mirrorgen.ParseMix(*mixS)
	if err != nil {
		return err
	}
	cfg := mirrorgen.Config{
		Conns: *conns, TotalConns: *total, RequestsPerConn: *requests,
		Duration: *duration, Packets: *packets, Rate: *rate,
		Mix: mix, LargeKiB: *largeKiB, MSS: *mss, PacketLength: *pktLen,
		VNI: uint32(*vni), IPv6Percent: *v6, Seed: *seed, Batch: *batch,
	}
	if cfg.Source, err = netip.ParseAddr(*source); err != nil {
		return fmt.Errorf("--source: %w", err)
	}
	if cfg.Receiver, err = netip.ParseAddr(*receiver); err != nil {
		return fmt.Errorf("--receiver: %w", err)
	}
	if cfg.Server, err = netip.ParseAddrPort(*server); err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if cfg.ServerV6, err = netip.ParseAddrPort(*server6); err != nil {
		return fmt.Errorf("--server6: %w", err)
	}
	if cfg.DstMAC, err = net.ParseMAC(*dstMAC); err != nil {
		return fmt.Errorf("--dst-mac: %w", err)
	}
	if cfg.SrcMAC, err = net.ParseMAC(*srcMAC); err != nil {
		return fmt.Errorf("--src-mac: %w", err)
	}
	if *vni > 0xFFFFFF {
		return fmt.Errorf("--vni %d does not fit in 24 bits", *vni)
	}
	g, err := mirrorgen.New(cfg)
	if err != nil {
		return err
	}

	kind, target, ok := strings.Cut(*out, ":")
	if !ok || target == "" {
		return errors.New("--out must be pcap:FILE, pcapng:FILE, iface:NAME or udp:HOST:PORT")
	}
	var w mirrorgen.Writer
	var finish func() error
	var dropped func() uint64
	switch kind {
	case "pcap", "pcapng":
		f, err := os.Create(target)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		format := mirrorgen.FormatPcap
		if kind == "pcapng" {
			format = mirrorgen.FormatPcapNG
		}
		fw, err := mirrorgen.NewFileWriter(f, format)
		if err != nil {
			f.Close()
			return err
		}
		w = fw
		finish = func() error { return errors.Join(fw.Flush(), f.Close()) }
	case "iface":
		pw, err := mirrorgen.NewPacketWriter(target)
		if err != nil {
			return err
		}
		w, finish, dropped = pw, pw.Close, pw.Dropped
	case "udp":
		ap, err := netip.ParseAddrPort(target)
		if err != nil {
			return fmt.Errorf("--out udp: %w", err)
		}
		uw, err := mirrorgen.NewUDPWriter(ap, *udpSocks)
		if err != nil {
			return err
		}
		w, finish, dropped = uw, uw.Close, uw.Dropped
	default:
		return fmt.Errorf("--out: unknown kind %q", kind)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("generating", "out", *out, "rate", *rate, "mix", mix.String(), "conns", cfg.Conns, "mss", g.Config().MSS, "vni", cfg.VNI)
	sum, runErr := g.Run(ctx, w)
	if err := finish(); err != nil && runErr == nil {
		runErr = err
	}
	var drops uint64
	if dropped != nil {
		drops = dropped()
	}
	fmt.Printf("packets sent: %d\nrequests: %d (%d complete)\nresponses: %d (%d complete)\nconnections: %d\nbytes: %d\nelapsed: %s\nachieved rate: %.0f packets/s\nkernel drops: %d\n",
		sum.Packets, sum.Requests, sum.RequestsSent, sum.Responses, sum.ResponsesSent, sum.Conns, sum.Bytes, sum.Elapsed.Round(time.Millisecond), sum.Rate(), drops)
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}
