package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
func TestWaitStableSlowUpload(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	const quiet = 2 * time.Second
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
	if after < quiet-tolerance {
		t.Errorf("wait-stable exited %v after the last close; want ≥ %v", after, quiet-tolerance)
	}
	// --json prints one (indented) document: read it whole.
	var doc map[string]any
	out := ws.tail(1 << 20)
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["stable"] != true || num(doc["files"]) != files {
		t.Errorf("wait-stable printed %s (%v); want one document with stable true and %d files", out, err, files)
	}
}
