// Package fleet gathers the verdict stage's figures into one /verdict
// document, wherever they are:
//
//	receivers' GET /verdict --+
//	--verdict-out files ------+--> fleet (verdict.Merge) --> one Document --> pkg/gate, pkg/report
//	Prometheus (PromQL sums) -+
//
// Each receiver behind the NLB keeps its own state; the fleet's figures are
// the exact sum of the receivers' (counts added, latency histograms merged
// bucket by bucket), read either from the receivers themselves or from a
// Prometheus server that scrapes them all. A source that cannot be read is an
// error, never an empty document.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// MaxDocumentBytes bounds a /verdict document read from a receiver or a
// file: at most --max-routes routes per target with two histograms each
// stay far below it.
const MaxDocumentBytes = 64 << 20

// Sources says where the figures come from: receivers' metrics addresses or
// --verdict-out files (From), or a Prometheus server (Prometheus). They are
// exclusive: Prometheus scrapes the same receivers, so adding both would
// count every exchange twice.
type Sources struct {
	From       []string // "http://127.0.0.1:9464" (GET /verdict is appended), or a file ("-" = stdin)
	Prometheus string   // Prometheus base URL, e.g. http://prometheus:9090
	// Match is a PromQL label matcher list added to every selector, e.g.
	// `job="shadowtap"`, to pick the receivers of one fleet.
	Match   string
	Timeout time.Duration // per HTTP request (default 10s)
	Client  *http.Client  // default: one with Timeout
	Stdin   io.Reader     // for "-" (default os.Stdin)
}

// Check validates the sources without reading them.
func (s Sources) Check() error {
	switch {
	case len(s.From) == 0 && s.Prometheus == "":
		return errors.New("no source: give --from URL|FILE (repeatable) or --prometheus URL")
	case len(s.From) > 0 && s.Prometheus != "":
		return errors.New("give either --from or --prometheus, not both: Prometheus scrapes the same receivers, so every exchange would count twice")
	case s.Match != "" && s.Prometheus == "":
		return errors.New("--prometheus-match needs --prometheus")
	}
	for _, f := range s.From {
		if f == "" {
			return errors.New("--from: empty value")
		}
		if isURL(f) {
			if _, err := verdictURL(f); err != nil {
				return err
			}
		}
	}
	if s.Prometheus != "" {
		if u, err := url.Parse(s.Prometheus); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--prometheus %q: want an http(s) URL such as http://prometheus:9090", s.Prometheus)
		}
	}
	return nil
}

// Load reads every source and returns one document: the merge of the
// --from documents, or the document built from Prometheus.
func Load(ctx context.Context, s Sources) (*verdict.Document, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if s.Timeout <= 0 {
		s.Timeout = 10 * time.Second
	}
	if s.Client == nil {
		s.Client = &http.Client{Timeout: s.Timeout}
	}
	if s.Prometheus != "" {
		return FromPrometheus(ctx, s.Client, s.Prometheus, s.Match, time.Now())
	}
	// Receivers are read in parallel (a fleet's worth of timeouts must not
	// add up), at most fetchers at a time; errors are reported in the order
	// the sources were given.
	docs := make([]*verdict.Document, len(s.From))
	errs := make([]error, len(s.From))
	sem := make(chan struct{}, fetchers)
	var wg sync.WaitGroup
	for i, f := range s.From {
		if !isURL(f) {
			docs[i], errs[i] = s.fromLocal(f)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			docs[i], errs[i] = FromURL(ctx, s.Client, f)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	d, err := verdict.Merge(docs...)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	return d, nil
}

// fetchers bounds the receivers read at the same time.
const fetchers = 16

// fromLocal reads a --verdict-out file, or standard input for "-".
func (s Sources) fromLocal(f string) (*verdict.Document, error) {
	if f != "-" {
		return FromFile(f)
	}
	in := s.Stdin
	if in == nil {
		in = os.Stdin
	}
	d, err := Decode(in)
	if err != nil {
		return nil, fmt.Errorf("--from -: reading standard input: %w", err)
	}
	return d, nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// verdictURL returns the /verdict URL of a receiver's metrics address: the
// address itself when it already names a path.
func verdictURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--from %q: not a receiver's metrics address (want e.g. http://127.0.0.1:9464)", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/verdict"
	}
	return u.String(), nil
}

// FromURL fetches a receiver's /verdict document; addr is its metrics
// address (http://host:9464) or the document's full URL.
func FromURL(ctx context.Context, client *http.Client, addr string) (*verdict.Document, error) {
	u, err := verdictURL(addr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("--from %s: %w", addr, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--from %s: fetching %s: %w", addr, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("--from %s: GET %s answered %s: %q (is it a shadowtap receiver's --metrics-addr, running with the verdict stage?)",
			addr, u, resp.Status, strings.TrimSpace(string(b)))
	}
	d, err := Decode(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("--from %s: %w", addr, err)
	}
	return d, nil
}

// FromFile reads a --verdict-out document.
func FromFile(path string) (*verdict.Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--from %s: %w", path, err)
	}
	defer f.Close()
	d, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("--from %s: %w", path, err)
	}
	return d, nil
}

// Decode reads one /verdict document (at most MaxDocumentBytes) and checks
// its schema version and figures.
func Decode(r io.Reader) (*verdict.Document, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the verdict document: %w", err)
	}
	if len(b) > MaxDocumentBytes {
		return nil, fmt.Errorf("verdict document larger than %d bytes", MaxDocumentBytes)
	}
	var d verdict.Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("not a verdict document: %w", err)
	}
	if d.Schema != verdict.SchemaVersion {
		return nil, fmt.Errorf("verdict document schema %d, this shadowtap reads schema %d", d.Schema, verdict.SchemaVersion)
	}
	for _, r := range d.Routes {
		if r.Differing > r.Exchanges {
			return nil, fmt.Errorf("verdict document: route %s %s has %d differing of %d exchanges", r.Target, r.Route, r.Differing, r.Exchanges)
		}
	}
	if d.Totals.Differing > d.Totals.Exchanges {
		return nil, fmt.Errorf("verdict document: %d differing of %d exchanges", d.Totals.Differing, d.Totals.Exchanges)
	}
	return &d, nil
}
