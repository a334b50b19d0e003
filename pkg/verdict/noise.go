package verdict

import (
	"sort"
	"strings"
)

// Noise sources, as NoiseField.Source says them.
const (
	// NoiseBaseline: the field differs between production and the baseline
	// on this route often enough (see minNoiseHits, minNoisePercent), so it
	// is ignored on the route while that holds.
	NoiseBaseline = "baseline"
	// NoiseBaselineExchange: the baseline's answer to the same request
	// differed from production's in this field (read-replica lag, a clock).
	NoiseBaselineExchange = "baseline-exchange"
)

// maxNoisePerRoute bounds the fields learned as noise on one route, and the
// noise fields counted per target and route.
const maxNoisePerRoute = 256

// A field is route noise once it has differed between production and the
// baseline in at least minNoiseHits exchanges and in at least
// minNoisePercent of the route's exchanges the baseline answered. A
// baseline that fails once (a 500, a timeout) must not hide the shadow's
// status differences on the route for good; a field whose differences were
// a burst stops being noise as the route's exchanges grow. The exchange's
// own noise (the baseline's answer to the same request) needs no threshold.
const (
	minNoiseHits    = 3
	minNoisePercent = 5
)

// maxDocNoiseFields bounds Route.NoiseFields in the document.
const maxDocNoiseFields = 20

// generalizeKey returns the key a difference is learned under for a route:
// JSON array indices become [*], so that "$.items[3].price" learned on one
// exchange also covers "$.items[7].price" on the next. Indices inside
// quoted member names ($['a[1]']) are left alone. Keys of other kinds are
// returned unchanged.
func generalizeKey(key string) string {
	if !strings.HasPrefix(key, string(KindBody)+" ") || !strings.Contains(key, "[") {
		return key
	}
	var b strings.Builder
	b.Grow(len(key))
	inQuote := false
	for i := 0; i < len(key); i++ {
		c := key[i]
		if inQuote {
			b.WriteByte(c)
			switch c {
			case '\\':
				if i+1 < len(key) {
					i++
					b.WriteByte(key[i])
				}
			case '\'':
				inQuote = false
			}
			continue
		}
		if c == '\'' {
			inQuote = true
			b.WriteByte(c)
			continue
		}
		if c == '[' {
			j := i + 1
			for j < len(key) && key[j] >= '0' && key[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(key) && key[j] == ']' {
				b.WriteString("[*]")
				i = j
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// fieldOfKey returns the field part of a Key ("kind field").
func fieldOfKey(key string) string {
	_, f, _ := strings.Cut(key, " ")
	return f
}

// learnedField is one field learned as noise on a route.
type learnedField struct {
	kind  Kind
	field string // generalized
	hits  uint64 // exchanges in which it differed between production and the baseline
}

// noiseBook holds the noise learned from the baseline, per route template.
// Routes are capped like a target's (beyond, one shared "other" set).
//
// It is written only by the goroutine that processes exchanges, under the
// engine's mutex; that goroutine reads it without the mutex, the document
// under it.
type noiseBook struct {
	routes   *routeSet
	learned  map[string]map[string]*learnedField // route label -> generalized key -> field
	compared map[string]uint64                   // route label -> exchanges the baseline answered
}

func newNoiseBook(maxRoutes int) *noiseBook {
	return &noiseBook{routes: newRouteSet(maxRoutes), learned: make(map[string]map[string]*learnedField),
		compared: make(map[string]uint64)}
}

// learn records one exchange the baseline answered on a route, with the
// differences between production and the baseline (none: it counts too).
// Beyond maxNoisePerRoute fields a route learns no more; it reports how
// many keys it could not keep.
func (n *noiseBook) learn(tmpl string, diffs []Difference) (dropped int) {
	label := n.routes.label(tmpl)
	n.compared[label]++
	if len(diffs) == 0 {
		return 0
	}
	set := n.learned[label]
	if set == nil {
		set = make(map[string]*learnedField)
		n.learned[label] = set
	}
	seen := make(map[string]bool, len(diffs))
	for _, d := range diffs {
		k := generalizeKey(d.Key())
		if seen[k] {
			continue // one exchange counts once per field
		}
		seen[k] = true
		if f, ok := set[k]; ok {
			f.hits++
			continue
		}
		if len(set) >= maxNoisePerRoute {
			dropped++
			continue
		}
		set[k] = &learnedField{kind: d.Kind, field: fieldOfKey(k), hits: 1}
	}
	return dropped
}

// label is the noise book's label of a route template.
func (n *noiseBook) labelOf(tmpl string) string {
	if !n.routes.known[tmpl] {
		return OtherRoute
	}
	return tmpl
}

// isNoise says whether f is noise on a route whose baseline answered
// compared exchanges.
func isNoise(f *learnedField, compared uint64) bool {
	return f.hits >= minNoiseHits && f.hits*100 >= minNoisePercent*compared
}

// has reports whether the generalized key is noise learned on the route.
func (n *noiseBook) has(tmpl, gkey string) bool {
	label := n.labelOf(tmpl)
	f, ok := n.learned[label][gkey]
	return ok && isNoise(f, n.compared[label])
}

// fields returns the fields that are noise on a route label now.
func (n *noiseBook) fields(label string) map[string]learnedField {
	out := make(map[string]learnedField)
	for k, f := range n.learned[label] {
		if isNoise(f, n.compared[label]) {
			out[k] = *f
		}
	}
	return out
}

// noiseHit is one difference discarded as noise.
type noiseHit struct {
	kind   Kind
	gkey   string
	source string
}

// filterNoise splits a shadow's differences into those that count and
// those that are noise: the exchange's own noise first (the baseline's
// answer to this request differed in that field), then the route's.
func filterNoise(diffs []Difference, exchange map[string]bool, book *noiseBook, tmpl string) (kept []Difference, noise []noiseHit) {
	for _, d := range diffs {
		k := d.Key()
		switch {
		case exchange[k]:
			noise = append(noise, noiseHit{kind: d.Kind, gkey: generalizeKey(k), source: NoiseBaselineExchange})
		case book != nil && book.has(tmpl, generalizeKey(k)):
			noise = append(noise, noiseHit{kind: d.Kind, gkey: generalizeKey(k), source: NoiseBaseline})
		default:
			kept = append(kept, d)
		}
	}
	return kept, noise
}

// docNoiseFields lists a route's noise fields for the document: the
// target's counted ones and the route's learned ones (count 0 when nothing
// was discarded yet), most counted first, at most maxDocNoiseFields.
func docNoiseFields(counted map[string]*NoiseField, learned map[string]learnedField) []NoiseField {
	out := make([]NoiseField, 0, len(counted)+len(learned))
	seen := make(map[string]bool, len(counted))
	for _, f := range counted {
		out = append(out, *f)
		if f.Source == NoiseBaseline {
			seen[string(f.Kind)+" "+f.Field] = true
		}
	}
	for k, f := range learned {
		if !seen[k] {
			out = append(out, NoiseField{Kind: f.kind, Field: f.field, Source: NoiseBaseline})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Source < b.Source
	})
	if len(out) > maxDocNoiseFields {
		out = out[:maxDocNoiseFields]
	}
	return out
}
