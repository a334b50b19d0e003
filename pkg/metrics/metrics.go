// Package metrics exposes every stage's counters to Prometheus. It sits beside
// the data path: each stage keeps its own atomic counters and a Snapshot; the
// collectors here read those snapshots when /metrics is scraped, so the data
// path never waits on the metrics.
package metrics

import (
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shadowtap/shadowtap/pkg/event"
)

// Namespace prefixes every metric name.
const Namespace = "shadowtap"

// Handler serves reg in the Prometheus exposition format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Capture returns a collector for the capture stage's counters:
// shadowtap_capture_packets_total{outcome=…}, shadowtap_capture_truncated_total
// and shadowtap_capture_bytes_total.
func Capture(read func() (event.Counters, error)) prometheus.Collector {
	return &captureCollector{
		read:      read,
		packets:   prometheus.NewDesc(Namespace+"_capture_packets_total", "Mirror packets by capture outcome; every packet is in exactly one outcome.", []string{"outcome"}, nil),
		truncated: prometheus.NewDesc(Namespace+"_capture_truncated_total", "Segments the mirror truncated (flagged, never presented whole).", nil, nil),
		bytes:     prometheus.NewDesc(Namespace+"_capture_bytes_total", "Bytes of mirror packets seen.", nil, nil),
	}
}

type captureCollector struct {
	read                      func() (event.Counters, error)
	packets, truncated, bytes *prometheus.Desc
}

func (c *captureCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.truncated
	ch <- c.bytes
}

func (c *captureCollector) Collect(ch chan<- prometheus.Metric) {
	v, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.packets, err)
		return
	}
	for o := event.Outcome(0); o < event.NumOutcomes; o++ {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v.Outcomes[o]), o.String())
	}
	ch <- prometheus.MustNewConstMetric(c.truncated, prometheus.CounterValue, float64(v.Truncated))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.Bytes))
}

// Stage returns a collector that exposes every numeric field of the struct
// that snapshot returns as shadowtap_<stage>_<field>: counters with a _total
// suffix, and gauges for fields that hold a current level (names containing
// Tracked, Active, Inflight, InFlight, Queued, Held, Current or Open but not
// Opened). Nested structs add their field name to the prefix; map[string]
// fields become one series per key with a "key" label. New counters in a
// stage's Stats appear without touching this package.
//
// A snapshot type gives each field its HELP sentence by implementing Helper;
// a field without one gets a placeholder that a test in each stage refuses.
func Stage(stage string, snapshot func() any) prometheus.Collector {
	return &stageCollector{prefix: Namespace + "_" + stage, snapshot: snapshot}
}

// Helper is implemented by a stage's snapshot type: MetricHelp maps a Go
// field name to the sentence a person reads in /metrics' HELP line.
type Helper interface {
	MetricHelp() map[string]string
}

// MissingHelp is the start of the HELP text of a field whose snapshot gives
// none; tests look for it.
const MissingHelp = "undocumented:"

type stageCollector struct {
	prefix   string
	snapshot func() any
}

// Describe sends no descriptors: the collector is unchecked, since its
// metrics follow the snapshot's fields.
func (c *stageCollector) Describe(chan<- *prometheus.Desc) {}

func (c *stageCollector) Collect(ch chan<- prometheus.Metric) {
	emit(ch, c.prefix, "", reflect.ValueOf(c.snapshot()))
}

// emit sends the metrics of v under name; doc is the HELP text for a
// number or map (from the enclosing struct's Helper).
func emit(ch chan<- prometheus.Metric, name, doc string, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			emit(ch, name, doc, v.Elem())
		}
	case reflect.Struct:
		var docs map[string]string
		if h, ok := v.Interface().(Helper); ok {
			docs = h.MetricHelp()
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() {
				emit(ch, name+"_"+snake(f.Name), docs[f.Name], v.Field(i))
			}
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		it := v.MapRange()
		for it.Next() {
			if f, ok := number(it.Value()); ok {
				desc := prometheus.NewDesc(metricName(name), help(name, doc), []string{"key"}, nil)
				ch <- prometheus.MustNewConstMetric(desc, valueType(name), f, it.Key().String())
			}
		}
	default:
		if f, ok := number(v); ok {
			desc := prometheus.NewDesc(metricName(name), help(name, doc), nil, nil)
			ch <- prometheus.MustNewConstMetric(desc, valueType(name), f)
		}
	}
}

func number(v reflect.Value) (float64, bool) {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	}
	return 0, false
}

var gaugeWords = []string{"tracked", "active", "inflight", "in_flight", "queued", "held", "current", "open"}

func isGauge(name string) bool {
	last := name[strings.LastIndexByte(name, '_')+1:]
	for _, w := range gaugeWords {
		if strings.Contains(name, "_"+w) && !strings.HasSuffix(name, "opened") {
			return true
		}
		if last == w {
			return true
		}
	}
	return false
}

func valueType(name string) prometheus.ValueType {
	if isGauge(name) {
		return prometheus.GaugeValue
	}
	return prometheus.CounterValue
}

func metricName(name string) string {
	if isGauge(name) || strings.HasSuffix(name, "_total") {
		return name
	}
	return name + "_total"
}

func help(name, doc string) string {
	if doc != "" {
		return doc
	}
	return MissingHelp + " " + strings.ReplaceAll(strings.TrimPrefix(name, Namespace+"_"), "_", " ") + " (see README, Metrics)."
}

// snake turns a Go field name into snake_case: ReqTooLarge → req_too_large,
// HTTPGaps → http_gaps.
func snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Undocumented gathers c and returns the names of its metrics whose HELP
// text is the MissingHelp placeholder; tests use it so that a new counter
// cannot ship without a sentence.
func Undocumented(c prometheus.Collector) ([]string, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetHelp(), MissingHelp) {
			out = append(out, mf.GetName())
		}
	}
	return out, nil
}
