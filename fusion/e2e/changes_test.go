package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The change feed (issue 15) through the real binaries: fustorctl watch / changes /
// wait-stable against Fusion fed by a real agent.

// bgCtl is a fustorctl running in the background whose stdout is read line by line: a watch
// prints one JSON object a line, and a test must see each as it comes, not at exit.
type bgCtl struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr *bytes.Buffer
	errMu  *sync.Mutex

	mu    sync.Mutex
	lines []map[string]any
	raw   []string

	readOnce sync.Once
	done     chan struct{}
	exitAt   time.Time
	exitErr  error
}

// startCtl starts fustorctl with the cluster's server, key and view; unless read is false its
// stdout is read from the start. With read false nothing reads the pipe until read() is called,
// so a watch that prints more than the pipe holds blocks on its writes: a watcher that stops
// reading.
func (c *cluster) startCtl(read bool, args ...string) *bgCtl {
	c.t.Helper()
	full := append([]string{"--server", c.addr, "--key", "query-key", "--view", "files", "--json"}, args...)
	b := &bgCtl{t: c.t, cmd: exec.Command(filepath.Join(c.bin, "fustorctl"), full...), stderr: &bytes.Buffer{},
		errMu: &sync.Mutex{}, done: make(chan struct{})}
	b.cmd.Env = raceEnv()
	b.cmd.Stderr = lockedWriter{b.errMu, b.stderr}
	var err error
	b.stdout, err = b.cmd.StdoutPipe()
	must(c.t, err)
	must(c.t, b.cmd.Start())
	if read {
		b.read()
	}
	c.t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = b.cmd.Process.Kill()
			b.read()
			<-b.done
		}
		if c.t.Failed() {
			c.t.Logf("---- fustorctl %v ----\nstderr:\n%s\nstdout (last lines):\n%s", args, b.errText(), b.tail(20))
		}
	})
	return b
}

// read starts reading stdout; the process is waited for once stdout ends (Wait must not
// run before the pipe is drained).
func (b *bgCtl) read() {
	b.readOnce.Do(func() {
		go func() {
			sc := bufio.NewScanner(b.stdout)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				var m map[string]any
				err := json.Unmarshal(sc.Bytes(), &m)
				b.mu.Lock()
				b.raw = append(b.raw, sc.Text())
				if err == nil {
					b.lines = append(b.lines, m)
				}
				b.mu.Unlock()
			}
			_, _ = io.Copy(io.Discard, b.stdout)
			err := b.cmd.Wait()
			b.mu.Lock()
			b.exitAt, b.exitErr = time.Now(), err
			b.mu.Unlock()
			close(b.done)
		}()
	})
}

func (b *bgCtl) snapshot() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]map[string]any(nil), b.lines...)
}

func (b *bgCtl) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.raw[max(0, len(b.raw)-n):], "\n")
}

func (b *bgCtl) errText() string {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.stderr.String()
}

func (b *bgCtl) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// interrupt sends SIGINT, as ctrl-C would, and waits for the exit.
func (b *bgCtl) interrupt() {
	b.t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	b.read()
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		b.t.Fatalf("fustorctl did not exit within 15s of SIGINT")
	}
	if b.exitErr != nil {
		b.t.Fatalf("fustorctl exited with %v after SIGINT; stderr:\n%s", b.exitErr, b.errText())
	}
}

var resumeRE = regexp.MustCompile(`resume with --since (\S+)`)

// resumeCursor is the cursor a stopped watch printed on stderr.
func (b *bgCtl) resumeCursor() string {
	b.t.Helper()
	m := resumeRE.FindAllStringSubmatch(b.errText(), -1)
	if len(m) == 0 {
		b.t.Fatalf("watch printed no resume cursor; stderr:\n%s", b.errText())
	}
	return m[len(m)-1][1]
}

// change is one Change line of a watch.
type change struct {
	seq        uint64
	path, kind string
}

// changesOf splits a watch's lines into changes and resets (lines without a path: freshInstance,
// cursorLost, lagged).
func changesOf(lines []map[string]any) (chs []change, resets []map[string]any) {
	for _, l := range lines {
		p, ok := l["path"].(string)
		if !ok {
			resets = append(resets, l)
			continue
		}
		k, _ := l["kind"].(string)
		chs = append(chs, change{num(l["sequence"]), p, k})
	}
	return chs, resets
}

// currentCursor asks for the view's current cursor (changes --since now).
func (c *cluster) currentCursor() string {
	c.t.Helper()
	doc, err := c.ctl("changes", "--since", "now")
	must(c.t, err)
	cur, _ := doc["cursor"].(string)
	if cur == "" {
		c.t.Fatalf("changes --since now gave no cursor: %v", doc)
	}
	return cur
}

// writeFiles creates n small files dir/f000.dat… (dir relative to root).
func writeFiles(t *testing.T, root, dir string, n int) []string {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(root, dir), 0o755))
	var out []string
	for i := range n {
		rel := fmt.Sprintf("/%s/f%03d.dat", dir, i)
		must(t, os.WriteFile(filepath.Join(root, rel), []byte(rel), 0o644))
		out = append(out, rel)
	}
	return out
}

// TestWaitStableSlowUpload: wait-stable on a directory that does not exist yet, with
// --min-files, returns only once a slow writer's 1,000 files are all closed and the quiet
// period has passed since the last one — and the view equals the directory then.
//
// Twice: with the e2e audits every second, and with no audit during the upload. An audit
// that scans a file younger than the view's hot threshold (30 s) makes it suspect again even
// after the realtime tier saw its close (DESIGN.md §5.4, "hot-age suspect check"), and
// wait-stable waits for suspects; so with audits it may end up to the hot threshold after the
// last write, without them within a moment of the quiet period.
func TestWaitStableSlowUpload(t *testing.T) {
	const quiet, hotThreshold = 2 * time.Second, 30 * time.Second
	for _, tc := range []struct {
		name, auditEvery string
		within           time.Duration // bound on the exit after the last close
	}{
		{"audits-every-1s", auditInterval, hotThreshold + quiet + 5*time.Second},
		{"no-audit", "1h", quiet + 3*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) { waitStableSlowUpload(t, tc.auditEvery, quiet, tc.within) })
	}
}

func waitStableSlowUpload(t *testing.T, auditEvery string, quiet, within time.Duration) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.auditEvery = auditEvery
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	// Started before sub-1 exists, and not waited for: --min-files keeps it waiting however
	// early or late its call reaches Fusion, and the quiet period starts no earlier than the
	// call, so a late call could only make it end later.
	start := time.Now()
	ws := c.startCtl(true, "wait-stable", "/sub-1", "--quiet", quiet.String(), "--min-files", "1000", "--timeout", "60s")

	// The writer paces itself to ~10 s for 1,000 files; every 100th file is written in three
	// appends 200 ms apart, so it stays open across several of the agent's modify throttles
	// (200 ms), and the last file is one of them: its close is the end of the upload.
	const files, perDir = 1000, 100
	var lastClose time.Time
	for i := range files {
		if ws.exited() {
			t.Fatalf("wait-stable exited after %d of %d files: %v\n%s", i, files, ws.exitErr, ws.tail(5))
		}
		dir := filepath.Join(root, "sub-1", fmt.Sprintf("part-%02d", i/perDir))
		if i%perDir == 0 {
			must(t, os.MkdirAll(dir, 0o755))
		}
		p := filepath.Join(dir, fmt.Sprintf("f%04d.dat", i))
		if i%100 == 99 {
			f, err := os.Create(p)
			must(t, err)
			for part := range 3 {
				if part > 0 {
					time.Sleep(200 * time.Millisecond)
				}
				_, err = f.Write(bytes.Repeat([]byte{'a' + byte(part)}, 4096))
				must(t, err)
			}
			must(t, f.Close())
		} else {
			must(t, os.WriteFile(p, bytes.Repeat([]byte{'x'}, i), 0o644))
			time.Sleep(6 * time.Millisecond)
		}
		lastClose = time.Now()
	}
	t.Logf("wrote %d files in %v", files, lastClose.Sub(start).Round(time.Millisecond))

	select {
	case <-ws.done:
	case <-time.After(70 * time.Second):
		t.Fatalf("wait-stable did not exit within 70s of the last close")
	}
	// The view must equal the directory at the moment wait-stable says stable: checked at
	// once, with no retry, since nothing is written any more.
	if err := c.viewEqualsTree("/sub-1"); err != nil {
		t.Errorf("wait-stable said stable but: %v", err)
	}
	if ws.exitErr != nil {
		t.Fatalf("wait-stable exited with %v (want 0, stable); stderr:\n%s\nstdout:\n%s", ws.exitErr, ws.errText(), ws.tail(5))
	}
	// The server measures the quiet period from the change it applied after the close, so
	// wait-stable cannot end earlier than the close plus the period; the tolerance covers
	// clock reads in two processes.
	const tolerance = 100 * time.Millisecond
	after := ws.exitAt.Sub(lastClose)
	t.Logf("wait-stable exited %v after the last close (quiet period %v)", after.Round(time.Millisecond), quiet)
	if after < quiet-tolerance || after > within {
		t.Errorf("wait-stable exited %v after the last close; want between %v and %v", after, quiet-tolerance, within)
	}
	// --json prints one (indented) document: read it whole.
	var doc map[string]any
	out := ws.tail(1 << 20)
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["stable"] != true || num(doc["files"]) != files {
		t.Errorf("wait-stable printed %s (%v); want one document with stable true and %d files", out, err, files)
	}
}

// waitChanges polls a watch until it has printed a change of kind for every path.
func (b *bgCtl) waitChanges(within time.Duration, kind string, paths []string) {
	b.t.Helper()
	eventually(b.t, within, fmt.Sprintf("the watch prints %d %s changes", len(paths), kind), func() error {
		if b.exited() {
			b.t.Fatalf("the watch exited: %v; stderr:\n%s", b.exitErr, b.errText())
		}
		chs, _ := changesOf(b.snapshot())
		seen := map[string]bool{}
		for _, ch := range chs {
			if ch.kind == kind {
				seen[ch.path] = true
			}
		}
		for _, p := range paths {
			if !seen[p] {
				return fmt.Errorf("no %s change of %s yet (%d changes)", kind, p, len(chs))
			}
		}
		return nil
	})
}

// consecutive checks that chs are numbered from first on with no gap and no repeat.
func consecutive(chs []change, first uint64) error {
	for i, ch := range chs {
		if ch.seq != first+uint64(i) {
			return fmt.Errorf("change %d (%s %s) has sequence %d; want %d", i, ch.kind, ch.path, ch.seq, first+uint64(i))
		}
	}
	return nil
}

const (
	kindCreated = "CHANGE_KIND_CREATED"
	kindDeleted = "CHANGE_KIND_DELETED"
)

// TestWatchResumesExactlyOnce: a watch of / is interrupted and resumed from the cursor it
// printed; meanwhile files are written, deleted, and the agent is killed and restarted. The
// two runs together hold every change exactly once, in sequence order, with no gap.
//
// The view is live, so it resets — a new instance, and the cursor would be a fresh instance
// (TestWatchCursorFromBeforeResetIsFreshInstance) — when its last session ends. Here the agent
// is killed (SIGKILL: its session is not closed) and restarted within the 10 s session
// timeout, so its new session overlaps the old one (it follows, then leads once the old one
// expires, as in TestAgentRestartBeforeExpiryReconciles) and the view keeps its instance
// across the restart: the restarted agent's snapshot must come through as changes.
func TestWatchResumesExactlyOnce(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.sessionTimeout = "10s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	first, err := c.sessionOf("e2e-agent")
	must(t, err)

	// The watch starts from a cursor taken before the first write, so no write can slip in
	// between the watch's start and its subscription.
	start := c.currentCursor()
	w1 := c.startCtl(true, "watch", "/", "--since", start)
	batch1 := writeFiles(t, root, "up", 50)
	w1.waitChanges(30*time.Second, kindCreated, batch1)
	w1.interrupt()
	a, resets := changesOf(w1.snapshot())
	if len(resets) != 0 {
		t.Fatalf("the first watch got resets %v", resets)
	}
	if len(a) == 0 {
		t.Fatal("the first watch printed no change")
	}
	must(t, consecutive(a, a[0].seq))
	cur := w1.resumeCursor()
	t.Logf("first watch: %d changes, sequences %d..%d, resume cursor %s", len(a), a[0].seq, a[len(a)-1].seq, cur)

	// While no watch runs: writes through the live agent, then writes and deletions while
	// the agent is dead, which only its restart's snapshot can bring.
	batch2 := writeFiles(t, root, "while-unwatched", 50)
	c.waitFiles(30*time.Second, "/while-unwatched", 50)
	c.agent.stop(t, syscall.SIGKILL)
	batch3 := writeFiles(t, root, "while-agent-down", 50)
	var deleted []string
	for _, p := range batch1[:10] {
		must(t, os.Remove(filepath.Join(root, p)))
		deleted = append(deleted, p)
	}
	c.startAgent()
	c.waitLeader(60*time.Second, "e2e-agent", first.ID)
	c.waitViewEqualsTree(30*time.Second, "/")

	w2 := c.startCtl(true, "watch", "/", "--since", cur)
	w2.waitChanges(30*time.Second, kindCreated, append(append([]string(nil), batch2...), batch3...))
	w2.waitChanges(30*time.Second, kindDeleted, deleted)
	w2.interrupt()
	b, resets := changesOf(w2.snapshot())
	if len(resets) != 0 {
		t.Fatalf("the resumed watch got resets %v: the view's instance changed across the agent's restart", resets)
	}
	t.Logf("resumed watch: %d changes, sequences %d..%d", len(b), b[0].seq, b[len(b)-1].seq)
	must(t, consecutive(append(append([]change(nil), a...), b...), a[0].seq))

	// changes --since the same cursor pages the same log: it must agree with the watch.
	doc, err := c.ctl("changes", "--since", cur, "--all")
	must(t, err)
	if doc["freshInstance"] == true || doc["cursorLost"] == true {
		t.Fatalf("changes --since %s: %v", cur, doc)
	}
	list, _ := doc["changes"].([]any)
	for i := 0; i < min(len(list), len(b)); i++ {
		m, _ := list[i].(map[string]any)
		if got := num(m["sequence"]); got != b[i].seq || m["path"] != b[i].path {
			t.Fatalf("changes --since: change %d is %v %v; the watch had %d %s", i, got, m["path"], b[i].seq, b[i].path)
		}
	}
	if len(list) < len(b) {
		t.Fatalf("changes --since gave %d changes; the watch had %d", len(list), len(b))
	}
}

// TestWatchCursorFromBeforeResetIsFreshInstance: the only agent stops (SIGTERM closes its
// session), so the live view resets; after the agent is back, a cursor from before is
// answered with fresh_instance by changes and by watch.
func TestWatchCursorFromBeforeResetIsFreshInstance(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	old := c.currentCursor()
	writeFiles(t, root, "before-reset", 5)
	c.waitFiles(30*time.Second, "/before-reset", 5)
	doc, err := c.ctl("changes", "--since", old)
	must(t, err)
	if doc["freshInstance"] == true || len(doc["changes"].([]any)) == 0 {
		t.Fatalf("before the reset, changes --since the old cursor: %v", doc)
	}

	// A view keeps its instance when its agent goes (stale, DESIGN.md §5.1) and across a
	// restart of Fusion from its checkpoint; a Fusion without this one's checkpoint (its own
	// FUSTOR_HOME) builds a new instance.
	c.fusion.stop(t, syscall.SIGTERM)
	c.startFusion()
	c.waitFiles(60*time.Second, "/", 1005)

	doc, err = c.ctl("changes", "--since", old)
	must(t, err)
	if doc["freshInstance"] != true {
		t.Fatalf("changes --since a cursor from before the reset: %v; want freshInstance", doc)
	}
	if _, ok := doc["changes"]; ok {
		t.Errorf("a fresh instance answer carries changes: %v", doc)
	}
	if doc["cursor"] == old || doc["cursor"] == "" {
		t.Errorf("fresh instance cursor %v; want a new one", doc["cursor"])
	}

	w := c.startCtl(true, "watch", "/", "--since", old)
	eventually(t, 10*time.Second, "the watch's first line", func() error {
		if len(w.snapshot()) == 0 {
			return errNotYet
		}
		return nil
	})
	if l := w.snapshot()[0]; l["freshInstance"] != true {
		t.Fatalf("watch --since a cursor from before the reset starts with %v; want freshInstance", l)
	}
	w.interrupt()
	if !strings.Contains(w.errText(), "fresh instance") {
		t.Errorf("watch stderr lacks the fresh instance notice:\n%s", w.errText())
	}
}

// metric reads one sample of Fusion's /metrics on the debug listener (the line's name and
// labels exactly as printed, e.g. `fustor_view_watchers{view="files"}`).
func (c *cluster) metric(sample string) (float64, error) {
	resp, err := http.Get("http://" + c.debugListen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// No kept-alive connection may outlive the test: goleak checks for its goroutines.
	defer http.DefaultClient.CloseIdleConnections()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", sample)
}

// writeWide creates dirs × perDir empty files under root/top.
func writeWide(t *testing.T, root, top string, dirs, perDir int) {
	t.Helper()
	for d := range dirs {
		dir := filepath.Join(root, top, fmt.Sprintf("d%03d", d))
		must(t, os.MkdirAll(dir, 0o755))
		for f := range perDir {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.dat", f)), nil, 0o644))
		}
	}
}

// TestLaggedWatcherDoesNotSlowApply: a watch of / whose reader stops (fustorctl's stdout is a
// pipe nobody reads, so it blocks on its writes and stops reading its stream) while tens of
// thousands of changes are applied. The view converges about as fast as with no watcher, and
// once the reader reads again the watch says lagged — its position fell out of the change log —
// with the cursor to go on from, and goes on.
//
// The change log is bounded to 4,096 entries (views.files.change_log_entries) so that far
// fewer changes than the default 1M outrun the stalled watcher; what it can hold unread (the
// pipe, fustorctl's gRPC receive window, the server's send buffer) is a few thousand changes
// at most, well under the 20,000 files written while it is stalled.
func TestLaggedWatcherDoesNotSlowApply(t *testing.T) {
	root := makeTree(t)
	// Without the race detector: the test compares apply times, which the detector inflates
	// and makes noisy.
	c := newClusterWith(t, root, binaries(t, false))
	c.debugListen = freePort(t)
	c.writeConfigs()
	cfg := filepath.Join(c.cfgDir, "fusion.yaml")
	b, err := os.ReadFile(cfg)
	must(t, err)
	const viewLine = "files: {driver: fs, live: true, query_keys: [query-key]}"
	if !bytes.Contains(b, []byte(viewLine)) {
		t.Fatalf("fusion.yaml has no line %q:\n%s", viewLine, b)
	}
	b = bytes.Replace(b, []byte(viewLine), []byte("files: {driver: fs, live: true, query_keys: [query-key], change_log_entries: 4096}"), 1)
	must(t, os.WriteFile(cfg, b, 0o644))
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	const dirs, perDir = 20, 1000
	// converge writes a batch and returns how long after the last write the view counts every
	// file and equals the storage. The writer, not Fusion, sets the pace while it writes (tens
	// of seconds for 20,000 files on this disk), so the time after its end is what shows an
	// apply loop that fell behind.
	converge := func(top string) (counted, equal time.Duration) {
		start := time.Now()
		writeWide(t, root, top, dirs, perDir)
		end := time.Now()
		c.waitFiles(120*time.Second, "/"+top, dirs*perDir)
		counted = time.Since(end)
		c.waitViewEqualsTree(60*time.Second, "/")
		equal = time.Since(end)
		t.Logf("%s: %d files written in %v; all counted %v after the last write, view equal after %v",
			top, dirs*perDir, end.Sub(start).Round(time.Millisecond), counted.Round(time.Millisecond), equal.Round(time.Millisecond))
		return counted, equal
	}
	aloneCounted, aloneEqual := converge("without-watcher")

	w := c.startCtl(false, "watch", "/")
	eventually(t, 10*time.Second, "Fusion counts the watch", func() error {
		n, err := c.metric(`fustor_view_watchers{view="files"}`)
		if err == nil && n != 1 {
			err = fmt.Errorf("%v watchers", n)
		}
		return err
	})
	stalledCounted, stalledEqual := converge("with-stalled-watcher")
	// The ratio the issue asks for (unchanged apply rate) is measured by the benchmark; here
	// the bound only catches a watcher that holds the apply loop back, which would leave the
	// view seconds behind the writer: on a shared 2-CPU machine two runs of the same work
	// differ by tens of percent.
	if limit := 2*aloneCounted + time.Second; stalledCounted > limit {
		t.Errorf("with a stalled watcher the view counted every file %v after the last write; %v without; want ≤ %v", stalledCounted, aloneCounted, limit)
	}
	if limit := 2*aloneEqual + 2*time.Second; stalledEqual > limit {
		t.Errorf("with a stalled watcher the view equalled the storage %v after the last write; %v without; want ≤ %v", stalledEqual, aloneEqual, limit)
	}
	if w.exited() {
		t.Fatalf("the stalled watch exited: %v\n%s", w.exitErr, w.errText())
	}

	w.read()
	var lagged map[string]any
	eventually(t, 30*time.Second, "the watch reads again and says lagged", func() error {
		_, resets := changesOf(w.snapshot())
		for _, r := range resets {
			if r["lagged"] == true {
				lagged = r
				return nil
			}
		}
		return fmt.Errorf("%d lines, resets %v", len(w.snapshot()), resets)
	})
	if cur, _ := lagged["cursor"].(string); cur == "" {
		t.Errorf("the lagged line carries no cursor: %v", lagged)
	}
	n, err := c.metric("fustor_view_watchers_lagged_total")
	must(t, err)
	if n < 1 {
		t.Errorf("fustor_view_watchers_lagged_total = %v after a lagged watcher", n)
	}
	// The watch goes on from the log's current end: a new file shows up in it.
	after := writeFiles(t, root, "after-lag", 1)
	w.waitChanges(30*time.Second, kindCreated, after)
	w.interrupt()
	if !strings.Contains(w.errText(), "lagged") {
		t.Errorf("the watch's stderr lacks the lagged notice:\n%s", w.errText())
	}
	c.waitViewEqualsTree(30*time.Second, "/")
}
