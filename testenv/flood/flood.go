// Package flood drives the request-body flood of issue 10 at shadowtap in
// the mirror lab (cmd/shadowtap's TestFloodBodies, small in CI and at full
// scale under `make flood`): connections that send GETs with large bodies
// back to back, never answered, at the generator's top rate, while a steady
// keep-alive connection's replays must go on. It sits in front of the data
// path, beside testenv/mirrorgen (which builds the frames), and reads what
// shadowtap exposes: its /proc entry, and what the shadow receives.
package flood

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

// Port is the mirrored service's port the floods address (shadowtap's --ports).
const Port = 8080

// SteadyHost is the Host header of the steady connection's requests: the
// shadow counts them apart.
const SteadyHost = "steady.flood"

// Spec is one flood run.
type Spec struct {
	Duration time.Duration // length of the run
	// BodyBytes is the Content-Length of each request; Conns connections
	// (default 64) send them back to back, pipelined, never answered.
	BodyBytes int
	Conns     int
	// Rate in frames per second for all workers; 0 is the top rate.
	Rate float64
	Seed uint64
}

// Result is what a flood sent.
type Result struct {
	Frames, Refused uint64 // frames written; of them refused by the kernel (never sent)
	Requests        uint64 // requests started
	Elapsed         time.Duration
}

// Sent is the frames that left.
func (r Result) Sent() uint64 { return r.Frames - r.Refused }

// PPS is the achieved rate of frames that left.
func (r Result) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent()) / r.Elapsed.Seconds()
}

// Sender writes mirror frames from the lab's production namespace onto
// prod's mirror interface, addressed to the receiver as an AWS mirror
// session addresses its target: one AF_PACKET writer per worker, plus one
// for the steady connection.
type Sender struct {
	lab     *testenv.Lab
	links   *mirrorlink.Writers
	writers []*mirrorgen.PacketWriter // the workers'
	steadyW *mirrorgen.PacketWriter   // the steady connection's
}

// NewSender opens workers writers (at least 1) in lab.
func NewSender(lab *testenv.Lab, workers int) (*Sender, error) {
	links, err := mirrorlink.Open(lab, max(workers, 1)+1)
	if err != nil {
		return nil, err
	}
	return &Sender{lab: lab, links: links, steadyW: links.W[0], writers: links.W[1:]}, nil
}

// Close closes the writers.
func (s *Sender) Close() error {
	s.writers, s.steadyW = nil, nil
	return s.links.Close()
}

// genConfig is a generator addressed like the lab's mirror session.
func (s *Sender) genConfig(server netip.AddrPort, seed uint64) mirrorgen.Config {
	return mirrorgen.Config{
		VNI: s.lab.VNI, Source: s.lab.MirrorSource4, Receiver: s.lab.RecvAddr4,
		SrcMAC: s.links.SrcMAC, DstMAC: s.links.DstMAC, Server: server, Seed: seed,
	}
}

// Steady starts one keep-alive connection of small GETs (Host SteadyHost)
// at rate frames/s from server 10.81.250.2; stop ends it and returns what
// it sent. Its requests are what "an established connection keeps being
// replayed" is measured on.
func (s *Sender) Steady(ctx context.Context, rate float64) (stop func() mirrorgen.Summary, err error) {
	cfg := s.genConfig(netip.MustParseAddrPort("10.81.250.2:8080"), 1)
	cfg.Conns, cfg.RequestsPerConn, cfg.Duration = 1, 1<<30, 24*time.Hour
	cfg.Rate, cfg.Host = rate, SteadyHost
	g, err := mirrorgen.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("steady generator: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan mirrorgen.Summary, 1)
	go func() {
		sum, _ := g.Run(ctx, s.steadyW)
		done <- sum
	}()
	return func() mirrorgen.Summary {
		cancel()
		return <-done
	}, nil
}

// Run sends the flood with every worker for spec.Duration.
func (s *Sender) Run(ctx context.Context, spec Spec) (Result, error) {
	if spec.Duration <= 0 {
		return Result{}, errors.New("flood: a run needs a Duration")
	}
	if spec.Conns <= 0 {
		spec.Conns = 64
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Duration)
	defer cancel()
	n := len(s.writers)
	res := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i, w := range s.writers {
		part := spec
		part.Rate = spec.Rate / float64(n)
		part.Seed = spec.Seed<<8 | uint64(i)
		part.Conns = max(1, spec.Conns/n)
		wg.Go(func() {
			before := w.Dropped()
			res[i], errs[i] = s.worker(ctx, w, i, part)
			res[i].Refused = w.Dropped() - before
		})
	}
	wg.Wait()
	var out Result
	for _, r := range res {
		out.Frames += r.Frames
		out.Refused += r.Refused
		out.Requests += r.Requests
	}
	out.Elapsed = time.Since(start)
	err := errors.Join(errs...)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // the run's bound, not a failure
	}
	return out, err
}

// worker sends one worker's share of the flood.
func (s *Sender) worker(ctx context.Context, w mirrorgen.Writer, i int, spec Spec) (Result, error) {
	// Each worker floods its own inner server address, so no two workers
	// share a flow.
	server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 81, byte(240 + i%8), byte(2 + i/8)}), Port)
	g, err := mirrorgen.New(s.genConfig(server, spec.Seed))
	if err != nil {
		return Result{}, err
	}
	b := newBatcher(w, spec.Rate)
	err = bodies(ctx, g, b, server, spec)
	if ferr := b.flush(ctx); err == nil {
		err = ferr
	}
	return b.res, err
}

// batcher collects frames and writes them in batches, paced to a rate.
type batcher struct {
	w      mirrorgen.Writer
	bufs   [][]byte
	frames [][]byte
	rate   float64
	start  time.Time
	res    Result
}

const batchSize = 64

func newBatcher(w mirrorgen.Writer, rate float64) *batcher {
	b := &batcher{w: w, rate: rate, start: time.Now()}
	b.bufs = make([][]byte, batchSize)
	for i := range b.bufs {
		b.bufs[i] = make([]byte, 0, mirrorgen.FrameCap)
	}
	return b
}

// next returns the buffer for the next frame; add the frame with add.
func (b *batcher) next() []byte { return b.bufs[len(b.frames)][:0] }

func (b *batcher) add(ctx context.Context, f []byte) error {
	b.frames = append(b.frames, f)
	if len(b.frames) < batchSize {
		return nil
	}
	return b.flush(ctx)
}

func (b *batcher) flush(ctx context.Context) error {
	if len(b.frames) == 0 {
		return ctx.Err()
	}
	err := b.w.WriteFrames(b.frames)
	b.res.Frames += uint64(len(b.frames))
	b.frames = b.frames[:0]
	if err != nil {
		return err
	}
	if b.rate > 0 {
		due := b.start.Add(time.Duration(float64(b.res.Frames) / b.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	b.res.Elapsed = time.Since(b.start)
	return ctx.Err()
}

// bodies opens spec.Conns connections (handshake both ways) and sends on
// each, back to back, GETs with spec.BodyBytes bodies that are never
// answered: GET, so that the receiver would keep them for replay.
func bodies(ctx context.Context, g *mirrorgen.Generator, b *batcher, server netip.AddrPort, spec Spec) error {
	mss := g.Config().MSS
	type conn struct {
		client    netip.AddrPort
		seq, ack  uint32
		left      int // body bytes left of the request in progress; -1: send a head next
		requests  int
		handshake bool
	}
	conns := make([]*conn, spec.Conns)
	for i := range conns {
		conns[i] = &conn{
			client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(30000+i%20000)),
			seq:    uint32(i)*7919 + 1, ack: uint32(i)*104729 + 1, left: -1,
		}
	}
	body := make([]byte, mss)
	for i := range body {
		body[i] = 'b'
	}
	send := func(c *conn, fromClient bool, flags uint8, payload []byte) error {
		s := mirrorgen.Segment{Client: c.client, Server: server, FromClient: fromClient, Flags: flags, Seq: c.seq, Ack: c.ack, Payload: payload}
		if !fromClient {
			s.Seq, s.Ack = c.ack, c.seq
		}
		f, err := g.SegmentFrame(b.next(), s)
		if err != nil {
			return err
		}
		return b.add(ctx, f)
	}
	for {
		for _, c := range conns {
			if !c.handshake {
				c.handshake = true
				if err := send(c, true, mirrorgen.FlagSYN, nil); err != nil {
					return err
				}
				c.seq++
				if err := send(c, false, mirrorgen.FlagSYN|mirrorgen.FlagACK, nil); err != nil {
					return err
				}
				c.ack++
				if err := send(c, true, mirrorgen.FlagACK, nil); err != nil {
					return err
				}
				continue
			}
			var p []byte
			if c.left < 0 {
				p = []byte(fmt.Sprintf("GET /body/%s/%d HTTP/1.1\r\nHost: flood\r\nContent-Length: %d\r\n\r\n", c.client.Addr(), c.requests, spec.BodyBytes))
				c.left = spec.BodyBytes
				c.requests++
				b.res.Requests++
			} else {
				p = body[:min(c.left, mss)]
				c.left -= len(p)
				if c.left == 0 {
					c.left = -1
				}
			}
			if err := send(c, true, mirrorgen.FlagACK|mirrorgen.FlagPSH, p); err != nil {
				return err
			}
			c.seq += uint32(len(p))
		}
	}
}
