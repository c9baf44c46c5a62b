//go:build linux && !fustor_fsnotify

package fs

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fustor/fustor/agent/internal/source"
)

func TestInotifyCreateWriteClose(t *testing.T) {
	root := t.TempDir()
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	f, err := os.Create(filepath.Join(root, "a"))
	if err != nil {
		t.Fatal(err)
	}
	created := rec.waitPath(t, "/a", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 0 })
	if _, err := f.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/a", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 5 })
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	done := rec.waitPath(t, "/a", func(ev source.Event) bool { return !isPartial(ev) && ev.Size == 5 })
	if done < created {
		t.Errorf("atomic event before the partial one:\n%s", dump(rec.events()))
	}
}

func TestInotifyAppendAndAttrib(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "log"), "abc")
	writeFile(t, filepath.Join(root, "other"), "o")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)

	f, err := os.OpenFile(filepath.Join(root, "log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("de"); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/log", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 5 })
	// A write is open: an attribute change keeps the partial flag.
	if err := os.Chmod(filepath.Join(root, "log"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := len(rec.events())
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closed := rec.waitPath(t, "/log", func(ev source.Event) bool { return !isPartial(ev) && ev.Size == 5 })
	for _, ev := range rec.events()[n-1 : closed] {
		if ev.Path == "/log" && !isPartial(ev) {
			t.Errorf("attrib during a write lost the partial flag: %s", fmtEvent(ev))
		}
	}
	// No write open: plain upsert.
	if err := os.Chmod(filepath.Join(root, "other"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/other", func(ev source.Event) bool { return isUpsert(ev) && !isPartial(ev) })
	// A hard link is complete at once.
	if err := os.Link(filepath.Join(root, "other"), filepath.Join(root, "hard")); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/hard", func(ev source.Event) bool { return isUpsert(ev) && !isPartial(ev) })
}

func TestInotifyModifyThrottle(t *testing.T) {
	root := t.TempDir()
	s := newSource(t, root, func(c *Config) { c.ModifyThrottle = 300 * time.Millisecond })
	rec := startWatch(t, s)
	f, err := os.Create(filepath.Join(root, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Create(filepath.Join(root, "side"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rec.waitPath(t, "/big", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 0 })
	// The first write opens the throttle window; the other 99 fall inside it.
	if _, err := f.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/big", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 1 })
	// inotify merges an event identical to the last one queued; interleaving two files keeps
	// the modifies distinct, so the throttle is what coalesces them.
	for range 99 {
		for _, h := range []*os.File{f, g} {
			if _, err := h.Write([]byte{'x'}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The trailing flush carries the last state, with no close to help.
	last := rec.waitPath(t, "/big", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 100 })
	evs := rec.events()
	n := 0
	for _, ev := range evs[:last+1] {
		if ev.Path == "/big" {
			n++
		}
	}
	if n > 4 {
		t.Errorf("100 writes gave %d events:\n%s", n, dump(evs))
	}
	if c := s.Counters()["modify_coalesced"]; c < 150 {
		t.Errorf("modify_coalesced %d", c)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closed := rec.waitPath(t, "/big", func(ev source.Event) bool { return !isPartial(ev) && ev.Size == 100 })
	// Past the close the throttle must have nothing left for this file.
	evs = marker(t, rec, root, "marker")
	for _, ev := range evs[closed+1:] {
		if ev.Path == "/big" {
			t.Errorf("event after close: %s", fmtEvent(ev))
		}
	}
}

func TestInotifyMoveOutThenRecreate(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	writeFile(t, filepath.Join(root, "a", "f"), "1")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(base, "a")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "a", "g"), "2")
	up := rec.waitPath(t, "/a/g", isUpsert)
	del := rec.waitPath(t, "/a", isDelete)
	if del > up {
		t.Errorf("delete of the moved-out /a after the upsert of the new one:\n%s", dump(rec.events()))
	}
	if c := s.Counters()["moves_unpaired"]; c != 1 {
		t.Errorf("moves_unpaired %d", c)
	}
}

func TestInotifyRootRemoved(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	writeFile(t, filepath.Join(root, "sub", "f"), "1")
	s := newSource(t, root, nil)
	ready := make(chan struct{})
	s.testHookReady = func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- s.Watch(context.Background(), newRecorder().emit) }()
	<-ready
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "root") {
			t.Errorf("Watch = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Watch kept running without its root")
	}
	if s.Counters()["watches"] != 0 {
		t.Errorf("watches %d after Watch returned", s.Counters()["watches"])
	}
}

func TestInotifyMissingRoot(t *testing.T) {
	s := newSource(t, filepath.Join(t.TempDir(), "nope"), nil)
	if err := s.Watch(context.Background(), func(source.Event) {}); err == nil {
		t.Fatal("Watch of a missing root succeeded")
	}
}

// fakeInotify is a watcher with no kernel behind it, fed synthetic events.
func fakeInotify(t *testing.T, root string, rec *recorder) (*Source, *inotify) {
	s := newSource(t, root, nil)
	w := &inotify{realtime: newRealtime(s, rec.emit), fd: -1, wds: map[int]string{}, paths: map[string]int{}, rootWd: 1,
		addWatch: unix.InotifyAddWatch}
	w.lru.init()
	w.bind(1, "/")
	return s, w
}

func rawEvent(wd int32, mask, cookie uint32, name string) []byte {
	nameLen := 0
	if name != "" {
		nameLen = (len(name) + 1 + 15) / 16 * 16
	}
	b := make([]byte, unix.SizeofInotifyEvent+nameLen)
	binary.NativeEndian.PutUint32(b[0:], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[8:], cookie)
	binary.NativeEndian.PutUint32(b[12:], uint32(nameLen))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func TestInotifyOverflowEvent(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "x"), "12")
	rec := newRecorder()
	s, w := fakeInotify(t, root, rec)
	calls := 0
	s.SetOnOverflow(func() { calls++ })
	now := time.Now()
	buf := append(rawEvent(1, unix.IN_MOVED_FROM, 7, "gone"), rawEvent(-1, unix.IN_Q_OVERFLOW, 0, "")...)
	buf = append(buf, rawEvent(1, unix.IN_CLOSE_WRITE, 0, "x")...)
	w.handleBuf(buf, now)
	if calls != 1 || s.Counters()["overflows"] != 1 {
		t.Fatalf("overflow: calls %d counters %v", calls, s.Counters())
	}
	evs := rec.events()
	// The pending move is resolved (as a delete) before anything else goes out.
	if len(evs) != 2 || evs[0].Path != "/gone" || !isDelete(evs[0]) || evs[1].Path != "/x" || evs[1].Size != 2 {
		t.Fatalf("events:\n%s", dump(evs))
	}
	// Directories created in the lost events get their watches back.
	if !w.rewatch {
		t.Fatal("overflow did not ask for a rewatch")
	}
	writeFile(t, filepath.Join(root, "lost", "deeper", "f"), "1")
	var added []string
	next := 100
	w.addWatch = func(_ int, path string, _ uint32) (int, error) {
		added = append(added, path)
		next++
		return next, nil
	}
	w.watchTree(context.Background())
	if len(added) != 2 || w.wds[101] != "/lost" || w.wds[102] != "/lost/deeper" || len(rec.events()) != 2 {
		t.Errorf("rewatch added %v, wds %v", added, w.wds)
	}
}

func TestInotifyMovePairing(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "b"), "123")
	rec := newRecorder()
	s, w := fakeInotify(t, root, rec)
	t0 := time.Now()
	// The halves of a rename may come in different reads, within the window.
	w.handleBuf(rawEvent(1, unix.IN_MOVED_FROM, 9, "a"), t0)
	w.expireMoves(t0.Add(moveWindow/2), false)
	if len(rec.events()) != 0 {
		t.Fatalf("move resolved early: %s", dump(rec.events()))
	}
	w.handleBuf(rawEvent(1, unix.IN_MOVED_TO, 9, "b"), t0.Add(moveWindow/2))
	evs := rec.events()
	if len(evs) != 2 || evs[0].Path != "/a" || !isDelete(evs[0]) || evs[1].Path != "/b" || evs[1].Size != 3 {
		t.Fatalf("paired rename:\n%s", dump(evs))
	}
	// Alone past the window: moved out.
	w.handleBuf(rawEvent(1, unix.IN_MOVED_FROM|unix.IN_ISDIR, 10, "d"), t0)
	if !w.nextDeadline().Equal(t0.Add(moveWindow)) {
		t.Errorf("deadline %v, want %v", w.nextDeadline(), t0.Add(moveWindow))
	}
	w.expireMoves(t0.Add(moveWindow), false)
	evs = rec.events()
	if last := evs[len(evs)-1]; last.Path != "/d" || !isDelete(last) || !last.IsDir() {
		t.Fatalf("unpaired move:\n%s", dump(evs))
	}
	// A MOVED_TO with no FROM is a move in.
	w.handleBuf(rawEvent(1, unix.IN_MOVED_TO, 11, "b"), t0)
	if last := rec.events()[len(rec.events())-1]; last.Path != "/b" || !isUpsert(last) || isPartial(last) {
		t.Fatalf("move in: %s", fmtEvent(last))
	}
	if s.Counters()["moves_paired"] != 1 || s.Counters()["moves_unpaired"] != 2 {
		t.Errorf("counters %v", s.Counters())
	}
	// Events for a descriptor already dropped are counted, not mapped.
	w.handleBuf(rawEvent(42, unix.IN_CREATE, 0, "zz"), t0)
	if s.Counters()["unknown_wd"] != 1 {
		t.Errorf("unknown_wd %d", s.Counters()["unknown_wd"])
	}
}

func TestInotifyRekey(t *testing.T) {
	rec := newRecorder()
	_, w := fakeInotify(t, t.TempDir(), rec)
	for wd, p := range map[int]string{2: "/a", 3: "/a/b", 4: "/a/b/c", 5: "/ab", 6: "/x"} {
		w.bind(wd, p)
	}
	w.rekey("/a", "/x")
	want := map[int]string{1: "/", 2: "/x", 3: "/x/b", 4: "/x/b/c", 5: "/ab"}
	if len(w.wds) != len(want) || len(w.paths) != len(want) {
		t.Fatalf("wds %v paths %v", w.wds, w.paths)
	}
	for wd, p := range want {
		if w.wds[wd] != p || w.paths[p] != wd {
			t.Errorf("wd %d: %q / %d", wd, w.wds[wd], w.paths[p])
		}
	}
	w.dropTree("/x")
	if len(w.wds) != 2 || w.s.Counters()["watches"] != 2 {
		t.Errorf("after dropTree: %v, watches %d", w.wds, w.s.Counters()["watches"])
	}
}

func TestInotifyWatchLimit(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "new", "sub", "f"), "abc")
	rec := newRecorder()
	s, w := fakeInotify(t, root, rec)
	calls := 0
	w.addWatch = func(int, string, uint32) (int, error) {
		calls++
		return -1, unix.ENOSPC
	}
	// Without a watch the new directory's content must still be reported.
	w.handleBuf(rawEvent(1, unix.IN_CREATE|unix.IN_ISDIR, 0, "new"), time.Now())
	got := map[string]bool{}
	for _, ev := range rec.events() {
		got[ev.Path] = isUpsert(ev)
	}
	for _, p := range []string{"/new", "/new/sub", "/new/sub/f"} {
		if !got[p] {
			t.Errorf("%s not upserted: %v", p, got)
		}
	}
	// The refusal lowers the budget to the one watch held (the root's): nothing to evict, so
	// /new/sub is not even tried.
	if c := s.Counters(); calls != 1 || c["watch_nospace"] != 1 || c["watch_budget"] != 1 || c["watch_budget_lowered"] != 1 ||
		c["dirs_left_to_audit"] != 2 || len(w.wds) != 1 {
		t.Errorf("calls %d counters %v wds %v", calls, c, w.wds)
	}
}

// TestSnapshotSendsATruncatedFile: a truncate is a write with no close (IN_MODIFY alone), so
// the watcher holds the file as being written until a close that never comes. A snapshot must
// still send it, flagged, or the view would lack it for good.
func TestSnapshotSendsATruncatedFile(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "cut"), "0123456789")
	writeFile(t, filepath.Join(root, "plain"), "p")
	s := newSource(t, root, nil)
	rec := startWatch(t, s)
	if err := os.Truncate(filepath.Join(root, "cut"), 4); err != nil {
		t.Fatal(err)
	}
	rec.waitPath(t, "/cut", func(ev source.Event) bool { return isPartial(ev) && ev.Size == 4 })
	got := map[string]source.Event{}
	ws, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
		for _, e := range evs {
			got[e.Path] = e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cut, ok := got["/cut"]
	if !ok || !isPartial(cut) || cut.Size != 4 {
		t.Fatalf("truncated file in the snapshot: %+v, %v", cut, ok)
	}
	if isPartial(got["/plain"]) || ws.Writing != 1 || ws.Files != 2 {
		t.Fatalf("plain %+v, stats %+v", got["/plain"], ws)
	}
}
