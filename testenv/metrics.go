package testenv

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Sample is one series of a Prometheus text exposition.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is one parsed scrape of shadowtap's /metrics, as the lab's tests,
// the demo and the benchmark driver read it.
type Metrics []Sample

// ParseMetrics reads the Prometheus text format (version 0.0.4): comment
// lines are skipped, every other line is name{labels} value [timestamp].
func ParseMetrics(r io.Reader) (Metrics, error) {
	var out Metrics
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

// Lookup adds every series of the metric name whose labels include all of
// match (label, value pairs); ok is false when no series matches.
func (m Metrics) Lookup(name string, match ...string) (total float64, ok bool) {
	for _, s := range m {
		if s.Name == name && hasLabels(s.Labels, match) {
			total += s.Value
			ok = true
		}
	}
	return total, ok
}

// Sum is Lookup's total, 0 when no series matches: for reports (the demo,
// the benchmark) that check the names they need with Has. Tests use Get.
func (m Metrics) Sum(name string, match ...string) float64 {
	v, _ := m.Lookup(name, match...)
	return v
}

// Get is Lookup for tests: a series that is not there fails the test at
// once, so that a renamed or vanished metric cannot pass a check for zero.
func (m Metrics) Get(t testing.TB, name string, match ...string) float64 {
	t.Helper()
	v, ok := m.Lookup(name, match...)
	if !ok {
		t.Fatalf("no series %s%q in the scrape (renamed or not exported?)", name, match)
	}
	return v
}

// Has reports whether any series of the metric name has all of match.
func (m Metrics) Has(name string, match ...string) bool {
	for _, s := range m {
		if s.Name == name && hasLabels(s.Labels, match) {
			return true
		}
	}
	return false
}

// ByLabel returns the metric's values summed per value of label.
func (m Metrics) ByLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.Name == name {
			out[s.Labels[label]] += s.Value
		}
	}
	return out
}

// Names lists the distinct metric names with the given prefix, sorted.
func (m Metrics) Names(prefix string) []string {
	seen := map[string]bool{}
	for _, s := range m {
		if strings.HasPrefix(s.Name, prefix) {
			seen[s.Name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// String formats the non-zero shadowtap_* series, one a line, for failure
// messages.
func (m Metrics) String() string {
	var b strings.Builder
	for _, s := range m {
		if !strings.HasPrefix(s.Name, "shadowtap_") || s.Value == 0 {
			continue
		}
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(s.Name)
		for i, k := range keys {
			sep := ","
			if i == 0 {
				sep = "{"
			}
			fmt.Fprintf(&b, "%s%s=%q", sep, k, s.Labels[k])
		}
		if len(keys) > 0 {
			b.WriteByte('}')
		}
		fmt.Fprintf(&b, " %v\n", s.Value)
	}
	return b.String()
}

func hasLabels(labels map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

func parseSampleLine(t string) (Sample, error) {
	var s Sample
	i := strings.IndexAny(t, "{ \t")
	if i <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = t[:i]
	rest := t[i:]
	if rest[0] == '{' {
		end, labels, err := parseLabels(rest)
		if err != nil {
			return s, err
		}
		s.Labels = labels
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
	s.Value = v
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
