package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/shadowtap/shadowtap/pkg/verdict"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// TestPcapRunComparesAndWritesVerdict (issue 8): `run` on a capture file,
// replaying to a local shadow that answers otherwise than production: the
// pipeline wires the comparison after replay, every replayed request is
// compared, the diff log gets lines, and the /verdict document is written
// to --verdict-out when the file ends. No privilege needed.
func TestPcapRunComparesAndWritesVerdict(t *testing.T) {
	gen, err := mirrorgen.New(mirrorgen.Config{
		Conns: 3, TotalConns: 6, RequestsPerConn: 5,
		Mix: mirrorgen.Mix{Small: 4, Head: 1, Post: 1}, VNI: 7, Seed: 5, Truth: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "mirror.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := mirrorgen.NewFileWriter(f, mirrorgen.FormatPcap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Run(context.Background(), fw); err != nil {
		t.Fatal(err)
	}
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := 0 // requests replayed by default: GET and HEAD
	for _, c := range gen.Truth() {
		for _, r := range c.Requests {
			if r.Method == "GET" || r.Method == "HEAD" {
				want++
			}
		}
	}
	if want == 0 {
		t.Fatal("the generated traffic has no GET or HEAD")
	}

	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-New-Stack", "1") // a header production never sends
		w.Write([]byte("the new stack's answer"))
	}))
	defer shadow.Close()

	cfg := Defaults()
	cfg.Capture, cfg.PcapFile, cfg.PcapSpeed = CapturePcap, file, "max"
	cfg.Ports, cfg.VNIs = []uint16{labPort}, []uint32{7}
	cfg.Targets = []string{shadow.URL}
	cfg.MetricsAddr = ""
	cfg.DiffLog, cfg.DiffLogExamples = filepath.Join(dir, "diff.jsonl"), 1000
	cfg.VerdictOut = filepath.Join(dir, "verdict.json")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), labDeadline)
	defer cancel()
	if err := Run(ctx, cfg, Options{Log: testLogger(t)}); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(cfg.VerdictOut)
	if err != nil {
		t.Fatalf("--verdict-out not written at the end of the file: %v", err)
	}
	var d verdict.Document
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Schema != verdict.SchemaVersion || d.Totals.Exchanges != uint64(want) || len(d.Totals.Uncompared) != 0 {
		t.Errorf("document: schema %d, %d exchanges compared, uncompared %v; want %d, %d, none",
			d.Schema, d.Totals.Exchanges, d.Totals.Uncompared, verdict.SchemaVersion, want)
	}
	if d.Totals.Kinds[verdict.KindHeader] != uint64(want) {
		t.Errorf("header differences %d, want %d (X-New-Stack on every answer)", d.Totals.Kinds[verdict.KindHeader], want)
	}
	dl, err := os.Open(cfg.DiffLog)
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	lines := 0
	for sc := bufio.NewScanner(dl); sc.Scan(); lines++ {
		var l verdict.DiffLogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Schema != verdict.SchemaVersion {
			t.Fatalf("diff log line %q: %v", sc.Text(), err)
		}
	}
	if lines != want {
		t.Errorf("%d diff log lines, want %d: every compared exchange differs", lines, want)
	}
}
