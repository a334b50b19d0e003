// Package httpx is the pipeline stage after reassembly: an incremental
// HTTP/1.x parser for both directions of a connection that pairs production's
// responses with their requests and hands Exchanges to the replay stage.
package httpx
