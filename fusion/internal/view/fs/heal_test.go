package fs

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fustor/fustor/sdk/fsbatch"
)

func mtimeOf(t testing.TB, v *View, p string) int64 {
	t.Helper()
	e, err := v.Stat(p)
	if err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return e.MtimeNs
}

// TestFreshestEvidenceWins is DESIGN.md §5.4's rule for scan rows of existing nodes: the row
// replaces the node unless a realtime event touched the node since the scan started, whatever
// the direction of the mtime. (The rule it replaces, "memory mtime ≥ audit mtime → keep
// memory", kept a `touch -d` into the past or a `cp -p` restore out of the view for ever.)
func TestFreshestEvidenceWins(t *testing.T) {
	const old, older = 2 * time.Hour, 50 * time.Hour
	tests := []struct {
		name string
		src  Origin
		// realtimeAfterStart: the last realtime event on the node came after the scan began.
		realtimeAfterStart bool
		wantScan           bool // the scan's (older) mtime is in the view afterwards
	}{
		{"audit, node untouched since the audit began: an older mtime is accepted", OriginAudit, false, true},
		{"audit, realtime after the audit began: memory wins", OriginAudit, true, false},
		{"snapshot, node untouched since the snapshot began: the row wins", OriginSnapshot, false, true},
		{"snapshot, realtime after the snapshot began: memory wins", OriginSnapshot, true, false},
		{"on-demand, node untouched since the scan was asked for: the row wins", OriginOnDemand, false, true},
		{"on-demand, realtime after the scan was asked for: memory wins", OriginOnDemand, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, c := newClockedView(t)
			apply(t, v, OriginRealtime, row("/d/f", 0, 10, ago(c, old)))
			c.advance(time.Second)
			start := func() int64 {
				switch tc.src {
				case OriginAudit:
					v.AuditStart()
				case OriginSnapshot:
					v.SnapshotStart("s1")
				}
				return c.now.UnixNano()
			}
			var scanStart int64
			if tc.realtimeAfterStart {
				scanStart = start()
				c.advance(time.Second)
				apply(t, v, OriginRealtime, row("/d/f", 0, 11, ago(c, old)))
			} else {
				scanStart = start()
			}
			c.advance(time.Second)
			want := ago(c, older)
			if _, rej, err := v.Apply(tc.src, scanStart, []fsbatch.Row{row("/d/f", 0, 12, want)}); rej != 0 {
				t.Fatal(err)
			}
			got := mtimeOf(t, v, "/d/f")
			if (got == want) != tc.wantScan {
				t.Fatalf("mtime %v, scan row's %v, want the scan's = %v", time.Unix(0, got), time.Unix(0, want), tc.wantScan)
			}
			if tc.src != OriginSnapshot && tc.wantScan {
				e, _ := v.Stat("/d/f")
				if e.KnownByAgent || !slices.Contains(v.BlindSpots("/", 10).Additions, "/d/f") {
					t.Fatalf("a change only a scan saw is a blind-spot addition: %+v", e)
				}
			}
			checkInvariants(t, v)
		})
	}
	t.Run("a snapshot row never clears what realtime set since it began", func(t *testing.T) {
		v, c := newClockedView(t)
		v.SnapshotStart("s1")
		c.advance(time.Second)
		apply(t, v, OriginRealtime, row("/w", fsbatch.FlagPartialWrite, 5, ago(c, 0)))
		apply(t, v, OriginSnapshot, row("/w", 0, 1, ago(c, time.Hour)))
		if e, _ := v.Stat("/w"); e.Size != 5 || !e.Suspect {
			t.Fatalf("snapshot row overwrote a newer realtime write: %+v", e)
		}
	})
}

// TestSnapshotPartialWriteIsSuspect: a file the agent saw written without its close is sent by
// the snapshot flagged partial, and is suspect however old its mtime looks.
func TestSnapshotPartialWriteIsSuspect(t *testing.T) {
	v, c := newClockedView(t)
	v.SnapshotStart("s1")
	apply(t, v, OriginSnapshot, row("/t", fsbatch.FlagPartialWrite, 3, ago(c, 10*time.Hour)), row("/cold", 0, 3, ago(c, 10*time.Hour)))
	if got := suspectPaths(v); !slices.Equal(got, []string{"/t"}) {
		t.Fatalf("suspects %v", got)
	}
	// It settles: the mtime stays, the suspect period ends.
	c.advance(31 * time.Second)
	v.Tick()
	if got := suspectPaths(v); len(got) != 0 {
		t.Fatalf("suspects after the period %v", got)
	}
}

func TestSnapshotReconciles(t *testing.T) {
	old := func(c *clocks) int64 { return ago(c, time.Hour) }
	base := func(t *testing.T) (*View, *clocks) {
		v, c := newClockedView(t)
		apply(t, v, OriginSnapshot, row("/a", fsbatch.FlagDir, 0, old(c)), row("/a/keep", 0, 1, old(c)), row("/a/gone", 0, 1, old(c)),
			row("/gonedir/x/y", 0, 1, old(c)), row("/locked/secret", 0, 1, old(c)), row("/rm/z", 0, 1, old(c)))
		c.advance(time.Second)
		return v, c
	}
	snapshot := func(v *View, c *clocks, rows ...fsbatch.Row) {
		all := append([]fsbatch.Row{{Flags: fsbatch.FlagDir, MtimeNs: old(c)}}, rows...)
		apply(t, v, OriginSnapshot, all...)
	}
	t.Run("what the snapshot did not report is removed as a blind-spot deletion", func(t *testing.T) {
		v, c := base(t)
		apply(t, v, OriginRealtime, row("/rm", fsbatch.FlagDelete|fsbatch.FlagDir, 0, 0)) // before the snapshot
		v.SnapshotStart("s1")
		c.advance(time.Second)
		// Realtime during the walk: a new file in a new directory (its parent only implied),
		// and a directory the walk had listed already.
		apply(t, v, OriginRealtime, row("/new/deep/f", 0, 1, ago(c, 0)))
		snapshot(v, c, row("/a", fsbatch.FlagDir, 0, old(c)), row("/a/keep", 0, 1, old(c)),
			row("/locked", fsbatch.FlagDir|fsbatch.FlagAuditSkipped, 0, old(c)))
		// A zombie row of a path deleted in real time is dropped, never resurrected.
		apply(t, v, OriginSnapshot, row("/rm/z", 0, 1, old(c)))
		gone := v.SnapshotEnd("s1", false)
		slices.Sort(gone)
		if want := []string{"/a/gone", "/gonedir"}; !slices.Equal(gone, want) {
			t.Fatalf("removed %v, want %v", gone, want)
		}
		for p, want := range map[string]bool{"/a/keep": true, "/a/gone": false, "/gonedir": false, "/new/deep/f": true,
			"/locked/secret": true, "/rm/z": false} {
			if exists(v, p) != want {
				t.Errorf("%s exists = %v", p, !want)
			}
		}
		if bs := v.BlindSpots("/", 10); !slices.Equal(bs.Deletions, []string{"/a/gone", "/gonedir"}) {
			t.Fatalf("deletions %v", bs.Deletions)
		}
		checkInvariants(t, v)
	})
	t.Run("a directory only implied by reported children is kept and judged inside", func(t *testing.T) {
		v, c := base(t)
		v.SnapshotStart("s1")
		snapshot(v, c, row("/a/keep", 0, 1, old(c))) // no row of /a itself
		gone := v.SnapshotEnd("s1", false)
		slices.Sort(gone)
		if want := []string{"/a/gone", "/gonedir", "/locked", "/rm"}; !slices.Equal(gone, want) || !exists(v, "/a/keep") {
			t.Fatalf("removed %v, want %v", gone, want)
		}
		checkInvariants(t, v)
	})
	for _, tc := range []struct {
		name  string
		end   func(v *View) []string
		start string
	}{
		{"a failed snapshot judges nothing", func(v *View) []string { return v.SnapshotEnd("s1", true) }, "s1"},
		{"another session's end judges nothing", func(v *View) []string { return v.SnapshotEnd("s2", false) }, "s1"},
		{"a snapshot restarted by the same session judges only the last one", func(v *View) []string {
			v.SnapshotStart("s1") // restarted: the new walk reported nothing yet
			return nil
		}, "s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, c := base(t)
			v.SnapshotStart(tc.start)
			snapshot(v, c, row("/a", fsbatch.FlagDir, 0, old(c)))
			if gone := tc.end(v); len(gone) != 0 || !exists(v, "/a/gone") {
				t.Fatalf("removed %v", gone)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	old := func(c *clocks) int64 { return ago(c, time.Hour) }
	setup := func(t *testing.T) (*View, *clocks, []fsbatch.Row) {
		v, c := newClockedView(t)
		o := old(c)
		apply(t, v, OriginSnapshot, row("/d", fsbatch.FlagDir, 0, o), row("/d/same", 0, 1, o),
			row("/d/changed", 0, 1, o), row("/d/extra", 0, 1, o), row("/x/y/z", 0, 1, o))
		c.advance(time.Second)
		walk := []fsbatch.Row{{Flags: fsbatch.FlagDir, MtimeNs: o}, row("/d", fsbatch.FlagDir, 0, o),
			row("/d/same", 0, 1, o), row("/d/changed", 0, 2, o), row("/d/missing", 0, 1, o)}
		return v, c, walk
	}
	t.Run("counts missing, extra and different without changing the view", func(t *testing.T) {
		v, _, walk := setup(t)
		must(t, v.VerifyStart("c1", "/", 10, false))
		if err := v.VerifyStart("c2", "/", 10, false); !errors.Is(err, ErrVerifyRunning) {
			t.Fatalf("second verify: %v", err)
		}
		if n, rej, err := v.VerifyRows("c1", walk); n != len(walk) || rej != 0 {
			t.Fatalf("compared %d, rejected %d: %v", n, rej, err)
		}
		res, err := v.VerifyEnd("c1")
		must(t, err)
		// /x, /x/y and /x/y/z are extra: one difference listed, three paths counted.
		if res.Walked != 5 || res.Missing != 1 || res.Different != 1 || res.Extra != 4 || res.Repaired {
			t.Fatalf("result %+v", res)
		}
		var paths []string
		for _, d := range res.Examples {
			paths = append(paths, d.Path)
		}
		if want := []string{"/d/changed", "/d/extra", "/d/missing", "/x"}; !slices.Equal(paths, want) {
			t.Fatalf("examples %v, want %v", paths, want)
		}
		if !exists(v, "/d/extra") || exists(v, "/d/missing") || v.Len() != 7 {
			t.Fatal("a verify without repair changed the view")
		}
	})
	t.Run("repair applies the walk, and a second verify finds nothing", func(t *testing.T) {
		v, _, walk := setup(t)
		must(t, v.VerifyStart("c1", "/", 10, true))
		v.VerifyRows("c1", walk)
		res, err := v.VerifyEnd("c1")
		must(t, err)
		if !res.Repaired || res.Missing+res.Extra+res.Different == 0 {
			t.Fatalf("result %+v", res)
		}
		must(t, v.VerifyStart("c2", "/", 10, false))
		v.VerifyRows("c2", walk)
		res, err = v.VerifyEnd("c2")
		must(t, err)
		if res.Missing+res.Extra+res.Different != 0 {
			t.Fatalf("after repair %+v", res)
		}
		checkInvariants(t, v)
	})
	t.Run("realtime changes during the walk are not judged", func(t *testing.T) {
		v, c, walk := setup(t)
		must(t, v.VerifyStart("c1", "/d", 10, false))
		c.advance(time.Second)
		apply(t, v, OriginRealtime, row("/d/changed", 0, 3, ago(c, 0)), row("/d/new", 0, 1, ago(c, 0)))
		v.VerifyRows("c1", walk[1:])
		res, err := v.VerifyEnd("c1")
		must(t, err)
		if res.Changed != 1 || res.Different != 0 || res.Extra != 1 || res.Missing != 1 {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("rows of an abandoned verify are ignored", func(t *testing.T) {
		v, _, walk := setup(t)
		must(t, v.VerifyStart("c1", "/", 10, true))
		v.VerifyAbort("c1")
		if n, _, _ := v.VerifyRows("c1", walk); n != 0 || exists(v, "/d/missing") {
			t.Fatal("rows of an abandoned verify were used")
		}
		if _, err := v.VerifyEnd("c1"); err == nil {
			t.Fatal("ended an abandoned verify")
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
