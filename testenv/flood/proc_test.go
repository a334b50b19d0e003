package flood

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestProcStatus reads this process's memory as the flood reads
// shadowtap's, and fails clearly for a process that is gone.
func TestProcStatus(t *testing.T) {
	p := Proc{PID: os.Getpid()}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS == 0 || st.PeakRSS < st.RSS || st.Threads < 1 {
		t.Fatalf("status %+v: want RSS > 0, peak >= RSS, threads >= 1", st)
	}
	w := WatchPeak(p, time.Millisecond)
	ballast := make([]byte, 32<<20)
	for i := range ballast {
		ballast[i] = 1 // resident
	}
	time.Sleep(20 * time.Millisecond)
	peak, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if peak < st.RSS+16<<20 {
		t.Errorf("peak %d MiB while 32 MiB more were resident, RSS before %d MiB", peak>>20, st.RSS>>20)
	}
	runtime.KeepAlive(ballast)
	if _, err := (Proc{PID: 1 << 30}).Status(); !errors.Is(err, errNoProc) {
		t.Errorf("status of a missing process: %v, want errNoProc", err)
	}
}
