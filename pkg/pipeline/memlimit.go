package pipeline

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/shadowtap/shadowtap/pkg/replay"
)

// Per-item sizes of the memory budget (README "Memory budget").
const (
	ringBufferBytes = 16 << 20       // the BPF ring buffer (xdp)
	shardQueueBytes = 66 * 256 << 10 // per shard: its queue of batch buffers
	shardHoldBytes  = 64 << 20       // per shard: out-of-order bytes held
	connStateBytes  = 1536           // per tracked connection, before what it holds
	runtimeBytes    = 64 << 20       // code, goroutine stacks, metrics, pools
)

// MemoryBudget is the most data the bounds of cfg let shadowtap hold: the
// sum README "Memory budget" states. The flood tests hold shadowtap's RSS
// to it.
func MemoryBudget(cfg Config) int64 {
	shards := int64(cfg.Shards)
	if shards <= 0 {
		shards = int64(runtime.GOMAXPROCS(0))
	}
	b := int64(runtimeBytes) + shards*(shardQueueBytes+shardHoldBytes+int64(cfg.MaxConns)*connStateBytes)
	if cfg.Capture == CaptureXDP {
		b += ringBufferBytes
	}
	if targets := int64(len(cfg.Targets)); targets > 0 {
		if cfg.Baseline != "" {
			targets++
		}
		b += cfg.BodyBudget + cfg.CompareBudget + targets*int64(cfg.MaxInflight)*cfg.MaxResponseHeaderBytes
		if cfg.Pipeline > 1 {
			// A pipelining worker's batch of request heads and its larger
			// read buffer.
			b += targets * int64(cfg.MaxInflight) * replay.PipelineWorkerBytes
		}
	}
	return b
}

// setMemoryLimit makes the Go runtime collect garbage sooner as the heap
// nears the memory budget (a soft limit: debug.SetMemoryLimit), so that
// garbage does not double the budget; GOMEMLIMIT, when set, wins. It
// returns the limit set, 0 when none.
func setMemoryLimit(cfg Config, log *slog.Logger) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := MemoryBudget(cfg) * 5 / 4
	debug.SetMemoryLimit(limit)
	log.Info("memory budget", "budget_mib", MemoryBudget(cfg)>>20, "go_memory_limit_mib", limit>>20)
	return limit
}
