package fs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// wideView holds /big with dirs directories of one file each and /small with 4 directories of
// one file each; every name is unique, so a glob walks the directories (the name table is as
// large as the tree).
func wideView(t testing.TB, dirs int) *View {
	t.Helper()
	v := newView(t)
	var rows []fsbatch.Row
	for i := range dirs {
		rows = append(rows, row(fmt.Sprintf("/big/d%05d/f%05d.dat", i, i), 0, 1, 1))
	}
	for i := range 4 {
		rows = append(rows, row(fmt.Sprintf("/small/s%d/g%d.dat", i, i), 0, 1, 1))
	}
	apply(t, v, OriginSnapshot, rows...)
	return v
}

func TestWalksStopWhenTheirContextEnds(t *testing.T) {
	v := wideView(t, 5000)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	walks := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"find glob", func(ctx context.Context) error {
			_, _, err := v.Find(ctx, "/", Matcher{Glob: "*nomatch*"}, Limit{Entries: 1000})
			return err
		}},
		{"find glob under a subtree", func(ctx context.Context) error {
			_, _, err := v.Find(ctx, "/big", Matcher{Glob: "*nomatch*"}, Limit{Entries: 1000})
			return err
		}},
		{"find paths", func(ctx context.Context) error {
			_, _, _, err := v.FindPaths(ctx, "/", Matcher{Glob: "f*"}, Limit{Entries: 100000})
			return err
		}},
		{"deep list", func(ctx context.Context) error {
			_, _, err := v.List(ctx, "/", 100, "", Limit{Entries: 10000})
			return err
		}},
		{"walk", func(ctx context.Context) error { return v.Walk(ctx, "/", 0, func(Entry) bool { return true }) }},
	}
	for _, w := range walks {
		for _, c := range []struct {
			name string
			ctx  context.Context
			want error
		}{{"cancelled", cancelled, context.Canceled}, {"deadline passed", expired, context.DeadlineExceeded}} {
			t.Run(w.name+"/"+c.name, func(t *testing.T) {
				before := v.Visits()
				if err := w.run(c.ctx); !errors.Is(err, c.want) {
					t.Fatalf("err = %v; want %v", err, c.want)
				}
				// The walk stopped at its first check, not after the 5,000 directories.
				if got := v.Visits() - before; got > checkEvery {
					t.Fatalf("a stopped walk read %d units; want at most %d", got, checkEvery)
				}
				// The same walk with a live context reads the whole subtree.
				before = v.Visits()
				if err := w.run(context.Background()); err != nil {
					t.Fatal(err)
				}
				if got := v.Visits() - before; got < 5000 {
					t.Fatalf("a complete walk read %d units; want at least 5000", got)
				}
			})
		}
	}
}

func TestGlobUnderASubtreeCostsTheSubtree(t *testing.T) {
	v := wideView(t, 5000)
	for _, walk := range []bool{false, true} {
		v.walkGlobs = walk
		for _, glob := range []string{"g*", "*2.dat", "*"} {
			t.Run(fmt.Sprintf("walk=%v/%s", walk, glob), func(t *testing.T) {
				before := v.Visits()
				got, truncated, err := v.Find(context.Background(), "/small", Matcher{Glob: glob, FilesOnly: true}, Limit{Entries: 1000})
				if err != nil || truncated {
					t.Fatal(err, truncated)
				}
				// /small holds 5 directories and 4 files: a few units each, never the view's 5,000.
				if cost := v.Visits() - before; cost > 20 {
					t.Fatalf("a glob under /small read %d units", cost)
				}
				var paths []string
				for _, e := range got {
					paths = append(paths, e.Path)
				}
				want := map[string][]string{
					"g*":     {"/small/s0/g0.dat", "/small/s1/g1.dat", "/small/s2/g2.dat", "/small/s3/g3.dat"},
					"*2.dat": {"/small/s2/g2.dat"},
					"*":      {"/small/s0/g0.dat", "/small/s1/g1.dat", "/small/s2/g2.dat", "/small/s3/g3.dat"},
				}[glob]
				if !slices.Equal(paths, want) {
					t.Fatalf("matches %v; want %v", paths, want)
				}
			})
		}
	}
	v.walkGlobs = false
}

// TestAnswersStopAtTheirByteBudget pages a listing and a find of long names by bytes: each
// page within its budget, the pages together the whole answer, once each.
func TestAnswersStopAtTheirByteBudget(t *testing.T) {
	v := newView(t)
	long := strings.Repeat("n", 900)
	var rows []fsbatch.Row
	var want []string
	for i := range 300 {
		p := fmt.Sprintf("/d/%s%04d", long, i)
		rows = append(rows, row(p, 0, 1, 1))
		want = append(want, p)
	}
	apply(t, v, OriginSnapshot, rows...)
	const budget = 32 << 10
	cost := EntryBytes(len(want[0]), len(want[0])-3)
	t.Run("list", func(t *testing.T) {
		var got []string
		after, pages := "", 0
		for {
			es, next, err := v.List(context.Background(), "/d", 1, after, Limit{Entries: 10000, Bytes: budget})
			if err != nil {
				t.Fatal(err)
			}
			if len(es)*cost > budget || len(es) == 0 {
				t.Fatalf("page %d: %d entries of %d bytes for a budget of %d", pages, len(es), cost, budget)
			}
			for _, e := range es {
				got = append(got, e.Path)
			}
			pages++
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pages hold %d paths; want the %d, in order, once each", len(got), len(want))
		}
		if pages < len(want)*cost/budget {
			t.Fatalf("%d pages; the budget asks for at least %d", pages, len(want)*cost/budget)
		}
	})
	t.Run("find", func(t *testing.T) {
		es, truncated, err := v.Find(context.Background(), "/", Matcher{Glob: "n*"}, Limit{Entries: 100000, Bytes: budget})
		if err != nil || !truncated {
			t.Fatalf("truncated %v, err %v; want a truncated answer", truncated, err)
		}
		if len(es)*cost > budget || len(es) < budget/cost-1 {
			t.Fatalf("%d entries of %d bytes for a budget of %d", len(es), cost, budget)
		}
		for i, e := range es {
			if e.Path != want[i] {
				t.Fatalf("match %d is %s; want %s", i, e.Path, want[i])
			}
		}
		packed, _, truncated, err := v.FindPaths(context.Background(), "/", Matcher{Glob: "n*"}, Limit{Entries: 100000, Bytes: budget})
		if err != nil || !truncated || len(packed) > budget {
			t.Fatalf("packed %d bytes, truncated %v, err %v; want at most %d, truncated", len(packed), truncated, err, budget)
		}
	})
	t.Run("one entry always fits", func(t *testing.T) {
		es, next, err := v.List(context.Background(), "/d", 1, "", Limit{Entries: 10, Bytes: 1})
		if err != nil || len(es) != 1 || next != want[0] {
			t.Fatalf("%d entries, next %q, err %v; want one and its path", len(es), next, err)
		}
	})
}
