package fs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// collect runs a snapshot and returns its batches.
func collect(t testing.TB, s *Source, rel string, origin source.Origin) ([][]source.Event, source.WalkStats) {
	t.Helper()
	var batches [][]source.Event
	st, err := s.Snapshot(context.Background(), rel, origin, func(b []source.Event) error {
		batches = append(batches, b)
		return nil
	})
	if err != nil {
		t.Fatalf("Snapshot(%s): %v", rel, err)
	}
	return batches, st
}

// expected lists the tree at root/rel as os.Lstat sees it, keyed by normalised path.
func expected(t testing.TB, root string) map[string]source.Event {
	t.Helper()
	want := map[string]source.Event{}
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(root, p)
		rel := "/" + filepath.ToSlash(r)
		if r == "." {
			rel = "/"
		}
		ev := source.Event{Origin: source.OriginSnapshot, Path: rel, Size: uint64(fi.Size()), MtimeNs: fi.ModTime().UnixNano(), Index: uint64(fixedNow.UnixMilli())}
		if fi.IsDir() {
			ev.Flags = fsbatch.FlagDir
		}
		want[rel] = ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// checkOrder verifies batch sizes and that every row comes after its parent's row.
func checkOrder(t *testing.T, batches [][]source.Event, batchSize int) map[string]source.Event {
	t.Helper()
	got := map[string]source.Event{}
	for i, b := range batches {
		if len(b) > batchSize || (i < len(batches)-1 && len(b) != batchSize) || len(b) == 0 {
			t.Errorf("batch %d of %d has %d events (batch size %d)", i, len(batches), len(b), batchSize)
		}
		for _, ev := range b {
			if _, dup := got[ev.Path]; dup {
				t.Errorf("%s emitted twice", ev.Path)
			}
			if ev.Path != fspath.Root {
				if _, ok := got[parentOf(ev.Path)]; !ok && len(got) > 0 {
					t.Errorf("%s emitted before its parent", ev.Path)
				}
			}
			got[ev.Path] = ev
		}
	}
	return got
}

func TestSnapshotTree1000(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, 1000)
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d1", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	want := expected(t, root)
	tests := []struct{ workers, batch int }{{1, 1000}, {2, 37}, {8, 1}, {4, 5000}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("workers=%d,batch=%d", tt.workers, tt.batch), func(t *testing.T) {
			s := newSource(t, root, func(c *Config) { c.Workers, c.BatchSize = tt.workers, tt.batch })
			batches, st := collect(t, s, "/", source.OriginSnapshot)
			got := checkOrder(t, batches, tt.batch)
			if len(got) != len(want) {
				t.Errorf("got %d rows, want %d", len(got), len(want))
			}
			for p, w := range want {
				if g, ok := got[p]; !ok || g != w {
					t.Errorf("%s: got %+v, want %+v", p, g, w)
				}
			}
			if st.Files != 1001 || st.Dirs != uint64(len(want)-1001) || st.Skipped != 0 {
				t.Errorf("stats %+v", st)
			}
			if g := got["/link"]; g.Flags&fsbatch.FlagDir != 0 {
				t.Errorf("symlink to a directory reported as a directory: %+v", g)
			}
		})
	}
}

func TestSnapshotSubtreeAndArgs(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, 100)
	s := newSource(t, root, nil)
	batches, _ := collect(t, s, "/d3/", source.OriginOnDemand)
	for _, ev := range slices.Concat(batches...) {
		if !fspath.IsWithin(ev.Path, "/d3") || ev.Origin != source.OriginOnDemand {
			t.Errorf("unexpected row %+v", ev)
		}
	}
	want := expected(t, filepath.Join(root, "d3"))
	if n := len(slices.Concat(batches...)); n != len(want) {
		t.Errorf("subtree rows %d, want %d", n, len(want))
	}
	batches, st := collect(t, s, "/d7/f0007.dat", source.OriginSnapshot)
	if len(batches) != 1 || len(batches[0]) != 1 || batches[0][0].Path != "/d7/f0007.dat" || st.Files != 1 {
		t.Errorf("file snapshot: %+v %+v", batches, st)
	}
	nop := func([]source.Event) error { return nil }
	if _, err := s.Snapshot(context.Background(), "/nope", source.OriginSnapshot, nop); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("missing subtree: %v", err)
	}
	if _, err := s.Snapshot(context.Background(), "d3", source.OriginSnapshot, nop); !errors.Is(err, fspath.ErrInvalid) {
		t.Errorf("relative subtree: %v", err)
	}
	if _, err := s.Snapshot(context.Background(), "/", source.OriginRealtime, nop); err == nil {
		t.Error("realtime origin accepted")
	}
}

func TestSnapshotExcludes(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"a.txt", "a.tmp", "sub/b.tmp", "sub/c.txt", ".git/config", "build/out/x", "build/keep", "deep/build/out/y"} {
		writeFile(t, filepath.Join(root, p), "z")
	}
	tests := []struct {
		excludes []string
		absent   []string
	}{
		{nil, nil},
		{[]string{"*.tmp"}, []string{"/a.tmp", "/sub/b.tmp"}},
		{[]string{".git"}, []string{"/.git", "/.git/config"}},
		{[]string{"/build/out"}, []string{"/build/out", "/build/out/x"}},
		{[]string{"build/out"}, []string{"/build/out", "/build/out/x"}},
		{[]string{"sub"}, []string{"/sub", "/sub/b.tmp", "/sub/c.txt"}},
	}
	all := expected(t, root)
	for _, tt := range tests {
		s := newSource(t, root, func(c *Config) { c.Excludes = tt.excludes })
		batches, st := collect(t, s, "/", source.OriginSnapshot)
		got := map[string]bool{}
		for _, ev := range slices.Concat(batches...) {
			got[ev.Path] = true
		}
		for p := range all {
			if want := !slices.Contains(tt.absent, p); got[p] != want {
				t.Errorf("excludes %v: %s present=%v, want %v", tt.excludes, p, got[p], want)
			}
		}
		if st.Skipped != 0 {
			t.Errorf("excludes %v: skipped %d", tt.excludes, st.Skipped)
		}
	}
}

func TestSnapshotInvalidNames(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "ok.txt"), "1")
	writeFile(t, filepath.Join(root, "bad\xffname"), "1")
	writeFile(t, filepath.Join(root, "\xfe\xfd", "inner"), "1")
	s := newSource(t, root, nil)
	batches, st := collect(t, s, "/", source.OriginSnapshot)
	rows := slices.Concat(batches...)
	if len(rows) != 2 || st.Skipped != 2 {
		t.Fatalf("rows %v, stats %+v", rows, st)
	}
	if n := s.Counters()["skipped_invalid_name"]; n != 2 {
		t.Errorf("skipped_invalid_name = %d", n)
	}
}

func TestSnapshotSymlinkLoopAndRootLink(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "real")
	writeFile(t, filepath.Join(root, "a", "f"), "1")
	for name, target := range map[string]string{"self": ".", "up": "..", "a/back": "../a", "dangling": "nowhere"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("real", filepath.Join(dir, "root-link")); err != nil {
		t.Fatal(err)
	}
	// The root may be a symlink (to a mount point): it is followed, nothing below it is.
	s := newSource(t, filepath.Join(dir, "root-link"), nil)
	batches, st := collect(t, s, "/", source.OriginSnapshot)
	got := checkOrder(t, batches, DefaultBatchSize)
	if len(got) != 7 || st.Dirs != 2 || st.Files != 5 {
		t.Fatalf("got %d rows %+v; stats %+v", len(got), got, st)
	}
	for _, p := range []string{"/self", "/up", "/a/back", "/dangling"} {
		if got[p].Flags&fsbatch.FlagDir != 0 {
			t.Errorf("%s reported as a directory", p)
		}
	}
	if s.Counters()["symlinks"] != 4 {
		t.Errorf("symlinks counter %d", s.Counters()["symlinks"])
	}
}

// TestSnapshotVanished removes entries between readdir and lstat, the ENOENT race of a live
// file system.
func TestSnapshotVanished(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, 50)
	victim := filepath.Join(root, "d2")
	s := newSource(t, root, func(c *Config) { c.Workers = 1 })
	removed := 0
	s.testHookListed = func(abs string) {
		if abs != victim {
			return
		}
		ents, _ := os.ReadDir(abs)
		for _, e := range ents {
			if !e.IsDir() {
				if err := os.Remove(filepath.Join(abs, e.Name())); err == nil {
					removed++
				}
			}
		}
	}
	batches, st := collect(t, s, "/", source.OriginSnapshot)
	if removed == 0 {
		t.Fatal("the hook removed nothing")
	}
	for _, ev := range slices.Concat(batches...) {
		if dir, _ := fspath.Split(ev.Path); dir == "/d2" && ev.Flags&fsbatch.FlagDir == 0 {
			t.Errorf("vanished file emitted: %s", ev.Path)
		}
	}
	if st.Skipped != uint64(removed) || s.Counters()["skipped_vanished"] != uint64(removed) {
		t.Errorf("removed %d; stats %+v; counters %v", removed, st, s.Counters())
	}
}

// TestSnapshotPermissionDenied needs an unprivileged user: root reads a mode-000 directory
// anyway, so under root it is skipped (TestClassify covers the mapping of EACCES).
func TestSnapshotPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permission bits are not enforced")
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "locked", "secret"), "1")
	writeFile(t, filepath.Join(root, "open"), "1")
	locked := filepath.Join(root, "locked")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })
	s := newSource(t, root, nil)
	batches, st := collect(t, s, "/", source.OriginSnapshot)
	got := checkOrder(t, batches, DefaultBatchSize)
	if e, ok := got["/locked"]; !ok || e.Flags&fsbatch.FlagAuditSkipped == 0 || len(got) != 3 || st.Skipped != 1 || s.Counters()["skipped_permission"] != 1 {
		t.Errorf("rows %v stats %+v counters %v", got, st, s.Counters())
	}
}

func TestSnapshotEmitErrorCancelPanic(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, 1000)
	boom := errors.New("boom")
	s := newSource(t, root, func(c *Config) { c.BatchSize, c.Workers = 10, 4 })
	calls := 0
	_, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error {
		calls++
		if calls == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 3 {
		t.Errorf("emit error: err %v after %d calls", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls = 0
	_, err = s.Snapshot(ctx, "/", source.OriginSnapshot, func([]source.Event) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("cancel: err %v after %d calls", err, calls)
	}

	_, err = s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { panic("emit bug") })
	if err == nil || !strings.Contains(err.Error(), "emit bug") {
		t.Errorf("emit panic: %v", err)
	}
	s.testHookListed = func(string) { panic("worker bug") }
	_, err = s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "worker bug") {
		t.Errorf("worker panic: %v", err)
	}
	if s.Counters()["panics"] < 2 {
		t.Errorf("panics counter %d", s.Counters()["panics"])
	}
}

func TestSnapshotAuditParentMtime(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, 30)
	s := newSource(t, root, nil)
	batches, _ := collect(t, s, "/", source.OriginAudit)
	want := expected(t, root)
	for _, ev := range slices.Concat(batches...) {
		if ev.Origin != source.OriginAudit {
			t.Errorf("%s origin %v", ev.Path, ev.Origin)
		}
		if ev.Path == fspath.Root {
			continue
		}
		if p := want[parentOf(ev.Path)]; ev.ParentMtimeNs != p.MtimeNs {
			t.Errorf("%s parent mtime %d, want %d", ev.Path, ev.ParentMtimeNs, p.MtimeNs)
		}
	}
	batches, _ = collect(t, s, "/d1", source.OriginAudit)
	if top := batches[0][0]; top.Path != "/d1" || top.ParentMtimeNs != want["/"].MtimeNs {
		t.Errorf("subtree top %+v", top)
	}
}

func BenchmarkSnapshot1000(b *testing.B) {
	root := b.TempDir()
	mkTree(b, root, 1000)
	s := newSource(b, root, nil)
	b.ResetTimer()
	for b.Loop() {
		rows := 0
		if _, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
			rows += len(evs)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if rows != 1111 {
			b.Fatalf("rows %d", rows)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1111, "ns/row")
}

// TestCompareWithFind compares a snapshot with `find DIR -printf '%P|%y|%s|%T@\n'` and times
// both. It walks FUSTOR_FS_FIND_DIR when set (e.g. a large tree), else a small generated one.
// Symlinks and special files are rows without the dir flag, so find's l/p/s/c/b read as f.
func TestCompareWithFind(t *testing.T) {
	if _, err := exec.LookPath("find"); err != nil {
		t.Skip("find not available")
	}
	root := os.Getenv("FUSTOR_FS_FIND_DIR")
	if root == "" {
		root = t.TempDir()
		mkTree(t, root, 300)
		if err := os.Symlink("d1", filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
	}
	s := newSource(t, root, nil)
	var ours []string
	start := time.Now()
	st, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
		for _, ev := range evs {
			typ := "f"
			if ev.Flags&fsbatch.FlagDir != 0 {
				typ = "d"
			}
			ours = append(ours, fmt.Sprintf("%s|%s|%d|%d", strings.TrimPrefix(ev.Path, "/"), typ, ev.Size, ev.MtimeNs))
		}
		return nil
	})
	tOurs := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	out, err := exec.Command("find", root, "-printf", `%P|%y|%s|%T@\n`).Output()
	tFind := time.Since(start)
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	var theirs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		if len(f) != 4 {
			t.Fatalf("find line %q", sc.Text())
		}
		if f[1] != "d" {
			f[1] = "f"
		}
		theirs = append(theirs, fmt.Sprintf("%s|%s|%s|%d", f[0], f[1], f[2], findTime(t, f[3])))
	}
	slices.Sort(ours)
	slices.Sort(theirs)
	t.Logf("rows %d (dirs %d files %d skipped %d): fustor %v (%.0f rows/s, %d workers), find %v",
		len(ours), st.Dirs, st.Files, st.Skipped, tOurs, float64(len(ours))/tOurs.Seconds(), s.cfg.Workers, tFind)
	if !slices.Equal(ours, theirs) {
		shown := 0
		for _, l := range ours {
			if _, ok := slices.BinarySearch(theirs, l); !ok && shown < 10 {
				t.Errorf("only fustor: %s", l)
				shown++
			}
		}
		for _, l := range theirs {
			if _, ok := slices.BinarySearch(ours, l); !ok && shown < 20 {
				t.Errorf("only find:   %s", l)
				shown++
			}
		}
		t.Fatalf("fustor %d rows, find %d rows", len(ours), len(theirs))
	}
}

// findTime parses find's %T@ ("1700000000.1234567890") into ns.
func findTime(t *testing.T, s string) int64 {
	sec, frac, _ := strings.Cut(s, ".")
	frac = (frac + "000000000")[:9]
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("find time %q", s)
	}
	return a*1e9 + b
}

// BenchmarkSnapshotDir walks FUSTOR_FS_FIND_DIR (skipped when unset) with several worker
// counts, emitting into a counter only, after timing `find -printf '%P|%y|%s|%T@\n'` (output
// to /dev/null) on the same tree.
func BenchmarkSnapshotDir(b *testing.B) {
	root := os.Getenv("FUSTOR_FS_FIND_DIR")
	if root == "" {
		b.Skip("FUSTOR_FS_FIND_DIR not set")
	}
	// find with the same fields as a snapshot row, in the same run and equally warm.
	b.Run("find", func(b *testing.B) {
		if _, err := exec.LookPath("find"); err != nil {
			b.Skip("no find")
		}
		for b.Loop() {
			cmd := exec.Command("find", root, "-printf", "%P|%y|%s|%T@\n")
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, workers := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s := newSource(b, root, func(c *Config) { c.Workers = workers })
			rows := 0
			for b.Loop() {
				rows = 0
				if _, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
					rows += len(evs)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// TestSnapshotDirectoryPathsOwnTheirMemory: a listing's file paths are cut from one block
// (dirio.Scratch), so a directory's path, which outlives the listing in the work queue, the
// watches and the audit cache, must not be one of those cuts, or it would pin the block.
func TestSnapshotDirectoryPathsOwnTheirMemory(t *testing.T) {
	root := t.TempDir()
	for i := range 3 {
		if err := os.Mkdir(filepath.Join(root, fmt.Sprintf("sub%d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("f%02d", i)), "x")
	}
	s := newSource(t, root, nil)
	var files, dirs []string
	if _, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
		for _, e := range evs {
			switch {
			case e.Path == "/":
			case e.IsDir():
				dirs = append(dirs, e.Path)
			default:
				files = append(files, e.Path)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(files) != 50 || len(dirs) != 3 {
		t.Fatalf("%d files and %d dirs, want 50 and 3", len(files), len(dirs))
	}
	lo, hi := uintptr(^uint(0)), uintptr(0)
	for _, f := range files {
		p := uintptr(unsafe.Pointer(unsafe.StringData(f)))
		lo, hi = min(lo, p), max(hi, p+uintptr(len(f)))
	}
	if hi-lo > 50*16 {
		t.Fatalf("the 50 file paths span %d bytes: not cut from one block, the test lost its point", hi-lo)
	}
	for _, d := range dirs {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(d))); p >= lo && p < hi {
			t.Errorf("directory path %q lies inside the listing's block of file paths", d)
		}
	}
}
