package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns Debian's chromium (.ci/run installs it), or "" when there is none.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where the browser test's screenshots go: $FUSTOR_ARTIFACTS when set, else
// the test's artifact directory (kept with go test -artifacts, under -outputdir).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("FUSTOR_ARTIFACTS"); d != "" {
		d = filepath.Join(d, t.Name())
		must(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.ArtifactDir()
}

// demoDaemons runs make demo's setup with the real binaries: Fusion with one live fs view
// "demo" (query and admin key "demo-key") and its HTTP gateway, and an agent on root; the
// agent's pipe also feeds a forest view "all" (one member, "storage-1"). It returns the
// console's URL.
func demoDaemons(t *testing.T, root string) string {
	bin := binaries(t, true)
	grpcAddr, httpAddr, dir := freePort(t), freePort(t), t.TempDir()
	fusionCfg := fmt.Sprintf(`server:
  listen: %s
  http_listen: %s
  admin_keys: [demo-key]
  shutdown_timeout: 2s
receivers:
  default:
    api_keys:
      - {key: demo-ingest-key, pipe: demo}
pipes:
  demo: {receiver: default, views: [demo, all]}
views:
  demo: {driver: fs, schema: fs, live: true, query_keys: [demo-key]}
  all: {driver: forest-fs, schema: fs, live: true, query_keys: [demo-key], members: {demo: storage-1}}
`, grpcAddr, httpAddr)
	agentCfg := fmt.Sprintf(`agent_id: console-agent
sources:
  data: {root: %s, modify_throttle: 200ms}
senders:
  fusion: {address: %s, api_key: demo-ingest-key}
pipes:
  demo: {source: data, sender: fusion, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms}
`, root, grpcAddr)
	must(t, os.WriteFile(filepath.Join(dir, "fusion.yaml"), []byte(fusionCfg), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(agentCfg), 0o644))
	startProc(t, filepath.Join(bin, "fustor-fusion"), "--config", filepath.Join(dir, "fusion.yaml"))
	startProc(t, filepath.Join(bin, "fustor-agent"), "--config", filepath.Join(dir, "agent.yaml"))
	url := "http://" + httpAddr
	// Ready when the view answers through the gateway (the agent's snapshot is applied).
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url+"/v1/views/demo/stats?path=/", nil)
		req.Header.Set("Authorization", "Bearer demo-key")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo view did not answer through the gateway within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConsoleInBrowser drives the web console in headless chromium against the real daemons:
// a wrong key is refused with a clear message; with the right key a directory opens, a search
// finds a file, a file being written shows its suspect flag and a new file appears, both
// without reloading the page (the change feed); a 250-entry directory's render time is logged
// (docs/benchmarks.md). Screenshots are saved at each step.
func TestConsoleInBrowser(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("no chromium binary on PATH (chromium, chromium-browser or google-chrome): apt-get install chromium to run the browser test")
	}
	root := t.TempDir()
	old := time.Now().Add(-time.Hour) // older than the hot threshold: not suspect
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
		must(t, os.Chtimes(p, old, old))
	}
	for i := 1; i <= 3; i++ {
		write(fmt.Sprintf("upload/submit/run-0001/data_%04d.dat", i), "sample")
	}
	write("docs/README.txt", "readme")
	for i := range 250 {
		write(fmt.Sprintf("big/file_%03d.bin", i), "x")
	}
	url := demoDaemons(t, root)
	shots := artifactDir(t)
	t.Logf("screenshots in %s", shots)

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	// The browser starts on a context without a deadline (a deadline would stop it); each step
	// has one of its own.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	stepCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(bctx, 60*time.Second) }
	dump := func(name string, err error) {
		t.Helper()
		ctx, cancel := stepCtx()
		defer cancel()
		if png, e := chromedp.Run(ctx, chromedp.CaptureScreenshot()); e == nil {
			must(t, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644))
		}
		if err != nil {
			body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v\npage: %.3000s", name, err, body)
		}
	}
	step := func(name string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := stepCtx()
		defer cancel()
		dump(name, chromedp.Do(ctx, steps...))
	}
	eval := func(expr string) string {
		t.Helper()
		ctx, cancel := stepCtx()
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	js := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool]("{ "+expr+" }; true")(ctx, tg) // a block: its consts do not leak
			return err
		})
	}
	visible := func(css string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(css)) }
	click := func(css string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(css)) }

	step("01-wrong-key",
		chromedp.Navigate(url+"/"),
		visible("#key"),
		chromedp.SendKeys(chromedp.ID("key"), "not-the-key"),
		click(`#loginform button`),
		chromedp.WaitVisible(`//p[@id="loginerror" and contains(., "Wrong key")]`))
	t.Logf("wrong key: %q", eval(`document.getElementById("loginerror").textContent`))

	step("02-signed-in",
		chromedp.SendKeys(chromedp.ID("key"), "demo-key"),
		click(`#loginform button`),
		visible(`#listing tr[data-path="/upload"]`),
		// The fs view (the forest "all" comes first).
		js(`const s = document.getElementById("view"); s.value = "demo"; s.dispatchEvent(new Event("change"))`),
		chromedp.WaitNotPresent(`#listing tr[data-path="/upload"] .flag.member`),
		visible(`#listing tr[data-path="/upload"]`),
		// A marker the page keeps until it is reloaded.
		js(`window.notReloaded = "yes"`))
	step("03-directory",
		click(`#listing tr[data-path="/upload"] a`),
		visible(`#listing tr[data-path="/upload/submit"] a`),
		click(`#listing tr[data-path="/upload/submit"] a`),
		visible(`#listing tr[data-path="/upload/submit/run-0001"] a`),
		click(`#listing tr[data-path="/upload/submit/run-0001"] a`),
		visible(`#listing tr[data-path="/upload/submit/run-0001/data_0002.dat"]`),
		chromedp.WaitVisible(`//span[@id="live" and contains(., "live")]`))
	if k, href := eval(`sessionStorage.getItem("fustor.key")`), eval(`location.href`); k != "demo-key" || strings.Contains(href, "demo-key") {
		t.Fatalf("the key is kept in sessionStorage (%q), never in the URL (%s)", k, href)
	}

	// A new file, and a file still being written (open, part of it written: its mtime is within
	// the view's hot threshold, so the view marks it suspect).
	run := filepath.Join(root, "upload/submit/run-0001")
	must(t, os.WriteFile(filepath.Join(run, "new_file.dat"), []byte("new"), 0o644))
	f, err := os.Create(filepath.Join(run, "partial.dat"))
	must(t, err)
	defer f.Close()
	_, err = f.Write(make([]byte, 4096))
	must(t, err)
	step("04-live-new-file-and-suspect",
		visible(`#listing tr[data-path="/upload/submit/run-0001/new_file.dat"]`),
		visible(`#listing tr[data-path="/upload/submit/run-0001/partial.dat"][data-suspect="1"] .flag.suspect`))
	if eval(`String(window.notReloaded)`) != "yes" {
		t.Fatal("the page was reloaded: the new file should come from the change feed")
	}

	step("05-search",
		click(`#tabs button[data-tab="search"]`),
		chromedp.SetValue(chromedp.ID("searchpath"), "/"),
		chromedp.SendKeys(chromedp.ID("query"), "data_0003.dat"),
		click(`#searchform button`),
		visible(`#results tr[data-path="/upload/submit/run-0001/data_0003.dat"]`))
	step("06-glob-and-suspects",
		chromedp.SetValue(chromedp.ID("query"), "*.dat"),
		click(`#searchform button`),
		chromedp.WaitVisible(`//p[@id="searchinfo" and contains(., "5 match")]`),
		click(`#tabs button[data-tab="suspects"]`),
		visible(`#suspects tr[data-path="/upload/submit/run-0001/partial.dat"]`))
	step("07-sessions",
		click(`#tabs button[data-tab="sessions"]`),
		chromedp.WaitVisible(`//table[@id="sessions"]//td[text()="console-agent"]`))

	// The 250-entry directory, opened 5 times: the console records each render's time.
	var renders, loads []float64
	for i := range 5 {
		step(fmt.Sprintf("08-big-%d", i),
			click(`#tabs button[data-tab="browse"]`),
			js(`document.body.dataset.rows = ""; openDir("/")`),
			visible(`#listing tr[data-path="/big"] a`),
			click(`#listing tr[data-path="/big"] a`),
			visible(`#listing tr[data-path="/big/file_249.bin"]`))
		ms, load, rows := eval(`document.body.dataset.renderMs`), eval(`document.body.dataset.loadMs`), eval(`document.body.dataset.rows`)
		v, err1 := strconv.ParseFloat(ms, 64)
		l, err2 := strconv.ParseFloat(load, 64)
		if err1 != nil || err2 != nil || rows != "251" { // 250 entries and the ".." row
			t.Fatalf("render figures %q, %q for %q rows", ms, load, rows)
		}
		renders, loads = append(renders, v), append(loads, l)
	}
	slices.Sort(renders)
	slices.Sort(loads)
	t.Logf("console: 250-entry directory rendered in %.1f ms median (min %.1f, max %.1f ms); fetched and rendered in %.1f ms median (max %.1f ms); 5 runs, headless chromium",
		renders[2], renders[0], renders[4], loads[2], loads[4])

	// Paging: 100 a page, the next page starts after the first 100 entries.
	step("09-paging",
		js(`const p = document.getElementById("pagesize"); p.value = "100"; p.dispatchEvent(new Event("change"))`),
		visible(`#listing tr[data-path="/big/file_099.bin"]`),
		click(`#next`),
		visible(`#listing tr[data-path="/big/file_100.bin"]`),
		chromedp.WaitVisible(`//span[@id="pageinfo" and contains(., "page 2")]`))

	// A forest view: its member is chosen, and a listing of all members labels each entry.
	step("10-forest",
		js(`const s = document.getElementById("view"); s.value = "all"; s.dispatchEvent(new Event("change"))`),
		visible(`#memberlabel`),
		visible(`#listing tr[data-path="/upload"] .flag.member`),
		js(`const m = document.getElementById("member"); m.value = "storage-1"; m.dispatchEvent(new Event("change"))`),
		chromedp.WaitVisible(`//table[@id="listing"]//tr[@data-path="/upload" and not(.//span[contains(@class, "member")])]`))
	must(t, f.Close())
}
