package verdict

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Reasons a diff log line was not written (shadowtap_verdict_difflog_skipped_total).
const (
	SkipRate   = "rate"   // beyond --diff-log-examples lines per route and kind this minute
	SkipError  = "error"  // the file could not be written (lines lost)
	SkipClosed = "closed" // the engine had closed the log
)

// alwaysRedacted are the headers whose values the diff log never holds.
func alwaysRedacted() []string {
	return []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}
}

// redactQuery replaces every value of a raw query by REDACTED, keeping the
// names: "a=1&b=2&flag" -> "a=REDACTED&b=REDACTED&flag".
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if name, _, ok := strings.Cut(p, "="); ok {
			parts[i] = name + "=" + Redacted
		}
	}
	return strings.Join(parts, "&")
}

// redactDifferences returns diffs with the values of redacted headers
// replaced (an absent value stays "", which says the header is missing on
// that side without saying anything of the other's value).
func redactDifferences(diffs []Difference, redact map[string]bool) []Difference {
	out := make([]Difference, len(diffs))
	copy(out, diffs)
	for i := range out {
		d := &out[i]
		if d.Kind != KindHeader || !redact[http.CanonicalHeaderKey(d.Field)] {
			continue
		}
		if d.Production != "" {
			d.Production = Redacted
		}
		if d.Shadow != "" {
			d.Shadow = Redacted
		}
	}
	return out
}

// rateKey identifies a rate window of the diff log.
type rateKey struct {
	target, route string
	kind          Kind
}

// diffLog writes DiffLogLines to a JSONL file through a buffer, at most
// `examples` lines per target, route and kind per minute, rotating the file
// beyond maxBytes (FILE -> FILE.1, one old file kept). Write errors are
// logged once and counted; they never stop the engine.
type diffLog struct {
	path     string
	maxBytes int64
	examples int
	log      *slog.Logger

	mu        sync.Mutex
	f         *os.File
	w         *bufio.Writer
	size      int64 // bytes in the current file, including the buffer
	pending   uint64
	window    int64 // the unix minute of used
	used      map[rateKey]int
	written   uint64
	skipped   map[string]uint64
	errLogged bool
	closed    bool
}

const diffLogBuffer = 64 << 10

func openDiffLog(path string, maxBytes int64, examples int, log *slog.Logger) (*diffLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("diff log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("diff log: %w", err)
	}
	return &diffLog{
		path: path, maxBytes: maxBytes, examples: examples, log: log,
		f: f, w: bufio.NewWriterSize(f, diffLogBuffer), size: st.Size(),
		used: make(map[rateKey]int), skipped: make(map[string]uint64),
	}, nil
}

// allow applies the rate bound: a line is written when at least one of its
// kinds has had fewer than `examples` lines on the route this minute; it
// then counts against every kind it has.
func (l *diffLog) allow(now time.Time, target, route string, kinds []Kind) bool {
	if m := now.Unix() / 60; m != l.window {
		l.window = m
		clear(l.used)
	}
	ok := false
	for _, k := range kinds {
		if l.used[rateKey{target, route, k}] < l.examples {
			ok = true
		}
	}
	if !ok {
		return false
	}
	for _, k := range kinds {
		l.used[rateKey{target, route, k}]++
	}
	return true
}

// Write appends one line, subject to the rate bound.
func (l *diffLog) Write(now time.Time, line *DiffLogLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.skipped[SkipClosed]++
		return
	}
	if !l.allow(now, line.Target, line.Route, line.Kinds) {
		l.skipped[SkipRate]++
		return
	}
	b, err := json.Marshal(line)
	if err != nil { // cannot happen with these types; counted all the same
		l.fail(fmt.Errorf("diff log: encoding a line: %w", err), 1)
		return
	}
	b = append(b, '\n')
	n := int64(len(b))
	if l.f == nil || l.size > 0 && l.size+n > l.maxBytes {
		l.rotate()
		if l.f == nil {
			l.skipped[SkipError]++
			return
		}
	}
	if l.w.Available() < len(b) {
		l.flushLocked()
	}
	if _, err := l.w.Write(b); err != nil {
		l.fail(fmt.Errorf("diff log %s: %w", l.path, err), l.pending+1)
		return
	}
	l.pending++
	l.size += n
}

// fail counts lost lines, logs the first error, and resets the buffer so
// that later lines may still be written.
func (l *diffLog) fail(err error, lost uint64) {
	l.skipped[SkipError] += lost
	l.pending = 0
	if !l.errLogged {
		l.errLogged = true
		l.log.Error("diff log: lines lost (logged once; counted in "+MetricDiffLogSkipped+`{reason="error"})`, "err", err)
	}
	if l.f != nil {
		l.w.Reset(l.f)
	}
}

func (l *diffLog) flushLocked() {
	if l.f == nil || l.pending == 0 && l.w.Buffered() == 0 {
		return
	}
	if err := l.w.Flush(); err != nil {
		l.fail(fmt.Errorf("diff log %s: %w", l.path, err), l.pending)
		return
	}
	l.written += l.pending
	l.pending = 0
}

// rotate moves the current file to FILE.1 (replacing the older one) and
// starts a new FILE.
func (l *diffLog) rotate() {
	l.flushLocked()
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			l.fail(fmt.Errorf("diff log %s: closing for rotation: %w", l.path, err), 0)
		}
		l.f = nil
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.fail(fmt.Errorf("diff log: rotating %s: %w", l.path, err), 0)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		l.fail(fmt.Errorf("diff log: reopening after rotation: %w", err), 0)
		return
	}
	l.f = f
	l.w.Reset(f)
	l.size = 0
}

// Flush writes the buffered lines to the file.
func (l *diffLog) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

// Close flushes and closes the file; later lines are counted SkipClosed.
func (l *diffLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.flushLocked()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("diff log %s: %w", l.path, err)
	}
	return nil
}

// counts returns the lines written and skipped by reason.
func (l *diffLog) counts() (written uint64, skipped map[string]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	skipped = make(map[string]uint64, 3)
	for _, r := range []string{SkipRate, SkipError, SkipClosed} {
		skipped[r] = l.skipped[r]
	}
	return l.written, skipped
}
