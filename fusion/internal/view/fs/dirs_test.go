package fs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// A stream's rows share one fsbatch.Dir per directory and the view remembers in it the node
// the directory resolved to, so that a directory is resolved once per stream. A node id is
// reused once its directory leaves the view; these tests pin that a remembered node is never
// used after that.

// TestSharedDirsMatchFreshDirs runs the same random operations on two views: rows of one share
// their directories' Dirs across the whole run (as a long stream does), rows of the other
// each carry a chain of their own (resolved from the root every time). Both must hold the
// same tree and side tables throughout.
func TestSharedDirsMatchFreshDirs(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			shared, cs := newClockedView(t)
			cs.dirs = map[string]*fsbatch.Dir{}
			fresh, cf := newClockedView(t)
			rs, rf := rand.New(rand.NewPCG(seed, 7)), rand.New(rand.NewPCG(seed, 7))
			for i := range 4000 {
				randomOp(t, rs, shared, cs)
				randomOp(t, rf, fresh, cf)
				if i%200 == 0 {
					requireSameView(t, i, shared, fresh)
				}
			}
			requireSameView(t, -1, shared, fresh)
			checkInvariants(t, shared)
		})
	}
}

func requireSameView(t *testing.T, step int, a, b *View) {
	t.Helper()
	da, db := dumpView(t, a), dumpView(t, b)
	if !slices.Equal(da, db) {
		for i := range min(len(da), len(db)) {
			if da[i] != db[i] {
				t.Fatalf("step %d: entry %d: shared dirs %+v, fresh dirs %+v", step, i, da[i], db[i])
			}
		}
		t.Fatalf("step %d: shared dirs hold %d entries, fresh dirs %d", step, len(da), len(db))
	}
	if ca, cb := a.Consistency(), b.Consistency(); ca != cb {
		t.Fatalf("step %d: consistency %+v vs %+v", step, ca, cb)
	}
	ba, bb := a.BlindSpots("/", 1000), b.BlindSpots("/", 1000)
	if !slices.Equal(ba.Additions, bb.Additions) || !slices.Equal(ba.Deletions, bb.Deletions) {
		t.Fatalf("step %d: blind spots %+v vs %+v", step, ba, bb)
	}
}

func dumpView(t *testing.T, v *View) []Entry {
	t.Helper()
	var out []Entry
	if err := v.Walk(context.Background(), "/", 0, func(e Entry) bool { out = append(out, e); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRememberedDirForgottenWhenRemoved: a directory removed and its node id reused by
// another directory must not receive the rows of the old one's Dir.
func TestRememberedDirForgottenWhenRemoved(t *testing.T) {
	for _, tt := range []struct {
		name   string
		remove func(v *View)
	}{
		{"realtime delete", func(v *View) { apply(t, v, OriginRealtime, row("/a", fsbatch.FlagDelete|fsbatch.FlagDir, 0, 0)) }},
		{"replaced by a file", func(v *View) { apply(t, v, OriginRealtime, row("/a", 0, 1, 5)) }},
		{"snapshot end", func(v *View) {
			v.SnapshotStart("s")
			apply(t, v, OriginSnapshot, fsbatch.Row{Flags: fsbatch.FlagDir})
			v.SnapshotEnd("s", false)
		}},
		{"reset", func(v *View) { v.Reset() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newView(t)
			dirs := map[string]*fsbatch.Dir{}
			d := sharedDir(dirs, "/a/b")
			apply(t, v, OriginRealtime, fsbatch.Row{Dir: d, Name: "f1", Size: 1, MtimeNs: 1})
			tt.remove(v)
			// New directories take the freed ids.
			apply(t, v, OriginRealtime, row("/x/y/z", 0, 2, 2), row("/p/q/r", 0, 2, 2))
			apply(t, v, OriginRealtime, fsbatch.Row{Dir: d, Name: "f2", Size: 3, MtimeNs: 3})
			if !exists(v, "/a/b/f2") {
				t.Fatal("/a/b/f2 not where its Dir says")
			}
			for _, p := range []string{"/x/y/f2", "/x/f2", "/p/q/f2", "/p/f2", "/x/y/z/f2"} {
				if exists(v, p) {
					t.Fatalf("row of /a/b landed at %s", p)
				}
			}
			checkInvariants(t, v)
		})
	}
}
