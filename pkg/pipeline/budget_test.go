package pipeline

import (
	"strings"
	"testing"
)

// TestValidateBodyBounds: the memory bounds of request bodies refuse
// nonsense with one line naming the flag.
func TestValidateBodyBounds(t *testing.T) {
	tests := []struct {
		name           string
		budget, qbytes int64
		wantErr        string
	}{
		{"defaults", 0, 0, ""},
		{"zero budget", -1, 0, "--body-budget"},
		{"negative queue bytes", 0, -5, "--queue-bytes"},
		{"one byte each", 1, 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.Capture, cfg.PcapFile = CapturePcap, "x.pcap"
			cfg.Ports, cfg.VNIs = []uint16{80}, []uint32{7}
			cfg.Targets = []string{"http://127.0.0.1:8080"}
			if tc.budget != 0 {
				cfg.BodyBudget = max(tc.budget, 0)
			}
			if tc.qbytes != 0 {
				cfg.QueueBytes = tc.qbytes
			}
			err := cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n")):
				t.Fatalf("error %v, want one line naming %s", err, tc.wantErr)
			}
		})
	}
}
