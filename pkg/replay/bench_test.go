package replay

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// BenchmarkReplayRoundTrip measures the replay stage end to end: requests
// go through Request, the target's queue and a worker to a local shadow
// server, whose response body is drained. ns/op is per replayed request;
// allocs/op and cpu-ns/op (the process's user and system CPU time, less
// sensitive than ns/op to other load on the machine) count every goroutine,
// the test server's included.
//
// The "compare" variants hand every exchange to a comparison stage that
// discards it: the cost of the join, production's header and body copies,
// and keeping and hashing the shadow's body. The "pipeline=8" variants
// let each worker write up to 8 waiting requests at once (--pipeline 8).
func BenchmarkReplayRoundTrip(b *testing.B) {
	for _, size := range []int{512, 32 << 10} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) { benchReplay(b, size, false, 1) })
		b.Run(fmt.Sprintf("body=%d/compare", size), func(b *testing.B) { benchReplay(b, size, true, 1) })
		b.Run(fmt.Sprintf("body=%d/pipeline=8", size), func(b *testing.B) { benchReplay(b, size, false, 8) })
		b.Run(fmt.Sprintf("body=%d/compare/pipeline=8", size), func(b *testing.B) { benchReplay(b, size, true, 8) })
	}
}

// discardVerdict is a comparison stage that drops what it is handed.
type discardVerdict struct{}

func (discardVerdict) Submit(*verdict.Exchange)  {}
func (discardVerdict) Uncompared(string, string) {}

func benchReplay(b *testing.B, size int, compare bool, pipeline int) {
	body := make([]byte, size)
	// Pacing: the producer takes a token per request and the shadow gives it
	// back once answered, so the queue never overflows and the producer
	// blocks instead of spinning.
	const window = 256
	tokens := make(chan struct{}, window)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
		select {
		case <-tokens:
		default:
		}
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Targets = append(cfg.Targets, mustURL(b, srv.URL))
	cfg.Pipeline = pipeline
	if compare {
		cfg.Verdict = discardVerdict{}
	}
	r, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	ex := mkEx(b, "GET /api/v1/items/42?lang=en&page=3 HTTP/1.1\n"+
		"Host: shop.example.com\n"+
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\n"+
		"Accept: application/json\n"+
		"Accept-Encoding: gzip, deflate\n"+
		"Cookie: session=abcdef0123456789; theme=dark\n"+
		"X-Request-Id: 5f0c1b7e-3c2a-4f51-9d1e-6a7b8c9d0e1f\n"+
		"Connection: keep-alive\n", "", testClient)
	prodBody(ex, 200, string(body), 1<<20, "Content-Type", "text/plain", "Content-Length", fmt.Sprint(len(body)))
	t := r.targets[0]
	replayed := func() uint64 {
		var n uint64
		for i := range t.stats.replayed {
			n += t.stats.replayed[i].Load()
		}
		return n
	}
	// Warm the connection pool.
	for range cfg.MaxInflight {
		tokens <- struct{}{}
		r.Request(ex)
		r.Response(ex)
	}
	for replayed() < uint64(cfg.MaxInflight) {
		time.Sleep(time.Millisecond)
	}
	base := replayed()
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		tokens <- struct{}{}
		r.Request(ex)
		r.Response(ex)
	}
	for replayed()-base < uint64(b.N) {
		if s := r.stats.Snapshot(); s.Targets[0].DroppedQueue+s.Targets[0].FailedError+s.Targets[0].FailedConnect+s.Targets[0].FailedTimeout > 0 {
			b.Fatalf("requests lost: %+v", s.Targets[0])
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if s := r.stats.Snapshot().Targets[0]; pipeline > 1 && s.PipelineBatches > 0 {
		b.ReportMetric(float64(s.PipelinedRequests)/float64(s.PipelineBatches), "req/batch")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
