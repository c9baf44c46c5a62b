package fs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"testing"
	"time"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// clocks drives a view's physical and monotonic clocks by hand.
type clocks struct {
	now  time.Time
	mono time.Duration
	// dirs, when set, makes randomRow's rows share one Dir per directory (most of the time),
	// as a stream's decoder does, so the view's resolved-directory slots are exercised.
	dirs map[string]*fsbatch.Dir
}

func (c *clocks) advance(d time.Duration) { c.now = c.now.Add(d); c.mono += d }

var epoch = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newClockedView(t testing.TB) (*View, *clocks) {
	t.Helper()
	c := &clocks{now: epoch}
	v := New(nil, Options{Now: func() time.Time { return c.now }, Mono: func() int64 { return int64(c.mono) },
		HotThreshold: 30 * time.Second, TombstoneTTL: time.Hour})
	return v, c
}

func ago(c *clocks, d time.Duration) int64 { return c.now.Add(-d).UnixNano() }

func exists(v *View, p string) bool {
	_, err := v.Stat(p)
	return err == nil
}

func suspectPaths(v *View) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []string
	for p := range v.c.suspects {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func TestTombstones(t *testing.T) {
	tests := []struct {
		name  string
		steps func(v *View, c *clocks)
		path  string
		want  bool
	}{
		{"lagging snapshot after a realtime delete is dropped", func(v *View, c *clocks) {
			apply(t, v, OriginRealtime, row("/f", 0, 1, ago(c, time.Minute)))
			apply(t, v, OriginRealtime, row("/f", fsbatch.FlagDelete, 0, 0))
			apply(t, v, OriginSnapshot, row("/f", 0, 1, ago(c, time.Minute)))
		}, "/f", false},
		{"snapshot newer than the delete reincarnates", func(v *View, c *clocks) {
			apply(t, v, OriginRealtime, row("/f", fsbatch.FlagDelete, 0, 0))
			c.advance(5 * time.Second)
			apply(t, v, OriginSnapshot, row("/f", 0, 1, ago(c, time.Second)))
		}, "/f", true},
		{"directory delete covers its subtree", func(v *View, c *clocks) {
			apply(t, v, OriginSnapshot, row("/d/a/x", 0, 1, ago(c, time.Hour)))
			apply(t, v, OriginRealtime, row("/d", fsbatch.FlagDelete|fsbatch.FlagDir, 0, 0))
			apply(t, v, OriginSnapshot, row("/d/a/x", 0, 1, ago(c, time.Hour)), row("/d/a/y", 0, 1, ago(c, time.Hour)))
		}, "/d/a/x", false},
		{"rm then immediate re-create with an equal mtime is kept", func(v *View, c *clocks) {
			m := ago(c, 0)
			apply(t, v, OriginRealtime, row("/r", 0, 1, m))
			apply(t, v, OriginRealtime, row("/r", fsbatch.FlagDelete, 0, 0))
			apply(t, v, OriginRealtime, row("/r", 0, 1, m))
			apply(t, v, OriginSnapshot, row("/r", 0, 1, m))
		}, "/r", true},
		{"audit zombie after a realtime delete is dropped", func(v *View, c *clocks) {
			apply(t, v, OriginRealtime, row("/z", fsbatch.FlagDelete, 0, 0))
			apply(t, v, OriginAudit, row("/z", 0, 1, ago(c, time.Minute)))
		}, "/z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, c := newClockedView(t)
			tt.steps(v, c)
			if got := exists(v, tt.path); got != tt.want {
				t.Fatalf("%s exists = %v; want %v", tt.path, got, tt.want)
			}
			checkInvariants(t, v)
		})
	}
}

func TestTombstonesPurgedAtAuditEndAfterTTL(t *testing.T) {
	v, c := newClockedView(t)
	apply(t, v, OriginRealtime, row("/old", fsbatch.FlagDelete, 0, 0))
	c.advance(30 * time.Minute)
	apply(t, v, OriginRealtime, row("/young", fsbatch.FlagDelete, 0, 0))
	c.advance(31 * time.Minute)
	v.AuditStart()
	v.AuditEnd(false)
	if st := v.Consistency(); st.Tombstones != 1 {
		t.Fatalf("tombstones %d; want the young one only", st.Tombstones)
	}
}

func TestSuspects(t *testing.T) {
	t.Run("realtime partial write is suspect, close-write clears", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginRealtime, row("/w", fsbatch.FlagPartialWrite, 1, ago(c, 0)))
		if got := suspectPaths(v); !slices.Equal(got, []string{"/w"}) {
			t.Fatalf("suspects %v", got)
		}
		apply(t, v, OriginRealtime, row("/w", 0, 2, ago(c, 0)))
		if got := suspectPaths(v); len(got) != 0 {
			t.Fatalf("suspects after close-write %v", got)
		}
	})
	t.Run("realtime delete clears", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginRealtime, row("/d/w", fsbatch.FlagPartialWrite, 1, ago(c, 0)))
		apply(t, v, OriginRealtime, row("/d", fsbatch.FlagDelete|fsbatch.FlagDir, 0, 0))
		if got := suspectPaths(v); len(got) != 0 {
			t.Fatalf("suspects %v", got)
		}
	})
	tests := []struct {
		age      time.Duration
		wantLife time.Duration // 0 = not suspect
	}{
		{0, 30 * time.Second},
		{10 * time.Second, 20 * time.Second},
		{29500 * time.Millisecond, time.Second}, // clamped up to 1 s
		{30 * time.Second, 0},
		{time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("snapshot of a file %v old", tt.age), func(t *testing.T) {
			v, c := newClockedView(t)
			apply(t, v, OriginSnapshot, row("/h", 0, 1, ago(c, tt.age)))
			v.mu.RLock()
			s := v.c.suspects["/h"]
			v.mu.RUnlock()
			if tt.wantLife == 0 {
				if s != nil {
					t.Fatalf("suspect with life %v", time.Duration(s.expires))
				}
				return
			}
			if s == nil || time.Duration(s.expires) != tt.wantLife {
				t.Fatalf("suspect %+v; want life %v", s, tt.wantLife)
			}
		})
	}
	t.Run("expiry clears a stable file and renews a changed one", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginSnapshot, row("/stable", 0, 1, ago(c, 20*time.Second)), row("/changing", 0, 1, ago(c, 20*time.Second)))
		c.advance(5 * time.Second)
		apply(t, v, OriginSnapshot, row("/changing", 0, 2, ago(c, 0)))
		c.advance(6 * time.Second) // /stable's 10 s life is over
		v.Tick()
		if got := suspectPaths(v); !slices.Equal(got, []string{"/changing"}) {
			t.Fatalf("suspects %v", got)
		}
		c.advance(31 * time.Second)
		v.Tick()
		if got := suspectPaths(v); len(got) != 0 {
			t.Fatalf("suspects %v after the renewal expired unchanged", got)
		}
	})
	t.Run("touch one day into the future: watermark holds and the suspect ends", func(t *testing.T) {
		v, c := newClockedView(t)
		for i := range 5 {
			apply(t, v, OriginRealtime, row(fmt.Sprintf("/n%d", i), 0, 1, ago(c, 0)))
		}
		apply(t, v, OriginRealtime, row("/future", fsbatch.FlagPartialWrite, 1, c.now.Add(24*time.Hour).UnixNano()))
		if st := v.Consistency(); st.WatermarkNs != c.now.UnixNano() {
			t.Fatalf("watermark moved to %v", time.Unix(0, st.WatermarkNs))
		}
		c.advance(31 * time.Second)
		v.Tick()
		if got := suspectPaths(v); len(got) != 0 {
			t.Fatalf("future file still suspect: %v", got)
		}
	})
	t.Run("sentinel clears a stable cold file early, missing deletes it", func(t *testing.T) {
		v, c := newClockedView(t)
		for i := range 3 { // files just written set the watermark to now
			apply(t, v, OriginRealtime, row(fmt.Sprintf("/c%d", i), 0, 1, ago(c, 0)))
		}
		cold := ago(c, time.Hour)
		apply(t, v, OriginRealtime, row("/a", fsbatch.FlagPartialWrite, 5, cold), row("/b", fsbatch.FlagPartialWrite, 5, cold))
		v.SentinelFeedback([]SentinelItem{{Path: "/a", Exists: true, Size: 5, MtimeNs: cold}, {Path: "/b"}})
		if got := suspectPaths(v); len(got) != 0 {
			t.Fatalf("suspects %v", got)
		}
		if exists(v, "/b") {
			t.Fatal("missing file kept")
		}
		if bs := v.BlindSpots("/", 10); !slices.Equal(bs.Deletions, []string{"/b"}) {
			t.Fatalf("blind-spot deletions %v", bs.Deletions)
		}
		checkInvariants(t, v)
	})
}

func TestAudit(t *testing.T) {
	t.Run("missing files are deleted as blind spots, skipped dirs protect children", func(t *testing.T) {
		v, c := newClockedView(t)
		old := ago(c, time.Hour)
		apply(t, v, OriginSnapshot, row("/d/keep", 0, 1, old), row("/d/gone", 0, 1, old),
			row("/s/child", 0, 1, old), row("/never/x", 0, 1, old))
		v.AuditStart()
		apply(t, v, OriginAudit, fsbatch.Row{Flags: fsbatch.FlagDir, MtimeNs: old},
			row("/d", fsbatch.FlagDir, 0, old), row("/d/keep", 0, 1, old),
			row("/s", fsbatch.FlagDir|fsbatch.FlagAuditSkipped, 0, old), row("/never", fsbatch.FlagDir|fsbatch.FlagAuditSkipped, 0, old))
		deleted := v.AuditEnd(false)
		if !slices.Equal(deleted, []string{"/d/gone"}) {
			t.Fatalf("deleted %v", deleted)
		}
		for p, want := range map[string]bool{"/d/keep": true, "/d/gone": false, "/s/child": true, "/never/x": true} {
			if exists(v, p) != want {
				t.Errorf("%s exists = %v", p, !want)
			}
		}
		st := v.Consistency()
		if st.AuditCycles != 1 || st.LastAuditEndNs != c.now.UnixNano() || st.AuditRunning || st.Deletions != 1 {
			t.Fatalf("consistency %+v", st)
		}
		checkInvariants(t, v)
	})
	t.Run("cp -p during an audit survives its end", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginSnapshot, row("/d/a", 0, 1, ago(c, time.Hour)))
		v.AuditStart()
		c.advance(time.Second)
		apply(t, v, OriginRealtime, row("/d/copied", 0, 1, ago(c, 365*24*time.Hour)))
		apply(t, v, OriginAudit, row("/d", fsbatch.FlagDir, 0, ago(c, time.Hour)), row("/d/a", 0, 1, ago(c, time.Hour)))
		v.AuditEnd(false)
		if !exists(v, "/d/copied") {
			t.Fatal("cp -p file deleted by the audit")
		}
	})
	t.Run("a failed audit judges nothing", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginSnapshot, row("/d/a", 0, 1, ago(c, time.Hour)))
		v.AuditStart()
		apply(t, v, OriginAudit, row("/d", fsbatch.FlagDir, 0, ago(c, time.Hour)))
		if v.AuditEnd(true) != nil || !exists(v, "/d/a") {
			t.Fatal("failed audit deleted files")
		}
	})
	t.Run("new file found by audit is a blind-spot addition, realtime clears it", func(t *testing.T) {
		v, c := newClockedView(t)
		v.AuditStart()
		apply(t, v, OriginAudit, row("/n", 0, 1, ago(c, time.Hour)))
		v.AuditEnd(false)
		e, _ := v.Stat("/n")
		if e.KnownByAgent || !slices.Equal(v.BlindSpots("/", 10).Additions, []string{"/n"}) || !v.Consistency().HasBlindSpot() {
			t.Fatalf("entry %+v blind spots %+v", e, v.BlindSpots("/", 10))
		}
		apply(t, v, OriginRealtime, row("/n", 0, 2, ago(c, 0)))
		if bs := v.BlindSpots("/", 10); len(bs.Additions) != 0 {
			t.Fatalf("additions after realtime %v", bs.Additions)
		}
		checkInvariants(t, v)
	})
	t.Run("audit row older than the parent in memory is dropped", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginRealtime, row("/d", fsbatch.FlagDir, 0, ago(c, 0)))
		r := row("/d/stale", 0, 1, ago(c, time.Hour))
		r.ParentMtimeNs = ago(c, time.Minute)
		v.AuditStart()
		apply(t, v, OriginAudit, r)
		if exists(v, "/d/stale") {
			t.Fatal("stale audit row written")
		}
	})
	t.Run("on-demand scan never clears suspects or blind spots", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginRealtime, row("/c1", 0, 1, ago(c, 0)), row("/c2", 0, 1, ago(c, 0)))
		apply(t, v, OriginRealtime, row("/w", fsbatch.FlagPartialWrite, 1, ago(c, time.Hour)))
		apply(t, v, OriginOnDemand, row("/w", 0, 1, ago(c, time.Hour)), row("/new", 0, 1, ago(c, time.Hour)))
		if got := suspectPaths(v); !slices.Equal(got, []string{"/w"}) {
			t.Fatalf("suspects %v", got)
		}
		if bs := v.BlindSpots("/", 10); !slices.Equal(bs.Additions, []string{"/new"}) {
			t.Fatalf("additions %v", bs.Additions)
		}
	})
	t.Run("snapshot start resets blind spots", func(t *testing.T) {
		v, c := newClockedView(t)
		apply(t, v, OriginAudit, row("/n", 0, 1, ago(c, time.Hour)))
		v.SnapshotStart("s1")
		if st := v.Consistency(); st.HasBlindSpot() {
			t.Fatalf("blind spots survived %+v", st)
		}
		checkInvariants(t, v)
	})
}

func TestRealtimeRowsSampleTheClockOthersDoNot(t *testing.T) {
	v, c := newClockedView(t)
	apply(t, v, OriginSnapshot, row("/s", 0, 1, ago(c, 2*time.Hour)))
	apply(t, v, OriginAudit, row("/a", 0, 1, ago(c, 2*time.Hour)))
	if v.clock.Samples() != 0 {
		t.Fatalf("non-realtime rows sampled the clock: %d", v.clock.Samples())
	}
	apply(t, v, OriginRealtime, row("/r", 0, 1, ago(c, 2*time.Hour)))
	if v.clock.Samples() != 1 {
		t.Fatalf("samples %d", v.clock.Samples())
	}
	_ = errors.New
}

// TestFindByNameMatchesAWalk checks the per-directory index lookup of exact-name finds against
// a full walk on random trees.
func TestFindByNameMatchesAWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	v, c := newClockedView(t)
	for range 5000 {
		randomOp(t, r, v, c)
	}
	for _, root := range []string{"/", "/n1", "/n2/n3"} {
		if e, err := v.Stat(root); err != nil || !e.IsDir {
			continue
		}
		for _, m := range []Matcher{{Name: "n4"}, {Name: "n0", DirsOnly: true}, {Name: "n5", FilesOnly: true}, {Name: "absent"},
			{Glob: "n*"}, {Glob: "*4"}, {Glob: "n[0-2]", DirsOnly: true}, {Glob: "?3", FilesOnly: true}, {Glob: "n\\5"}, {Glob: "x*"}} {
			var want []string
			_ = v.Walk(context.Background(), root, 0, func(e Entry) bool {
				ok := e.Name == m.Name
				if m.Glob != "" {
					ok, _ = path.Match(m.Glob, e.Name)
				}
				if ok && !(m.DirsOnly && !e.IsDir) && !(m.FilesOnly && e.IsDir) {
					want = append(want, e.Path)
				}
				return true
			})
			got, truncated, err := v.Find(context.Background(), root, m, Limit{Entries: 1000})
			if err != nil || truncated {
				t.Fatal(err, truncated)
			}
			var paths []string
			for _, e := range got {
				paths = append(paths, e.Path)
			}
			if !slices.Equal(paths, want) {
				t.Fatalf("Find(%s, %+v) = %v\nwalk: %v", root, m, paths, want)
			}
			if len(want) > 2 {
				if got, truncated, _ := v.Find(context.Background(), root, m, Limit{Entries: 2}); len(got) != 2 || !truncated || got[0].Path != want[0] {
					t.Fatalf("limited find %v %v", got, truncated)
				}
			}
		}
	}
}

// An audit that finds a young file as its agent last reported it in real time (closed, not
// suspect) leaves it settled; a young file the audit finds changed, or found first, is suspect.
func TestAuditLeavesARealtimeSettledFileSettled(t *testing.T) {
	v, c := newClockedView(t)
	young := ago(c, 5*time.Second)
	apply(t, v, OriginRealtime, row("/up/closed", 0, 10, young))
	c.advance(time.Second) // the audit starts after the realtime evidence: its rows are applied
	v.AuditStart()
	apply(t, v, OriginAudit, row("/up/closed", 0, 10, young), row("/up/blind", 0, 3, young))
	v.AuditEnd(false)
	if list, _ := v.Suspects("/", 10); len(list) != 1 || list[0].Entry.Path != "/up/blind" {
		t.Fatalf("suspects %+v; want only the file the audit found first", list)
	}
	c.advance(time.Second) // the next audit starts after the realtime evidence
	v.AuditStart()
	apply(t, v, OriginAudit, row("/up/closed", 0, 11, ago(c, time.Second)))
	v.AuditEnd(false)
	if list, _ := v.Suspects("/up/closed", 10); len(list) != 1 {
		t.Fatal("a young file the audit found changed is not suspect")
	}
}
