package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// sample is one series of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is the parsed content of one /metrics response.
type scrape []sample

// parsePromText reads the Prometheus text format (version 0.0.4): comment
// lines are skipped, every other line is name{labels} value [timestamp].
func parsePromText(r io.Reader) (scrape, error) {
	var out scrape
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' {
			continue
		}
		s, err := parseSampleLine(t)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", line, t, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return out, nil
}

func parseSampleLine(t string) (sample, error) {
	var s sample
	i := strings.IndexAny(t, "{ \t")
	if i <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.name = t[:i]
	rest := t[i:]
	if rest[0] == '{' {
		end, labels, err := parseLabels(rest)
		if err != nil {
			return s, err
		}
		s.labels = labels
		rest = rest[end:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := parseFloat(fields[0])
	if err != nil {
		return s, err
	}
	s.value = v
	return s, nil
}

func parseFloat(f string) (float64, error) {
	switch f {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q: %w", f, err)
	}
	return v, nil
}

// parseLabels parses {a="x",b="y"} at the start of s and returns the index
// just past the closing brace.
func parseLabels(s string) (int, map[string]string, error) {
	labels := map[string]string{}
	i := 1
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return 0, nil, fmt.Errorf("unterminated labels")
		}
		if s[i] == '}' {
			return i + 1, labels, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return 0, nil, fmt.Errorf("label without '='")
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		if i >= len(s) || s[i] != '"' {
			return 0, nil, fmt.Errorf("label %s: value not quoted", key)
		}
		i++
		var b strings.Builder
		for {
			if i >= len(s) {
				return 0, nil, fmt.Errorf("label %s: unterminated value", key)
			}
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				switch s[i+1] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i+1])
				}
				i += 2
				continue
			}
			if c == '"' {
				i++
				break
			}
			b.WriteByte(c)
			i++
		}
		labels[key] = b.String()
	}
}

// sum adds every series of the metric name whose labels include all of
// match (label=value pairs). found reports whether any series matched.
func (sc scrape) sum(name string, match ...string) (total float64, found bool) {
	for _, s := range sc {
		if s.name != name || !hasLabels(s.labels, match) {
			continue
		}
		total += s.value
		found = true
	}
	return total, found
}

// get is sum without the found flag.
func (sc scrape) get(name string, match ...string) float64 {
	v, _ := sc.sum(name, match...)
	return v
}

// has reports whether the scrape has any series of the metric name.
func (sc scrape) has(name string) bool {
	_, ok := sc.sum(name)
	return ok
}

// byLabel returns the metric's values summed per value of label.
func (sc scrape) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range sc {
		if s.name == name {
			out[s.labels[label]] += s.value
		}
	}
	return out
}

func hasLabels(labels map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

// names lists the distinct metric names with the given prefix, sorted.
func (sc scrape) names(prefix string) []string {
	seen := map[string]bool{}
	for _, s := range sc {
		if strings.HasPrefix(s.name, prefix) {
			seen[s.name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
