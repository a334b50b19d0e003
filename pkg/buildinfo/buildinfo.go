// Package buildinfo says which shadowtap is running: its version, the commit
// it was built from, the Go version and the hash of the BPF object it loads.
// It sits beside the data path: `shadowtap version`, `shadowtap --version`
// and the shadowtap_build_info metric read it.
package buildinfo

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowtap/shadowtap/bpf"
)

// version is set at link time by `make build`
// (-ldflags "-X github.com/shadowtap/shadowtap/pkg/buildinfo.version=...");
// otherwise the module version, or "devel".
var version string

// Info describes the running binary.
type Info struct {
	Version   string // release or `git describe`; "devel" when unknown
	Commit    string // VCS revision, with "-dirty" when built from a modified tree; "unknown" without VCS data
	GoVersion string
	BPFObject string // SHA-256 of the embedded BPF object, first 12 hex digits
}

// Read returns the build's Info.
func Read() Info {
	i := Info{Version: version, Commit: "unknown", BPFObject: bpf.ObjectSHA256()[:12]}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		i.GoVersion = bi.GoVersion
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && i.Commit != "unknown" {
			i.Commit += "-dirty"
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String is the one line `shadowtap --version` prints.
func (i Info) String() string {
	return fmt.Sprintf("shadowtap %s (commit %s, %s, bpf object %s)", i.Version, i.Commit, i.GoVersion, i.BPFObject)
}

// Collector returns the shadowtap_build_info gauge: always 1, the build in
// its labels (join it to other series to see which version reported them).
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "shadowtap_build_info",
		Help: "Always 1; the labels say which shadowtap build is running: version, commit, Go version and the hash of its BPF object.",
		ConstLabels: prometheus.Labels{
			"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion, "bpf_object": i.BPFObject,
		},
	})
	g.Set(1)
	return g
}
