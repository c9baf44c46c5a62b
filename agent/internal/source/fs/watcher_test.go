package fs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fspath"
)

// Tests in this file hold for both back ends (inotify, and fsnotify with -tags fustor_fsnotify).

// startWatch runs Watch until the test ends and returns once the initial watches are placed.
func startWatch(t *testing.T, s *Source) *recorder {
	t.Helper()
	rec := newRecorder()
	ready := make(chan struct{})
	s.testHookReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, rec.emit) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Watch: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch ended before it was ready: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("Watch not ready")
	}
	return rec
}

// marker creates a file and waits for its event. Events are queued in order, so whatever an
// earlier action produced is in the recorder by then: this is how a test proves an absence.
func marker(t *testing.T, rec *recorder, root, name string) []source.Event {
	t.Helper()
	writeFile(t, filepath.Join(root, name), "m")
	pos := rec.waitPath(t, "/"+name, nil)
	return rec.events()[:pos]
}

func TestWatchFileLifecycle(t *testing.T) {
	root := t.TempDir()
	s := newSource(t, root, func(c *Config) { c.ModifyThrottle = 20 * time.Millisecond })
	rec := startWatch(t, s)

	writeFile(t, filepath.Join(root, "a.txt"), "hello")
	rec.waitPath(t, "/a.txt", func(ev source.Event) bool { return !isPartial(ev) && ev.Size == 5 && isUpsert(ev) })

	if err := os.Remove(filepath.Join(root, "a.txt")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/a.txt", isDelete)
	if ev := rec.events(); ev[len(ev)-1].IsDir() || ev[len(ev)-1].Origin != source.OriginRealtime {
		t.Errorf("delete event %+v", ev[len(ev)-1])
	}
	if n := s.Counters()["events"]; n != uint64(len(rec.events())) {
		t.Errorf("events counter %d, recorded %d", n, len(rec.events()))
	}
}

func TestWatchNewDirFilesWrittenAtOnce(t *testing.T) {
	root := t.TempDir()
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	// Files land in directories before their watch can exist; the scan after the watch must
	// find them all, whichever level they are in.
	var want []string
	for i := range 10 {
		dir := filepath.Join(root, fmt.Sprintf("a%d", i), "b", "c")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"a.dat", "b/b.dat", "b/c/c.dat"} {
			full := filepath.Join(root, fmt.Sprintf("a%d", i), p)
			writeFile(t, full, p)
			want = append(want, fspath.Join(fmt.Sprintf("/a%d", i), p))
		}
	}
	rec.waitFor(t, "every file with its final size", func(evs []source.Event) bool {
		seen := map[string]bool{}
		for _, ev := range evs {
			// Each file holds its own path below /aN/.
			if isUpsert(ev) && !ev.IsDir() && int(ev.Size) == len(ev.Path)-len("/aN/") {
				seen[ev.Path] = true
			}
		}
		for _, p := range want {
			if !seen[p] {
				return false
			}
		}
		return true
	})
	for _, d := range []string{"/a0", "/a0/b", "/a0/b/c"} {
		rec.waitPath(t, d, func(ev source.Event) bool { return ev.IsDir() && isUpsert(ev) })
	}
}

func TestWatchDeleteTree(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, 100)
	writeFile(t, filepath.Join(root, "single"), "1")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	var dirs, d4dirs uint64
	for p, ev := range expected(t, root) {
		if ev.IsDir() {
			dirs++
			if fspath.IsWithin(p, "/d4") {
				d4dirs++
			}
		}
	}
	watches := s.Counters()["watches"]
	if watches != dirs {
		t.Fatalf("watches %d, want %d", watches, dirs)
	}
	if err := os.Remove(filepath.Join(root, "single")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "d4")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/single", func(ev source.Event) bool { return isDelete(ev) && !ev.IsDir() })
	rec.waitPath(t, "/d4", func(ev source.Event) bool { return isDelete(ev) && ev.IsDir() })
	rec.waitPath(t, "/d4/s0", func(ev source.Event) bool { return isDelete(ev) && ev.IsDir() })
	rec.waitPath(t, "/d4/s0/f0004.dat", func(ev source.Event) bool { return isDelete(ev) && !ev.IsDir() })
	deadline := time.Now().Add(waitTimeout)
	for i := 0; s.Counters()["watches"] != watches-d4dirs; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("watches %d, want %d", s.Counters()["watches"], watches-d4dirs)
		}
		marker(t, rec, root, fmt.Sprintf("m%d", i))
	}
}

func TestWatchRenameDirectory1000(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "old", "sub", "x"), "x")
	for i := range 1000 {
		writeFile(t, filepath.Join(root, "old", fmt.Sprintf("f%04d", i)), "data")
	}
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	if err := os.Rename(filepath.Join(root, "old"), filepath.Join(root, "new")); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, "the whole new subtree", func(evs []source.Event) bool {
		n := 0
		for _, ev := range evs {
			if isUpsert(ev) && fspath.IsWithin(ev.Path, "/new") {
				n++
			}
		}
		return n >= 1003
	})
	del := -1
	for i, ev := range evs {
		if ev.Path == "/old" && isDelete(ev) && ev.IsDir() {
			del = i
		}
		if isUpsert(ev) && fspath.IsWithin(ev.Path, "/old") {
			t.Errorf("upsert under the old name: %s", fmtEvent(ev))
		}
		if isUpsert(ev) && fspath.IsWithin(ev.Path, "/new") && del < 0 {
			t.Errorf("upsert %s before the delete of /old", ev.Path)
		}
	}
	if del < 0 {
		t.Fatalf("no delete of /old:\n%s", dump(evs))
	}
	// The watches moved with the directory: new writes carry the new path.
	writeFile(t, filepath.Join(root, "new", "sub", "later"), "later")
	rec.waitPath(t, "/new/sub/later", isUpsert)
}

func TestWatchMoveInAndOut(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	writeFile(t, filepath.Join(root, "stay"), "s")
	writeFile(t, filepath.Join(root, "leaving", "sub", "f"), "f")
	writeFile(t, filepath.Join(outside, "tree", "sub", "deep", "g"), "gg")
	writeFile(t, filepath.Join(outside, "tree", "h"), "hhh")
	writeFile(t, filepath.Join(outside, "file"), "file")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)

	for _, n := range []string{"tree", "file"} {
		if err := os.Rename(filepath.Join(outside, n), filepath.Join(root, n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/tree", "/tree/sub", "/tree/sub/deep", "/tree/sub/deep/g", "/tree/h", "/file"} {
		rec.waitPath(t, p, isUpsert)
	}
	writeFile(t, filepath.Join(root, "tree", "sub", "deep", "new"), "n")
	rec.waitPath(t, "/tree/sub/deep/new", isUpsert)

	if err := os.Rename(filepath.Join(root, "leaving"), filepath.Join(outside, "leaving")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/leaving", func(ev source.Event) bool { return isDelete(ev) && ev.IsDir() })
	n := len(rec.events())
	// Writes in the moved-out tree are no longer ours.
	writeFile(t, filepath.Join(outside, "leaving", "sub", "after"), "a")
	for _, ev := range marker(t, rec, root, "marker")[n:] {
		t.Errorf("event after move-out: %s", fmtEvent(ev))
	}
}

func TestWatchRenameFile(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a"), "abc")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	up := rec.waitPath(t, "/b", func(ev source.Event) bool { return isUpsert(ev) && !isPartial(ev) && ev.Size == 3 })
	del := rec.waitPath(t, "/a", isDelete)
	if del > up {
		t.Errorf("delete of /a after the upsert of /b:\n%s", dump(rec.events()))
	}
}

func TestWatchExcludesAndInvalidNames(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "keep.txt"), "k")
	s := newSource(t, root, func(c *Config) { c.Excludes = []string{"*.tmp", "skip"} })
	rec := startWatch(t, s)
	writeFile(t, filepath.Join(root, "x.tmp"), "t")
	writeFile(t, filepath.Join(root, "skip", "inner"), "i")
	writeFile(t, filepath.Join(root, "bad\xff"), "b")
	for _, ev := range marker(t, rec, root, "marker1") {
		t.Errorf("event for a hidden entry: %s", fmtEvent(ev))
	}
	if s.Counters()["skipped_invalid_name"] == 0 || s.Counters()["skipped_excluded"] == 0 {
		t.Errorf("counters %v", s.Counters())
	}
	// Renaming to an excluded name leaves the tree; renaming from one enters it.
	if err := os.Rename(filepath.Join(root, "keep.txt"), filepath.Join(root, "keep.tmp")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/keep.txt", isDelete)
	if err := os.Rename(filepath.Join(root, "x.tmp"), filepath.Join(root, "x.txt")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/x.txt", isUpsert)
}

func TestWatchSymlinkNotFollowed(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "d", "f"), "f")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	before := s.Counters()["watches"]
	if err := os.Symlink(".", filepath.Join(root, "loop")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/loop", func(ev source.Event) bool { return isUpsert(ev) && !ev.IsDir() })
	marker(t, rec, root, "marker")
	if after := s.Counters()["watches"]; after != before {
		t.Errorf("watches %d → %d: a symlink got a watch", before, after)
	}
}
