package buildinfo

import (
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRead(t *testing.T) {
	i := Read()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(i.BPFObject) {
		t.Errorf("BPFObject %q: want 12 hex digits", i.BPFObject)
	}
	if i.Version == "" || i.Commit == "" {
		t.Errorf("empty fields: %+v", i)
	}
	s := i.String()
	for _, part := range []string{i.Version, i.Commit, i.GoVersion, i.BPFObject} {
		if !strings.Contains(s, part) {
			t.Errorf("%q lacks %q", s, part)
		}
	}
}

func TestCollector(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26", BPFObject: "0123456789ab"}
	want := `
# HELP shadowtap_build_info Always 1; the labels say which shadowtap build is running: version, commit, Go version and the hash of its BPF object.
# TYPE shadowtap_build_info gauge
shadowtap_build_info{bpf_object="0123456789ab",commit="abc",goversion="go1.26",version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(i.Collector(), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
