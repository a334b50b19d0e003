package report

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/shadowtap/shadowtap/pkg/gate"
)

// requireEnv makes a missing browser a failure in CI (.ci/run sets it).
const requireEnv = "SHADOWTAP_REQUIRE_ROOT"

// chromium returns the browser's path, skipping the test when there is none
// unless SHADOWTAP_REQUIRE_ROOT is set.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("SHADOWTAP_CHROMIUM"), "chromium", "/usr/bin/chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(requireEnv) != "" {
		t.Fatalf("chromium is not installed and %s is set (scripts/test-deps.sh installs it)", requireEnv)
	}
	t.Skip("chromium is not installed (apt-get install chromium, or scripts/test-deps.sh)")
	return ""
}

// artifactDir is where a failing browser test leaves its screenshot and
// page: $SHADOWTAP_ARTIFACTS, else testdata/artifacts (ignored by git).
func artifactDir(t *testing.T) string {
	dir := os.Getenv("SHADOWTAP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	dir = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("artifact dir: %v", err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// browserEvents collects what the page did that it must not.
type browserEvents struct {
	mu       sync.Mutex
	errors   []string // console errors, exceptions, error log entries (CSP violations among them)
	requests []string // every request's URL
}

func (b *browserEvents) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.errors = append(b.errors, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		b.errors = append(b.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
			b.errors = append(b.errors, fmt.Sprintf("log %s %s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, e.Request.URL)
	}
}

// pageState is what the test reads from the loaded page.
type pageState struct {
	Verdict   string         `json:"verdict"`
	Failures  int            `json:"failures"`
	Rows      int            `json:"rows"`
	FirstCol  []string       `json:"firstCol"`
	Charts    map[string]int `json:"charts"`    // chart id -> drawn shapes (rect, line, text)
	ChartSize map[string]int `json:"chartSize"` // chart id -> rendered area in CSS pixels
	Highlight int            `json:"highlight"` // highlighted JSON path tokens
	Examples  int            `json:"examples"`
	Noise     int            `json:"noise"`
}

const readPage = `(() => {
  const s = {charts: {}, chartSize: {}};
  const v = document.querySelector('#verdict .word');
  s.verdict = v ? v.textContent.trim() : '';
  s.failures = document.querySelectorAll('#failures li').length;
  const rows = document.querySelectorAll('#routes tbody tr');
  s.rows = rows.length;
  s.firstCol = Array.from(rows).map(r => r.cells[0].textContent.trim());
  for (const id of ['chart-share', 'chart-latency', 'chart-timeline']) {
    const el = document.getElementById(id);
    if (!el) { s.charts[id] = -1; continue; }
    s.charts[id] = el.querySelectorAll('rect, line, text').length;
    const r = el.getBoundingClientRect();
    s.chartSize[id] = Math.round(r.width * r.height);
  }
  s.highlight = document.querySelectorAll('#examples .jp-key, #examples .jp-idx').length;
  s.examples = document.querySelectorAll('#examples .example').length;
  s.noise = document.querySelectorAll('#noise-fields tbody tr').length;
  return s;
})()`

// TestHTMLInBrowser loads the HTML report in headless Chromium: no console
// error, no request other than the file itself, the verdict, the route table
// and every chart present and drawn, the table sortable by a click, and the
// page still readable with JavaScript off.
func TestHTMLInBrowser(t *testing.T) {
	browser := chromium(t)
	doc := fixtureDoc()
	res := gate.Judge(doc, fixtureCriteria())
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, doc, res, fixtureExamples(t), Options{DiffLogs: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	pageURL := "file://" + page

	for _, js := range []bool{true, false} {
		name := "javascript"
		if !js {
			name = "no javascript"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
				chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900))
			actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
			defer cancelA()
			bctx, cancelB := chromedp.NewContext(actx)
			defer cancelB()
			ev := &browserEvents{}
			if err := chromedp.Listen(bctx, ev.listen); err != nil {
				t.Fatalf("starting %s: %v", browser, err)
			}

			var shot []byte
			fail := func(format string, args ...any) {
				t.Helper()
				t.Errorf(format, args...)
			}
			defer func() {
				if !t.Failed() {
					return
				}
				dir := artifactDir(t)
				if len(shot) == 0 {
					shot, _ = chromedp.Run(bctx, chromedp.FullScreenshot(100))
				}
				if len(shot) > 0 {
					p := filepath.Join(dir, "screenshot.png")
					if err := os.WriteFile(p, shot, 0o644); err == nil {
						t.Logf("screenshot of the failing page: %s", p)
					}
				}
				if b, err := os.ReadFile(page); err == nil {
					p := filepath.Join(dir, "report.html")
					if os.WriteFile(p, b, 0o644) == nil {
						t.Logf("the page: %s", p)
					}
				}
			}()

			if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
				t.Fatalf("network.enable: %v", err)
			}
			if !js {
				if _, err := chromedp.Call(bctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
					t.Fatalf("disabling JavaScript: %v", err)
				}
			}
			if err := chromedp.Do(bctx, chromedp.Navigate(pageURL), chromedp.WaitReady(chromedp.CSS("#routes"))); err != nil {
				t.Fatalf("loading %s in %s: %v", pageURL, browser, err)
			}
			st, err := chromedp.Run(bctx, chromedp.Evaluate[pageState](readPage))
			if err != nil {
				t.Fatalf("reading the page: %v", err)
			}

			if st.Verdict != "FAIL" || st.Failures != len(res.Failures) {
				fail("verdict %q with %d reasons, want FAIL with %d", st.Verdict, st.Failures, len(res.Failures))
			}
			if st.Rows != len(doc.Routes) {
				fail("route table has %d rows, want %d", st.Rows, len(doc.Routes))
			}
			if len(st.FirstCol) > 0 && st.FirstCol[0] != res.Routes[0].Route {
				fail("first route %q, want the highest differing share %q (the order must not need JavaScript)", st.FirstCol[0], res.Routes[0].Route)
			}
			for _, id := range []string{"chart-share", "chart-latency", "chart-timeline"} {
				if st.Charts[id] < 5 || st.ChartSize[id] < 10000 {
					fail("chart %s: %d shapes, %d px² on screen; want it present and drawn", id, st.Charts[id], st.ChartSize[id])
				}
			}
			if st.Highlight == 0 || st.Examples == 0 {
				fail("examples: %d, highlighted JSON path tokens: %d", st.Examples, st.Highlight)
			}
			if st.Noise == 0 {
				fail("no noise field listed")
			}

			if js {
				// Sort by exchanges (ascending on the first click).
				if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#routes thead th:nth-child(2) button`))); err != nil {
					t.Fatalf("sorting: %v", err)
				}
				order, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#routes tbody tr')).map(r => r.cells[1].getAttribute('data-v'))`))
				if err != nil {
					t.Fatalf("reading the sorted table: %v", err)
				}
				for i := 1; i < len(order); i++ {
					var a, b int
					fmt.Sscan(order[i-1], &a)
					fmt.Sscan(order[i], &b)
					if a > b {
						fail("after a click on exchanges the rows are not ascending: %v", order)
						break
					}
				}
			}
			if shot, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
				t.Logf("screenshot: %v", err)
			}

			ev.mu.Lock()
			defer ev.mu.Unlock()
			if len(ev.errors) > 0 {
				fail("the page logged errors:\n%s", strings.Join(ev.errors, "\n"))
			}
			for _, u := range ev.requests {
				if u != pageURL {
					fail("the page made a request: %s", u)
				}
			}
		})
	}
}
