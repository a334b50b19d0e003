package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode"
)

// NewLab is Up for tests: it skips (or fails, see RequireRoot) without root,
// names the lab uniquely after the test when opt.Name is empty, and removes
// the lab in t.Cleanup, whether the test passes or fails.
func NewLab(tb testing.TB, opt Options) *Lab {
	tb.Helper()
	RequireRoot(tb)
	if opt.Name == "" {
		opt.Name = UniqueName(testPrefix(tb.Name()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Up(ctx, opt)
	if err != nil {
		tb.Fatalf("bringing up the mirror lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("removing the mirror lab: %v", err)
		}
	})
	return l
}

// testPrefix makes a short namespace prefix from a test name.
func testPrefix(name string) string {
	p := strings.Map(func(r rune) rune {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return -1
	}, name)
	if len(p) > 16 {
		p = p[:16]
	}
	return "st" + p
}
