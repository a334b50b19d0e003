package verdict

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// maxNoiseFields bounds the noise fields kept per route, in a receiver's
// document and in a merged one.
const maxNoiseFields = 20

// Merge sums several /verdict documents (one per receiver, each seeing part
// of the traffic) into one, exactly: counts are summed, latency histograms
// merged bucket by bucket (so quantiles of the result are those of all the
// traffic), routes merged by target and route, the timeline by minute.
// Receivers is the sum of the documents' Receivers (a document that says 0
// counts as 1), Started the earliest start, Generated the latest.
//
// It refuses documents of another schema version and histograms with other
// bucket bounds: summing those would give wrong figures. The inputs are not
// modified; the result shares no memory with them.
func Merge(docs ...*Document) (*Document, error) {
	if len(docs) == 0 {
		return nil, errors.New("merging verdict documents: none given")
	}
	out := &Document{
		Schema: SchemaVersion,
		Totals: Totals{Kinds: map[Kind]uint64{}, Noise: map[Kind]uint64{}, Uncompared: map[string]uint64{}},
		Routes: []Route{},
	}
	type routeKey struct{ target, route string }
	routes := map[routeKey]*Route{}
	noise := map[routeKey]map[NoiseField]uint64{} // key fields without Count -> count
	minutes := map[time.Time]*Minute{}
	headers, paths, baselines := newOrderedSet(), newOrderedSet(), newOrderedSet()

	for i, d := range docs {
		if d == nil {
			return nil, fmt.Errorf("merging verdict documents: document %d is missing", i+1)
		}
		if d.Schema != SchemaVersion {
			return nil, fmt.Errorf("merging verdict documents: document %d has schema %d, this shadowtap reads schema %d", i+1, d.Schema, SchemaVersion)
		}
		if d.Receivers > 0 {
			out.Receivers += d.Receivers
		} else {
			out.Receivers++
		}
		if !d.Started.IsZero() && (out.Started.IsZero() || d.Started.Before(out.Started)) {
			out.Started = d.Started
		}
		if d.Generated.After(out.Generated) {
			out.Generated = d.Generated
		}
		out.Totals.Exchanges += d.Totals.Exchanges
		out.Totals.Differing += d.Totals.Differing
		addKinds(out.Totals.Kinds, d.Totals.Kinds)
		addKinds(out.Totals.Noise, d.Totals.Noise)
		for r, n := range d.Totals.Uncompared {
			out.Totals.Uncompared[r] += n
		}

		for _, r := range d.Routes {
			k := routeKey{r.Target, r.Route}
			m := routes[k]
			if m == nil {
				m = &Route{Target: r.Target, Route: r.Route, Kinds: map[Kind]uint64{}, Noise: map[Kind]uint64{},
					NoiseFields: []NoiseField{}}
				routes[k] = m
				noise[k] = map[NoiseField]uint64{}
			}
			m.Exchanges += r.Exchanges
			m.Differing += r.Differing
			addKinds(m.Kinds, r.Kinds)
			addKinds(m.Noise, r.Noise)
			for _, f := range r.NoiseFields {
				c := f.Count
				f.Count = 0
				noise[k][f] += c
			}
			if err := m.Latency.Production.Merge(r.Latency.Production); err != nil {
				return nil, fmt.Errorf("merging verdict documents: document %d, %s %s, production latency: %w", i+1, r.Target, r.Route, err)
			}
			if err := m.Latency.Shadow.Merge(r.Latency.Shadow); err != nil {
				return nil, fmt.Errorf("merging verdict documents: document %d, %s %s, shadow latency: %w", i+1, r.Target, r.Route, err)
			}
		}

		for _, mi := range d.Timeline {
			start := mi.Start.UTC().Truncate(time.Minute)
			m := minutes[start]
			if m == nil {
				m = &Minute{Start: start, Kinds: map[Kind]uint64{}}
				minutes[start] = m
			}
			m.Exchanges += mi.Exchanges
			m.Differing += mi.Differing
			addKinds(m.Kinds, mi.Kinds)
		}

		headers.add(d.Ignored.Headers...)
		paths.add(d.Ignored.JSONPaths...)
		if d.Ignored.Baseline != "" {
			baselines.add(d.Ignored.Baseline)
		}
	}

	for k, r := range routes {
		r.NoiseFields = topNoiseFields(noise[k])
		if len(r.Latency.Production.Counts) == 0 {
			r.Latency.Production = NewHistogram()
		}
		if len(r.Latency.Shadow.Counts) == 0 {
			r.Latency.Shadow = NewHistogram()
		}
		r.Latency.Production.Finish()
		r.Latency.Shadow.Finish()
		out.Routes = append(out.Routes, *r)
	}
	sort.Slice(out.Routes, func(i, j int) bool {
		a, b := out.Routes[i], out.Routes[j]
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		return a.Route < b.Route
	})

	out.Timeline = make([]Minute, 0, len(minutes))
	for _, m := range minutes {
		out.Timeline = append(out.Timeline, *m)
	}
	sort.Slice(out.Timeline, func(i, j int) bool { return out.Timeline[i].Start.Before(out.Timeline[j].Start) })

	out.Ignored = Ignored{Headers: headers.list, JSONPaths: paths.list, Baseline: strings.Join(baselines.list, ", ")}
	return out, nil
}

func addKinds(dst, src map[Kind]uint64) {
	for k, n := range src {
		dst[k] += n
	}
}

// topNoiseFields returns the noise fields with the most discarded
// differences first (then by kind, field and source), at most maxNoiseFields.
func topNoiseFields(m map[NoiseField]uint64) []NoiseField {
	out := make([]NoiseField, 0, len(m))
	for f, c := range m {
		f.Count = c
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Count != b.Count:
			return a.Count > b.Count
		case a.Kind != b.Kind:
			return a.Kind < b.Kind
		case a.Field != b.Field:
			return a.Field < b.Field
		}
		return a.Source < b.Source
	})
	if len(out) > maxNoiseFields {
		out = out[:maxNoiseFields]
	}
	return out
}

// orderedSet keeps strings in first-seen order without duplicates.
type orderedSet struct {
	seen map[string]bool
	list []string
}

func newOrderedSet() *orderedSet { return &orderedSet{seen: map[string]bool{}, list: []string{}} }

func (s *orderedSet) add(vs ...string) {
	for _, v := range vs {
		if !s.seen[v] {
			s.seen[v] = true
			s.list = append(s.list, v)
		}
	}
}
