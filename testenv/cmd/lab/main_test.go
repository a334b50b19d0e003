package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/testenv"
)

func TestUpStatusDown(t *testing.T) {
	testenv.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := testenv.UniqueName("stcmdlab")
	t.Cleanup(func() { _ = testenv.Remove(name, nil) })

	tests := []struct {
		args    []string
		wantErr bool
		want    []string // lines expected in stdout
	}{
		{[]string{"status", "--name", name}, true, nil},
		{[]string{"up", "--name", name, "--vni", "77"}, false, []string{"LAB_NAME=" + name, "RECV_NS=" + name + "-recv", "RECV_IFACE=mir0", "VNI=77", "MIRROR_SOURCE_CIDR=10.82.0.1/32"}},
		{[]string{"up", "--name", name, "--vni", "78"}, false, []string{"VNI=77"}}, // already up: reported as it is
		{[]string{"status", "--name", name}, false, []string{"PROD_NS=" + name + "-prod", "VNI=77"}},
		{[]string{"down", "--name", name}, false, nil},
		{[]string{"down", "--name", name}, false, nil},
		{[]string{"status", "--name", name}, true, nil},
		{[]string{"up", "--name", name, "--vni", "16777216"}, true, nil},
		{[]string{"frobnicate"}, true, nil},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(ctx, tt.args, &out, &errOut)
		if (err != nil) != tt.wantErr {
			t.Fatalf("lab %s: error %v, want error %v (stderr %s)", strings.Join(tt.args, " "), err, tt.wantErr, errOut.String())
		}
		lines := strings.Split(out.String(), "\n")
		for _, w := range tt.want {
			found := false
			for _, l := range lines {
				found = found || l == w
			}
			if !found {
				t.Errorf("lab %s: no line %q in\n%s", strings.Join(tt.args, " "), w, out.String())
			}
		}
	}
}
