package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// statusTreeFiles is the generated tree's size: a walk long enough to be seen under way in a
// few heartbeats (200,000 entries take a race-enabled agent 4–10 s on 2 cores), and cheap to
// make. FUSTOR_STATUS_TREE points the test at an existing tree instead (bench-data/tree: 1M
// files).
const statusTreeFiles = 200_000

// writeStatusTree writes n empty files, 1000 per directory: each directory's first file is
// created and the others are hard links of it (a file system bounds the links of one inode,
// ext4 to 65,000). A walk lists and stats them as any files, and linking is ~50× faster than
// creating here (20,000 files: 0.36 s against 17 s on a loaded 2-core VM).
func writeStatusTree(t *testing.T, root string, n int) {
	t.Helper()
	for d := 0; d*1000 < n; d++ {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d))
		must(t, os.Mkdir(dir, 0o755))
		first := ""
		for f := d * 1000; f < min(n, (d+1)*1000); f++ {
			p := filepath.Join(dir, fmt.Sprintf("f%06d.dat", f))
			if first == "" {
				must(t, os.WriteFile(p, nil, 0o644))
				first = p
				continue
			}
			must(t, os.Link(first, p))
		}
	}
}

// statusView is the first view of `fustorctl status --json`.
func (c *cluster) statusView() (map[string]any, error) {
	doc, err := c.ctlWith("admin-key", "status")
	if err != nil {
		return nil, err
	}
	views, _ := doc["views"].([]any)
	if len(views) != 1 {
		return nil, fmt.Errorf("status lists %d views; want 1: %v", len(views), doc)
	}
	v, _ := views[0].(map[string]any)
	return v, nil
}

// runUnderPty runs a binary with its stdout on a pseudo-terminal, as on an operator's
// terminal, and returns what it drew there. The pty is opened with /dev/ptmx directly
// (golang.org/x/sys/unix), which needs no pty library.
func runUnderPty(ctx context.Context, name string, args ...string) (string, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return "", fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer master.Close()
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return "", fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		return "", fmt.Errorf("get pty number: %w", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return "", fmt.Errorf("open pty: %w", err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = raceEnv()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = tty, &stderr
	err = cmd.Start()
	tty.Close() // the child holds it now: its exit closes the last copy and ends the read
	if err != nil {
		return "", fmt.Errorf("start %s: %w", name, err)
	}
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&out, master) // ends with EIO once the terminal has no writer
	}()
	err = cmd.Wait()
	<-read
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", name, err, stderr.String())
	}
	return out.String(), nil
}

var (
	// barRe is one drawn progress bar and its percentage.
	barRe = regexp.MustCompile(`\[([#.]{20})\]\s+(\d+)%`)
	// escRe is a terminal control sequence (cursor up, clear).
	escRe = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)
)

// TestStatusShowsSnapshotProgress: `fustorctl status` run on a terminal while the leader
// snapshots a large tree draws a progress bar that moves and reaches 100 %. The first
// snapshot has no total (no earlier walk, an empty view); Fusion is then restarted, so the
// agent snapshots again into an empty view, this time with its last walk as the estimate.
func TestStatusShowsSnapshotProgress(t *testing.T) {
	root, race := os.Getenv("FUSTOR_STATUS_TREE"), true
	if root == "" {
		root = t.TempDir()
		start := time.Now()
		writeStatusTree(t, root, statusTreeFiles)
		t.Logf("wrote %d files in %v", statusTreeFiles, time.Since(start).Round(time.Millisecond))
	} else {
		// A million-file walk under the race detector takes minutes more than it tells.
		race = false
	}
	c := newClusterWith(t, root, binaries(t, race))
	// The snapshot alone: an audit after it would be another walk to watch. Heartbeats every
	// second (half the session timeout) catch a walk of a few seconds under way.
	c.auditEvery, c.sessionTimeout = "1h", "2s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()

	var firstWalk map[string]any
	took := eventually(t, 15*time.Minute, "first snapshot complete", func() error {
		v, err := c.statusView()
		if err != nil {
			return err
		}
		if w, ok := v["walk"].(map[string]any); ok && firstWalk == nil {
			firstWalk = w
		}
		if v["ready"] != true {
			return fmt.Errorf("%w: %v", errNotYet, v)
		}
		return nil
	})
	t.Logf("first snapshot ready after %v; a walk seen under way: %v", took.Round(time.Millisecond), firstWalk)
	if firstWalk != nil && firstWalk["total"] != nil && firstWalk["total_from"] != "view_nodes" {
		t.Fatalf("first snapshot has a total %v from %v: there was no earlier walk", firstWalk["total"], firstWalk["total_from"])
	}

	c.fusion.stop(t, unix.SIGTERM)
	c.startFusion()
	// The watch starts once the agent leads again: from then on the view is not ready until
	// the new snapshot completes, and --watch runs until it is.
	eventually(t, 2*time.Minute, "the agent leads the new Fusion", func() error {
		v, err := c.statusView()
		if err != nil {
			return err
		}
		if v["leader"] == nil {
			return fmt.Errorf("%w: %v", errNotYet, v)
		}
		if v["ready"] == true {
			t.Fatalf("the second snapshot completed before the watch could start (%v): the tree is too small", v)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := runUnderPty(ctx, filepath.Join(c.bin, "fustorctl"), "--server", c.addr, "--key", "admin-key", "status", "--watch")
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.ReplaceAll(escRe.ReplaceAllString(out, ""), "\r", "")
	var pcts []int
	for _, m := range barRe.FindAllStringSubmatch(out, -1) {
		p, _ := strconv.Atoi(m[2])
		pcts = append(pcts, p)
	}
	t.Logf("status --watch ran %v, drew %d bars at %v %%; every drawing:\n%s", time.Since(start).Round(time.Millisecond), len(pcts), pcts, plain)
	if len(pcts) == 0 || pcts[len(pcts)-1] != 100 || !strings.Contains(out, "[####################] 100%") {
		t.Fatalf("no progress bar reaching 100 %% on the terminal:\n%s", plain)
	}
	// A walk shorter than a heartbeat interval is never reported under way: only its end
	// shows. The tree is sized to outlast a few heartbeats, but a fast disk can beat it.
	if pcts[0] < 100 {
		if !strings.Contains(plain, "(last walk)") {
			t.Fatalf("the second snapshot's total is not the first one's entries:\n%s", plain)
		}
	} else {
		t.Logf("the snapshot was not seen under way: it took less than a heartbeat interval")
	}
	for i := 1; i < len(pcts); i++ {
		if pcts[i] < pcts[i-1] {
			t.Fatalf("the bar went back from %d %% to %d %%:\n%s", pcts[i-1], pcts[i], plain)
		}
	}
	if !strings.Contains(out, "\x1b[") {
		t.Fatalf("status on a terminal did not redraw in place:\n%q", out)
	}
	if v, err := c.statusView(); err != nil || v["ready"] != true {
		t.Fatalf("after the walk: %v, %v; want the view ready", v, err)
	}
}
