//go:build linux && !fustor_fsnotify

package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeWatches replaces addWatch with one handing out descriptors from 100 up and refusing with
// ENOSPC once limit watches are held (0 = never), as the kernel does at max_user_watches.
func fakeWatches(w *inotify, limit int) *int {
	next, calls := 100, 0
	w.addWatch = func(_ int, abs string, _ uint32) (int, error) {
		calls++
		if limit > 0 && len(w.wds) >= limit {
			return -1, unix.ENOSPC
		}
		next++
		return next, nil
	}
	return &calls
}

func mkdirs(t *testing.T, root string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(root, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func watched(w *inotify) []string {
	var out []string
	for p := range w.paths {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func TestWatchBudgetEvictsLeastRecentlyActive(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a", "b", "c")
	s, w := fakeInotify(t, root, newRecorder())
	w.budget = 3 // the root and two more
	fakeWatches(w, 0)
	now := time.Now()
	w.handleBuf(rawEvent(1, unix.IN_CREATE|unix.IN_ISDIR, 0, "a"), now)
	w.handleBuf(rawEvent(1, unix.IN_CREATE|unix.IN_ISDIR, 0, "b"), now.Add(time.Millisecond))
	// Activity in /a after /b was watched: /b is now the least recently active.
	w.handleBuf(rawEvent(int32(w.paths["/a"]), unix.IN_ATTRIB, 0, "x"), now.Add(2*time.Millisecond))
	w.handleBuf(rawEvent(1, unix.IN_CREATE|unix.IN_ISDIR, 0, "c"), now.Add(3*time.Millisecond))
	if got, want := watched(w), []string{"/", "/a", "/c"}; !slices.Equal(got, want) {
		t.Fatalf("watched %v; want %v", got, want)
	}
	if c := s.Counters(); c["watches_evicted"] != 1 || c["dirs_left_to_audit"] != 1 || c["watches"] != 3 {
		t.Errorf("counters %v", c)
	}
}

func TestWatchBudgetLoweredByENOSPC(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a", "b", "c", "d")
	s, w := fakeInotify(t, root, newRecorder())
	calls := fakeWatches(w, 3) // the kernel allows three watches, the root's included
	now := time.Now()
	for i, d := range []string{"a", "b", "c", "d"} {
		w.handleBuf(rawEvent(1, unix.IN_CREATE|unix.IN_ISDIR, 0, d), now.Add(time.Duration(i)*time.Millisecond))
	}
	// /c hit the limit: the budget became 3, /a (oldest) gave its watch to /c, /b its to /d.
	if got, want := watched(w), []string{"/", "/c", "/d"}; !slices.Equal(got, want) {
		t.Fatalf("watched %v; want %v", got, want)
	}
	c := s.Counters()
	if c["watch_budget"] != 3 || c["watch_budget_lowered"] != 1 || c["watch_nospace"] != 1 || c["watches_evicted"] != 2 {
		t.Errorf("counters %v", c)
	}
	if *calls != 5 {
		t.Errorf("addWatch called %d times; want 5 (a, b, c refused, c, d)", *calls)
	}
}

// A budget of 10 on a tree of 1,000 directories: the pre-scan gives the watches to the most
// recently modified directories; writes there arrive in real time, writes elsewhere do not (the
// audit finds them; fusion/e2e shows them as blind-spot additions).
func TestWatchBudgetRealInotify(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-24 * time.Hour)
	recent := time.Now().Add(-time.Minute)
	for i := range 1000 {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i))
		writeFile(t, filepath.Join(d, "f"), "x")
		mt := old
		if i >= 100 && i < 109 {
			mt = recent
		}
		if err := os.Chtimes(d, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	s := newSource(t, root, func(c *Config) { c.MaxWatches = 10; c.Now = time.Now })
	rec := startWatch(t, s)
	c := s.Counters()
	if c["watches"] != 10 || c["dirs_left_to_audit"] != 991 || c["watch_budget"] != 10 {
		t.Fatalf("counters after pre-scan %v", c)
	}
	writeFile(t, filepath.Join(root, "d105", "hot"), "1")
	rec.waitPath(t, "/d105/hot", isUpsert)
	writeFile(t, filepath.Join(root, "d500", "cold"), "1")
	for _, ev := range marker(t, rec, root, "m1") {
		if ev.Path == "/d500/cold" {
			t.Fatalf("event from an unwatched directory: %s", fmtEvent(ev))
		}
	}
	// A new directory takes the watch of the least recently active one.
	evicted := s.Counters()["watches_evicted"]
	if err := os.Mkdir(filepath.Join(root, "d105", "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/d105/new", isUpsert)
	writeFile(t, filepath.Join(root, "d105", "new", "f"), "1")
	rec.waitPath(t, "/d105/new/f", isUpsert)
	if c := s.Counters(); c["watches"] != 10 || c["watches_evicted"] != evicted+1 || c["dirs_left_to_audit"] != 992 {
		t.Errorf("counters after a new directory %v", c)
	}
}

// The pre-scan estimates the file system's clock drift from the directory mtimes, and every
// event's index comes from the corrected clock.
func TestPreScanEstimatesDrift(t *testing.T) {
	root := t.TempDir()
	ahead := time.Now().Add(2 * time.Hour)
	for i := range 50 {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i))
		mkdirs(t, root, filepath.Base(d))
		mt := ahead.Add(-time.Duration(i) * time.Second)
		if err := os.Chtimes(d, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	s := newSource(t, root, func(c *Config) { c.Now = time.Now })
	rec := startWatch(t, s)
	if d := s.Clock().Drift(); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Fatalf("drift %v; want about 2h", d)
	}
	writeFile(t, filepath.Join(root, "m"), "m")
	pos := rec.waitPath(t, "/m", nil)
	ev := rec.events()[pos]
	if d := time.Duration(int64(ev.Index)-time.Now().UnixMilli()) * time.Millisecond; d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Errorf("event index is %v from agent now; want about +2h", d)
	}
}
