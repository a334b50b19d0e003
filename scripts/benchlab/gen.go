package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
	"github.com/shadowtap/shadowtap/testenv/mirrorlink"
)

// genConfig is the traffic of every step, apart from its rate.
type genConfig struct {
	workers         int
	conns           int
	requestsPerConn int
	mix             mirrorgen.Mix
	smallBody       int
	largeKiB        int
	leanAcks        bool
}

// sender drives mirrorgen from the production namespace: one AF_PACKET
// writer per worker on prod's mir0, frames addressed to recv mir0 as an AWS
// mirror session addresses its target.
type sender struct {
	lab   *testenv.Lab
	links *mirrorlink.Writers
}

func newSender(lab *testenv.Lab, workers int) (*sender, error) {
	links, err := mirrorlink.Open(lab, workers)
	if err != nil {
		return nil, err
	}
	return &sender{lab: lab, links: links}, nil
}

// Close closes the writers.
func (s *sender) Close() error { return s.links.Close() }

// genResult sums the workers' summaries for one step.
type genResult struct {
	mirrorgen.Summary
	// Refused counts frames the kernel refused to queue (ENOBUFS): they
	// were never sent, though Summary.Packets counts them.
	Refused uint64
}

// Sent is the frames that left the generator.
func (g genResult) Sent() uint64 { return g.Packets - g.Refused }

// PPS is the achieved rate of frames that left.
func (g genResult) PPS() float64 {
	if g.Elapsed <= 0 {
		return 0
	}
	return float64(g.Sent()) / g.Elapsed.Seconds()
}

// RPS is the achieved rate of complete requests.
func (g genResult) RPS() float64 {
	if g.Elapsed <= 0 {
		return 0
	}
	return float64(g.RequestsSent) / g.Elapsed.Seconds()
}

// run sends rate frames/s (0: as fast as it goes) of cfg's traffic for d,
// split over the workers. Step numbers give
// each step its own inner server address (10.81.<step>.<2+worker>), so the
// connections a step leaves open never share a 4-tuple with the next step's.
func (s *sender) run(ctx context.Context, cfg genConfig, step int, rate float64, d time.Duration) (genResult, error) {
	n := len(s.links.W)
	results := make([]mirrorgen.Summary, n)
	refused := make([]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i, w := range s.links.W {
		server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 81, byte(step % 256), byte(2 + i)}), 8080)
		g, err := mirrorgen.New(mirrorgen.Config{
			Conns:           max(1, cfg.conns/n),
			RequestsPerConn: cfg.requestsPerConn,
			Duration:        d,
			Rate:            rate / float64(n),
			Mix:             cfg.mix,
			SmallBody:       cfg.smallBody,
			LargeKiB:        cfg.largeKiB,
			LeanAcks:        cfg.leanAcks,
			VNI:             s.lab.VNI,
			Source:          s.lab.MirrorSource4,
			Receiver:        s.lab.RecvAddr4,
			SrcMAC:          s.links.SrcMAC,
			DstMAC:          s.links.DstMAC,
			Server:          server,
			Seed:            uint64(step)<<8 | uint64(i),
		})
		if err != nil {
			return genResult{}, fmt.Errorf("generator: %w", err)
		}
		before := w.Dropped()
		wg.Go(func() {
			sum, err := g.Run(ctx, w)
			results[i], errs[i], refused[i] = sum, err, w.Dropped()-before
		})
	}
	wg.Wait()
	var out genResult
	for i, r := range results {
		out.Packets += r.Packets
		out.Bytes += r.Bytes
		out.Requests += r.Requests
		out.Responses += r.Responses
		out.RequestsSent += r.RequestsSent
		out.ResponsesSent += r.ResponsesSent
		out.Conns += r.Conns
		out.Refused += refused[i]
	}
	out.Elapsed = time.Since(start)
	return out, errors.Join(errs...)
}
