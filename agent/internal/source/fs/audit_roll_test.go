package fs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// rollTree is a tree of leaf directories (nlink 2, where the silent-leaf shortcut applies) and
// one nested branch, a file in each, audited once so that every directory is in the cache.
func rollTree(t *testing.T) (root string, s *Source, cache *source.AuditCache, dirs int) {
	t.Helper()
	root = t.TempDir()
	for i := range 8 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("d%d", i), "f"), "old!")
	}
	writeFile(t, filepath.Join(root, "n", "sub", "f"), "old!")
	s = newSource(t, root, func(c *Config) { c.Workers = 2 })
	cache = source.NewAuditCache()
	_, ws := auditOnce(t, s, cache, source.AuditOptions{})
	if ws.Silent != 0 || ws.Rolled != 0 {
		t.Fatalf("first audit found silent directories: %+v", ws)
	}
	return root, s, cache, int(ws.Dirs)
}

func auditOnce(t *testing.T, s *Source, cache *source.AuditCache, opts source.AuditOptions) (map[string]source.Event, source.WalkStats) {
	t.Helper()
	got := map[string]source.Event{}
	ws, err := s.Audit(context.Background(), cache, opts, func(evs []source.Event) error {
		for _, e := range evs {
			got[e.Path] = e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, ws
}

// rewriteInPlace rewrites a file with as many bytes and a new mtime, and gives its directory
// back its old mtime: nothing true silence looks at has changed.
func rewriteInPlace(t *testing.T, path string) time.Time {
	t.Helper()
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("new!"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := dir.ModTime().Add(time.Hour)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Dir(path), dir.ModTime(), dir.ModTime()); err != nil {
		t.Fatal(err)
	}
	return mtime
}

// TestAuditFindsInPlaceRewrites: a file rewritten in place leaves its directory silent. Pure
// true silence never sees it; the rolling share lists each silent directory in full exactly
// once in K consecutive audits (so the rewrite is found within K), sent without audit_skipped
// so Fusion judges it; a deep audit lists everything at once and still refreshes the cache.
func TestAuditFindsInPlaceRewrites(t *testing.T) {
	const target = "/d3/f"
	found := func(got map[string]source.Event, mtime time.Time) bool {
		e, ok := got[target]
		return ok && e.MtimeNs == mtime.UnixNano()
	}

	t.Run("share 0 never", func(t *testing.T) {
		root, s, cache, dirs := rollTree(t)
		mtime := rewriteInPlace(t, filepath.Join(root, "d3", "f"))
		for c := range uint64(6) {
			got, ws := auditOnce(t, s, cache, source.AuditOptions{Cycle: c + 1})
			if found(got, mtime) || got["/d3"].Flags&fsbatch.FlagAuditSkipped == 0 {
				t.Fatalf("cycle %d: true silence listed /d3: %+v", c+1, got["/d3"])
			}
			if ws.Silent != uint64(dirs) || ws.Rolled != 0 {
				t.Fatalf("cycle %d: stats %+v; want all %d directories silent", c+1, ws, dirs)
			}
		}
	})

	t.Run("rolling share within K", func(t *testing.T) {
		root, s, cache, dirs := rollTree(t)
		mtime := rewriteInPlace(t, filepath.Join(root, "d3", "f"))
		opts := source.AuditOptions{Share: 0.34} // K = 3
		k := opts.RollBuckets()
		if k != 3 {
			t.Fatalf("K = %d", k)
		}
		listed := map[string]int{} // directory -> audits that listed it in full
		seen, rolled := 0, uint64(0)
		for c := range k {
			opts.Cycle = 7 + c // any K consecutive cycles
			got, ws := auditOnce(t, s, cache, opts)
			if found(got, mtime) {
				seen++
				if got["/d3"].Flags&fsbatch.FlagAuditSkipped != 0 {
					t.Errorf("cycle %d listed /d3 but sent it audit_skipped", opts.Cycle)
				}
			}
			for p, e := range got {
				if e.IsDir() && e.Flags&fsbatch.FlagAuditSkipped == 0 {
					listed[p]++
					if _, ok := got[p+"/f"]; p != "/" && p != "/n" && !ok {
						t.Errorf("cycle %d: %s listed, its file not sent", opts.Cycle, p)
					}
				}
			}
			if ws.Silent+ws.Rolled != uint64(dirs) {
				t.Fatalf("cycle %d: stats %+v over %d directories", opts.Cycle, ws, dirs)
			}
			rolled += ws.Rolled
		}
		if seen != 1 {
			t.Fatalf("the rewrite was found in %d of %d audits; want exactly 1", seen, k)
		}
		if len(listed) != dirs || rolled != uint64(dirs) {
			t.Fatalf("over K audits %d of %d directories listed (%d rolled): %v", len(listed), dirs, rolled, listed)
		}
		for p, n := range listed {
			if n != 1 {
				t.Errorf("%s listed %d times in K audits; want once", p, n)
			}
		}
	})

	t.Run("deep at once", func(t *testing.T) {
		root, s, cache, dirs := rollTree(t)
		mtime := rewriteInPlace(t, filepath.Join(root, "d3", "f"))
		got, ws := auditOnce(t, s, cache, source.AuditOptions{Deep: true, Share: 0.5, Cycle: 1})
		if !found(got, mtime) {
			t.Fatalf("a deep audit missed the rewrite: %+v", got[target])
		}
		for p, e := range got {
			if e.Flags&fsbatch.FlagAuditSkipped != 0 {
				t.Errorf("a deep audit sent %s audit_skipped", p)
			}
		}
		if ws.Silent != 0 || ws.Rolled != uint64(dirs) {
			t.Fatalf("stats %+v; want all %d directories rolled", ws, dirs)
		}
		// The cache was refreshed: the next plain audit is silent throughout.
		if _, ws := auditOnce(t, s, cache, source.AuditOptions{}); ws.Silent != uint64(dirs) {
			t.Fatalf("after the deep audit: stats %+v", ws)
		}
	})
}
