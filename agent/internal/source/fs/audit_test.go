package fs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// TestAuditTrueSilence: the first audit lists everything; the second sends unchanged
// directories as audit_skipped rows without their files but still walks their subdirectories.
func TestAuditTrueSilence(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"quiet/f1", "quiet/deep/f2", "busy/f3"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(nil, Config{Root: root, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	cache := source.NewAuditCache()
	audit := func() map[string]source.Event {
		t.Helper()
		got := map[string]source.Event{}
		if _, err := s.Audit(context.Background(), cache, source.AuditOptions{}, func(evs []source.Event) error {
			for _, e := range evs {
				if e.Origin != source.OriginAudit {
					t.Errorf("%s: origin %v", e.Path, e.Origin)
				}
				got[e.Path] = e
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := audit()
	for _, p := range []string{"/", "/quiet", "/quiet/f1", "/quiet/deep", "/quiet/deep/f2", "/busy", "/busy/f3"} {
		e, ok := first[p]
		if !ok || e.Flags&fsbatch.FlagAuditSkipped != 0 {
			t.Fatalf("first audit: %s = %+v, %v", p, e, ok)
		}
	}
	if first["/quiet/f1"].ParentMtimeNs != first["/quiet"].MtimeNs {
		t.Fatalf("file row lacks its parent's mtime: %+v", first["/quiet/f1"])
	}
	// A change in /busy: a new entry, and an mtime set apart from the cached one so the test
	// does not depend on the file system's timestamp granularity.
	if err := os.WriteFile(filepath.Join(root, "busy/f4"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Unix(0, first["/busy"].MtimeNs).Add(time.Minute)
	if err := os.Chtimes(filepath.Join(root, "busy"), later, later); err != nil {
		t.Fatal(err)
	}
	second := audit()
	var paths []string
	for p := range second {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	want := []string{"/", "/busy", "/busy/f3", "/busy/f4", "/quiet", "/quiet/deep"}
	if !slices.Equal(paths, want) {
		t.Fatalf("second audit sent %v; want %v", paths, want)
	}
	for _, p := range []string{"/", "/quiet", "/quiet/deep"} {
		if second[p].Flags&fsbatch.FlagAuditSkipped == 0 {
			t.Errorf("%s not audit_skipped", p)
		}
	}
	if second["/busy"].Flags&fsbatch.FlagAuditSkipped != 0 {
		t.Error("/busy changed but was skipped")
	}
	cache.Reset()
	if third := audit(); len(third) != 8 {
		t.Fatalf("after Reset the audit sent %d rows; want all 8", len(third))
	}
}

// BenchmarkAuditUnchanged compares, on one tree, a full snapshot walk with an audit of the
// unchanged tree (every directory silent after a first audit). The tree is
// FUSTOR_FS_FIND_DIR when set, else a generated one of 100,000 files.
func BenchmarkAuditUnchanged(b *testing.B) {
	root := os.Getenv("FUSTOR_FS_FIND_DIR")
	if root == "" {
		root = b.TempDir()
		mkTree(b, root, 100_000)
	}
	s := newSource(b, root, nil)
	walk := func(f func(func([]source.Event) error) (source.WalkStats, error)) (time.Duration, int) {
		rows := 0
		start := time.Now()
		if _, err := f(func(evs []source.Event) error { rows += len(evs); return nil }); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), rows
	}
	var full, audit time.Duration
	var fullRows, auditRows int
	var walkRSS, auditRSS float64
	for b.Loop() {
		resetPeakRSS()
		d, n := walk(func(emit func([]source.Event) error) (source.WalkStats, error) {
			return s.Snapshot(context.Background(), "/", source.OriginSnapshot, emit)
		})
		full, fullRows = full+d, n
		walkRSS = max(walkRSS, peakRSSMB())
		cache := source.NewAuditCache()
		if _, err := s.Audit(context.Background(), cache, source.AuditOptions{}, func([]source.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
		resetPeakRSS()
		d, n = walk(func(emit func([]source.Event) error) (source.WalkStats, error) {
			return s.Audit(context.Background(), cache, source.AuditOptions{}, emit)
		})
		audit, auditRows = audit+d, n
		auditRSS = max(auditRSS, peakRSSMB())
	}
	// Peak RSS of the whole test process during each walk (events are counted, not kept).
	b.ReportMetric(walkRSS, "MiB-peak-rss-walk")
	b.ReportMetric(auditRSS, "MiB-peak-rss-audit")
	b.ReportMetric(float64(full.Microseconds())/1000/float64(b.N), "ms/full-walk")
	b.ReportMetric(float64(audit.Microseconds())/1000/float64(b.N), "ms/unchanged-audit")
	b.ReportMetric(100*float64(audit)/float64(full), "%-of-full")
	b.ReportMetric(float64(fullRows), "full-rows")
	b.ReportMetric(float64(auditRows), "audit-rows")
}

// TestSnapshotDefersHotFiles: files younger than the hot threshold are sent after the cold
// ones; a file with a write in progress is sent at once, flagged as being written, never left
// out (its close-write may never come).
func TestSnapshotDefersHotFiles(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{"cold1", "hot", "cold2"} {
		if err := os.WriteFile(filepath.Join(root, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if p != "hot" {
			if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "writing"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, root, func(c *Config) { c.HotThreshold = time.Minute; c.Now = time.Now })
	s.writing = map[string]struct{}{"/writing": {}} // as the watcher records a write in progress
	s.writingChanged()
	var order []string
	partial := map[string]bool{}
	ws, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
		for _, e := range evs {
			order = append(order, e.Path)
			partial[e.Path] = e.Flags&fsbatch.FlagPartialWrite != 0
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 5 || order[len(order)-1] != "/hot" || !slices.Contains(order, "/writing") {
		t.Fatalf("order %v", order)
	}
	for p, isPartial := range partial {
		if isPartial != (p == "/writing") {
			t.Errorf("%s: partial-write flag %v", p, isPartial)
		}
	}
	if ws.Deferred != 1 || ws.Writing != 1 || ws.Files != 4 {
		t.Fatalf("stats %+v", ws)
	}

	// A hot file whose write starts while the walk holds it back is sent flagged too.
	s.writingMu.Lock()
	s.writing["/hot"] = struct{}{}
	s.writingChanged()
	s.writingMu.Unlock()
	var hot source.Event
	if ws, err = s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
		for _, e := range evs {
			if e.Path == "/hot" {
				hot = e
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if hot.Flags&fsbatch.FlagPartialWrite == 0 || ws.Writing != 2 || ws.Files != 4 {
		t.Fatalf("hot file being written: %+v, stats %+v", hot, ws)
	}
}
