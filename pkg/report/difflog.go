package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// Bounds of what is kept from diff logs: they can be large (100 MiB per file
// by default), the report needs a few examples per route.
const (
	maxDiffLogLine    = 1 << 20 // longer lines are skipped and counted
	examplesPerRoute  = 3       // distinct sets of kinds kept per route
	maxExampleRoutes  = 10000   // routes with examples; beyond, lines are counted and dropped
	maxDiffsPerSample = 20      // differences kept per example (the engine writes at most 20 JSON paths)
)

// Examples are differing exchanges read from --diff-log files, a few per
// target and route: for each distinct set of kinds, the latest line.
type Examples struct {
	routes map[[2]string][]verdict.DiffLogLine
	// Lines counts the lines read; Skipped those not used, by reason
	// ("not JSON", "schema", "too long", "routes").
	Lines   int
	Skipped map[string]int
}

// NewExamples returns an empty set.
func NewExamples() *Examples {
	return &Examples{routes: map[[2]string][]verdict.DiffLogLine{}, Skipped: map[string]int{}}
}

// ReadDiffLogs reads the JSONL files (a rotated FILE.1 before FILE gives
// the latest lines precedence).
func ReadDiffLogs(paths []string) (*Examples, error) {
	ex := NewExamples()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("--diff-log %s: %w", p, err)
		}
		err = ex.Read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--diff-log %s: %w", p, err)
		}
	}
	return ex, nil
}

// Read adds the lines of one diff log. Lines that are not diff log lines of
// this schema are counted in Skipped, never an error: a log cut by rotation
// or a crash still gives its other lines.
func (e *Examples) Read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !tooLong {
				if len(line)+len(chunk) > maxDiffLogLine {
					tooLong, line = true, line[:0]
				} else {
					line = append(line, chunk...)
				}
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		if !tooLong {
			line = append(line, chunk...)
			if len(line) > maxDiffLogLine {
				tooLong = true
			}
		}
		if tooLong {
			e.Lines++
			e.Skipped["too long"]++
		} else if len(bytes.TrimSpace(line)) > 0 {
			e.Lines++
			e.add(line)
		}
		line, tooLong = line[:0], false
		if err != nil { // io.EOF
			return nil
		}
	}
}

func (e *Examples) add(b []byte) {
	var l verdict.DiffLogLine
	if err := json.Unmarshal(b, &l); err != nil {
		e.Skipped["not JSON"]++
		return
	}
	if l.Schema != verdict.SchemaVersion {
		e.Skipped["schema"]++
		return
	}
	if len(l.Differences) == 0 {
		e.Skipped["no differences"]++
		return
	}
	if len(l.Differences) > maxDiffsPerSample {
		l.Differences = l.Differences[:maxDiffsPerSample]
	}
	k := [2]string{l.Target, l.Route}
	list, ok := e.routes[k]
	if !ok && len(e.routes) >= maxExampleRoutes {
		e.Skipped["routes"]++
		return
	}
	kinds := kindSet(l)
	for i := range list {
		if kindSet(list[i]) == kinds {
			list[i] = l // the latest of this set of kinds
			return
		}
	}
	if len(list) >= examplesPerRoute {
		e.Skipped["enough examples"]++
		return
	}
	e.routes[k] = append(list, l)
}

func kindSet(l verdict.DiffLogLine) string {
	var ks []string
	for _, d := range l.Differences {
		ks = append(ks, string(d.Kind))
	}
	slices.Sort(ks)
	return strings.Join(slices.Compact(ks), ",")
}

// For returns the examples of a route, the ones with the most kinds first.
func (e *Examples) For(target, route string) []verdict.DiffLogLine {
	if e == nil {
		return nil
	}
	list := slices.Clone(e.routes[[2]string{target, route}])
	slices.SortStableFunc(list, func(a, b verdict.DiffLogLine) int {
		return len(strings.Split(kindSet(b), ",")) - len(strings.Split(kindSet(a), ","))
	})
	return list
}

// Empty says whether no example was read.
func (e *Examples) Empty() bool { return e == nil || len(e.routes) == 0 }
