package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// row is a row at p whose directory is a chain of its own (no other row shares it).
func row(p string, flags uint32, size uint64, mtime int64) fsbatch.Row {
	dir, name := fspath.Split(p)
	return fsbatch.Row{Dir: mustDir(dir), Name: name, Flags: flags, Size: size, MtimeNs: mtime}
}

func mustDir(p string) *fsbatch.Dir {
	d, err := fsbatch.DirOf(p)
	if err != nil {
		panic(err)
	}
	return d
}

// sharedDir returns the one Dir of directory p in dirs, made on first use on its parent's,
// as a stream's decoder hands one Dir to every row under a directory.
func sharedDir(dirs map[string]*fsbatch.Dir, p string) *fsbatch.Dir {
	if d, ok := dirs[p]; ok {
		return d
	}
	d := fsbatch.NewRoot()
	if p != fspath.Root {
		parent, name := fspath.Split(p)
		var err error
		if d, err = sharedDir(dirs, parent).Child(name); err != nil {
			panic(err)
		}
	}
	dirs[p] = d
	return d
}

func newView(t testing.TB) *View {
	t.Helper()
	now := time.Unix(1_800_000_000, 0)
	return New(nil, Options{Name: "t", Now: func() time.Time { return now }})
}

func apply(t testing.TB, v *View, src Origin, rows ...fsbatch.Row) {
	t.Helper()
	if _, rej, err := v.Apply(src, 0, rows); rej != 0 {
		t.Fatalf("rejected %d: %v", rej, err)
	}
}

func TestApplySemantics(t *testing.T) {
	tests := []struct {
		name  string
		steps func(v *View)
		path  string
		want  *Entry // nil = must not exist
	}{
		{"upsert creates the parent chain", func(v *View) {
			apply(t, v, OriginSnapshot, row("/a/b/c.txt", 0, 3, 10))
		}, "/a/b", &Entry{Path: "/a/b", Name: "b", IsDir: true, KnownByAgent: true, ChildCount: 1}},
		{"file attributes", func(v *View) {
			apply(t, v, OriginSnapshot, row("/a/c.txt", 0, 3, 10))
		}, "/a/c.txt", &Entry{Path: "/a/c.txt", Name: "c.txt", Size: 3, MtimeNs: 10, KnownByAgent: true}},
		{"update in place", func(v *View) {
			apply(t, v, OriginSnapshot, row("/c.txt", 0, 3, 10), row("/c.txt", 0, 7, 20))
		}, "/c.txt", &Entry{Path: "/c.txt", Name: "c.txt", Size: 7, MtimeNs: 20, KnownByAgent: true}},
		{"delete removes the subtree", func(v *View) {
			apply(t, v, OriginSnapshot, row("/d/e/f", 0, 1, 1))
			apply(t, v, OriginRealtime, row("/d", fsbatch.FlagDelete|fsbatch.FlagDir, 0, 0))
		}, "/d/e/f", nil},
		{"deleting a missing path is a no-op", func(v *View) {
			apply(t, v, OriginRealtime, row("/nope/x", fsbatch.FlagDelete, 0, 0))
		}, "/nope", nil},
		{"file becomes a directory", func(v *View) {
			apply(t, v, OriginSnapshot, row("/x", 0, 5, 1), row("/x", fsbatch.FlagDir, 0, 2))
		}, "/x", &Entry{Path: "/x", Name: "x", IsDir: true, MtimeNs: 2, KnownByAgent: true}},
		{"directory becomes a file", func(v *View) {
			apply(t, v, OriginSnapshot, row("/x/y", 0, 5, 1), row("/x", 0, 9, 2))
		}, "/x", &Entry{Path: "/x", Name: "x", Size: 9, MtimeNs: 2, KnownByAgent: true}},
		{"realtime partial write is suspect", func(v *View) {
			apply(t, v, OriginRealtime, row("/w", fsbatch.FlagPartialWrite, 1, 1))
		}, "/w", &Entry{Path: "/w", Name: "w", Size: 1, MtimeNs: 1, Suspect: true, KnownByAgent: true, LastUpdatedAtNs: 1_800_000_000e9}},
		{"realtime atomic write clears suspect", func(v *View) {
			apply(t, v, OriginRealtime, row("/w", fsbatch.FlagPartialWrite, 1, 1), row("/w", 0, 2, 2))
		}, "/w", &Entry{Path: "/w", Name: "w", Size: 2, MtimeNs: 2, KnownByAgent: true, LastUpdatedAtNs: 1_800_000_000e9}},
		{"audit of a new file is not known by agent", func(v *View) {
			apply(t, v, OriginAudit, row("/au", 0, 1, 1))
		}, "/au", &Entry{Path: "/au", Name: "au", Size: 1, MtimeNs: 1}},
		{"audit of a changed file makes it unknown to agents", func(v *View) {
			apply(t, v, OriginSnapshot, row("/au", 0, 1, 1))
			apply(t, v, OriginAudit, row("/au", 0, 2, 2))
		}, "/au", &Entry{Path: "/au", Name: "au", Size: 2, MtimeNs: 2}},
		{"audit of an unchanged file keeps memory", func(v *View) {
			apply(t, v, OriginSnapshot, row("/au", 0, 1, 1))
			apply(t, v, OriginAudit, row("/au", 0, 1, 1))
		}, "/au", &Entry{Path: "/au", Name: "au", Size: 1, MtimeNs: 1, KnownByAgent: true}},
		{"audit skipped dir", func(v *View) {
			apply(t, v, OriginAudit, row("/s", fsbatch.FlagDir|fsbatch.FlagAuditSkipped, 0, 1))
		}, "/s", &Entry{Path: "/s", Name: "s", IsDir: true, MtimeNs: 1, AuditSkipped: true}},
		{"root row updates the root", func(v *View) {
			apply(t, v, OriginSnapshot, fsbatch.Row{Flags: fsbatch.FlagDir, MtimeNs: 42})
		}, "/", &Entry{Path: "/", IsDir: true, MtimeNs: 42, KnownByAgent: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newView(t)
			tt.steps(v)
			got, err := v.Stat(tt.path)
			if tt.want == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Stat(%s) = %+v, %v; want not found", tt.path, got, err)
				}
				return
			}
			if err != nil || got != *tt.want {
				t.Fatalf("Stat(%s) = %+v, %v\nwant %+v", tt.path, got, err, *tt.want)
			}
			checkInvariants(t, v)
		})
	}
}

func TestBadRowsRejected(t *testing.T) {
	v := newView(t)
	longDir, err := fsbatch.NewRoot().Child(strings.Repeat("d", 1<<16))
	if err != nil {
		t.Fatal(err)
	}
	rows := []fsbatch.Row{
		{Name: "ok"},
		{Name: "a/b"},
		{Dir: mustDir("/d"), Name: strings.Repeat("x", 1<<16)},
		{Dir: longDir, Name: "x"},
		{Name: "", Flags: fsbatch.FlagDelete},
		{Name: ".."},
	}
	applied, rejected, err := v.Apply(OriginSnapshot, 0, rows)
	if applied != 1 || rejected != 5 || err == nil {
		t.Fatalf("applied %d rejected %d err %v", applied, rejected, err)
	}
	checkInvariants(t, v)
}

func TestMaxNodes(t *testing.T) {
	v := New(nil, Options{MaxNodes: 3})
	_, rejected, err := v.Apply(OriginSnapshot, 0, []fsbatch.Row{row("/a", 0, 0, 0), row("/b", 0, 0, 0), row("/c", 0, 0, 0), row("/d", 0, 0, 0)})
	if rejected != 1 || !errors.Is(err, ErrFull) || v.Len() != 3 {
		t.Fatalf("rejected %d err %v len %d", rejected, err, v.Len())
	}
}

func TestListOrderDepthAndPaging(t *testing.T) {
	v := newView(t)
	for _, p := range []string{"/b/2", "/b/1", "/a", "/c/x/y", "/b/3"} {
		apply(t, v, OriginSnapshot, row(p, 0, 1, 1))
	}
	var all []string
	after := ""
	for {
		es, next, err := v.List(context.Background(), "/", 10, after, Limit{Entries: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			all = append(all, e.Path)
		}
		if next == "" {
			break
		}
		after = next
	}
	want := []string{"/a", "/b", "/b/1", "/b/2", "/b/3", "/c", "/c/x", "/c/x/y"}
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("paged = %v\nwant %v", all, want)
	}
	es, next, err := v.List(context.Background(), "/b", 1, "", Limit{Entries: 100})
	if err != nil || len(es) != 3 || next != "" {
		t.Fatalf("List(/b) = %v %q %v", es, next, err)
	}
	if _, _, err := v.List(context.Background(), "/a", 1, "", Limit{Entries: 10}); !errors.Is(err, ErrNotDir) {
		t.Fatalf("List(file) err = %v", err)
	}
	if _, _, err := v.List(context.Background(), "/zz", 1, "", Limit{Entries: 10}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("List(missing) err = %v", err)
	}
}

func TestFind(t *testing.T) {
	v := newView(t)
	for i := range 30 {
		apply(t, v, OriginSnapshot, row(fmt.Sprintf("/s%d/data_%02d.dat", i%3, i), 0, 1, 1))
	}
	apply(t, v, OriginSnapshot, row("/s0/data_00.dat.tmp", 0, 1, 1))
	tests := []struct {
		name      string
		root      string
		m         Matcher
		limit     int
		want      int
		truncated bool
	}{
		{"name", "/", Matcher{Name: "data_07.dat"}, 10, 1, false},
		{"glob", "/", Matcher{Glob: "*.dat"}, 100, 30, false},
		{"glob under a dir", "/s1", Matcher{Glob: "*.dat"}, 100, 10, false},
		{"limit", "/", Matcher{Glob: "*.dat"}, 5, 5, true},
		{"dirs only", "/", Matcher{Glob: "s*", DirsOnly: true}, 10, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, tr, err := v.Find(context.Background(), tt.root, tt.m, Limit{Entries: tt.limit})
			if err != nil || len(es) != tt.want || tr != tt.truncated {
				t.Fatalf("Find = %d entries, truncated %v, %v", len(es), tr, err)
			}
			if !sort.SliceIsSorted(es, func(i, j int) bool { return es[i].Path < es[j].Path }) {
				t.Fatalf("not sorted: %v", es)
			}
		})
	}
	if _, _, err := v.Find(context.Background(), "/", Matcher{Glob: "[a-"}, Limit{Entries: 1}); !errors.Is(err, fspath.ErrInvalid) {
		t.Fatalf("bad glob err = %v", err)
	}
}

func TestStatsFollowChanges(t *testing.T) {
	v := newView(t)
	apply(t, v, OriginSnapshot, row("/a/x", 0, 10, 100), row("/a/y", 0, 5, 300), row("/b/z", 0, 1, 200))
	st, _ := v.Stats("/")
	if st != (Stats{Files: 3, Dirs: 2, TotalSize: 16, LatestMtimeNs: 300}) {
		t.Fatalf("root stats %+v", st)
	}
	apply(t, v, OriginRealtime, row("/a/y", fsbatch.FlagDelete, 0, 0))
	st, _ = v.Stats("/")
	if st != (Stats{Files: 2, Dirs: 2, TotalSize: 11, LatestMtimeNs: 200}) {
		t.Fatalf("after delete %+v", st)
	}
	apply(t, v, OriginRealtime, row("/b/z", 0, 4, 50))
	st, _ = v.Stats("/b")
	if st != (Stats{Files: 1, TotalSize: 4, LatestMtimeNs: 50}) {
		t.Fatalf("/b after shrink %+v", st)
	}
}

// TestRandomOpsKeepInvariants runs random rows from every source, audits, sentinel answers
// and clock ticks, comparing every aggregate and side table with a full recount.
func TestRandomOpsKeepInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	v, c := newClockedView(t)
	c.dirs = map[string]*fsbatch.Dir{}
	for i := range 20000 {
		randomOp(t, r, v, c)
		if i%2000 == 0 {
			checkInvariants(t, v)
		}
	}
	checkInvariants(t, v)
}

// randomOp applies one random operation: mostly rows, sometimes audit boundaries, sentinel
// feedback, or time passing.
func randomOp(t testing.TB, r *rand.Rand, v *View, c *clocks) {
	switch k := r.IntN(100); {
	case k < 2:
		v.AuditStart()
	case k < 4:
		v.AuditEnd(r.IntN(4) == 0)
	case k < 5:
		v.SnapshotStart("s1")
	case k < 6:
		v.SnapshotEnd("s1", r.IntN(4) == 0)
	case k < 7:
		// A verify walk: the rows are compared (and, with repair, applied), the end judged.
		if v.VerifyStart("v1", "/", 5, r.IntN(2) == 0) == nil {
			rows := make([]fsbatch.Row, r.IntN(8))
			for i := range rows {
				rows[i] = randomRow(r, c)
				rows[i].Flags &^= fsbatch.FlagDelete
			}
			v.VerifyRows("v1", rows)
			_, _ = v.VerifyEnd("v1")
		}
	case k < 8:
		rw := randomRow(r, c)
		v.SentinelFeedback([]SentinelItem{{Path: rw.Path(), Exists: r.IntN(2) == 0, Size: rw.Size, MtimeNs: rw.MtimeNs}})
	case k < 10:
		c.advance(time.Duration(r.IntN(20)) * time.Second)
		v.Tick()
	case k < 13:
		// Queries fill the sorted-children caches that later changes must drop.
		rw := randomRow(r, c)
		dir := rw.Path()
		_, _, _ = v.List(context.Background(), dir[:strings.LastIndexByte(dir, '/')+1], 1+r.IntN(3), "", Limit{Entries: 100})
		// An exact name is answered from the name chains; the same literal as a glob takes the
		// directory walk. Both must give the same answer.
		name, root, limit := fmt.Sprintf("n%d", r.IntN(6)), dir[:strings.LastIndexByte(dir, '/')+1], 1+r.IntN(300)
		if root != "/" {
			root = strings.TrimSuffix(root, "/")
		}
		byName, tn, errN := v.Find(context.Background(), root, Matcher{Name: name}, Limit{Entries: limit})
		byGlob, tg, errG := v.Find(context.Background(), root, Matcher{Glob: name}, Limit{Entries: limit})
		if (errN == nil) != (errG == nil) || tn != tg || len(byName) != len(byGlob) {
			t.Fatalf("find %q under %s limit %d: by name %d entries (truncated %v, %v), by glob %d (%v, %v)",
				name, root, limit, len(byName), tn, errN, len(byGlob), tg, errG)
		}
		for i := range byName {
			if byName[i] != byGlob[i] {
				t.Fatalf("find %q under %s: entry %d by name %+v, by glob %+v", name, root, i, byName[i], byGlob[i])
			}
		}
		// A glob is answered from the name table or by walking the directories, whichever is
		// smaller to read: both plans must give the same answer.
		for _, g := range []string{name, "n[0-2]", "*", "n*", "*3"} {
			byTable, tt, errT := v.Find(context.Background(), root, Matcher{Glob: g}, Limit{Entries: limit})
			v.walkGlobs = true
			byWalk, tw, errW := v.Find(context.Background(), root, Matcher{Glob: g}, Limit{Entries: limit})
			v.walkGlobs = false
			if (errT == nil) != (errW == nil) || tt != tw || !slices.Equal(byTable, byWalk) {
				t.Fatalf("glob %q under %s limit %d: name table %d entries (truncated %v, %v), directory walk %d (%v, %v)",
					g, root, limit, len(byTable), tt, errT, len(byWalk), tw, errW)
			}
		}
		// Paths only, as packed_paths answers: the same matches, order, directories and truncation.
		for _, m := range []Matcher{{Name: name}, {Glob: name}} {
			packed, dirs, tp, errP := v.FindPaths(context.Background(), root, m, Limit{Entries: limit})
			if (errP == nil) != (errN == nil) || tp != tn {
				t.Fatalf("find paths %+v under %s limit %d: truncated %v, %v; entries: %v, %v", m, root, limit, tp, errP, tn, errN)
			}
			checkPacked(t, byName, packed, dirs)
		}
		// The same chain ordered by the walk to its matches instead of by a sort of their paths.
		if id, err := v.dir(root); errN == nil && err == nil {
			var walked []Entry
			var paths pathBuf
			tw, ok := v.findNamed(id, Matcher{Name: name}, 0, &findSink{limit: Limit{Entries: limit}, add: func(id uint32, p []byte) { walked = append(walked, v.entry(id, paths.copy(p))) }}, v.work(context.Background()))
			if !ok || tw != tn || !slices.Equal(walked, byName) {
				t.Fatalf("find %q under %s limit %d: walked to matches %d entries (truncated %v, ok %v), sorted %d (%v)",
					name, root, limit, len(walked), tw, ok, len(byName), tn)
			}
		}
	default:
		_, _, _ = v.Apply(Origin(1+r.IntN(4)), 0, []fsbatch.Row{randomRow(r, c)})
	}
}

func randomRow(r *rand.Rand, c *clocks) fsbatch.Row {
	depth := 1 + r.IntN(4)
	p := ""
	for range depth {
		p += fmt.Sprintf("/n%d", r.IntN(6))
	}
	var flags uint32
	switch r.IntN(10) {
	case 0, 1:
		flags = fsbatch.FlagDelete
	case 2, 3:
		flags = fsbatch.FlagDir
		if r.IntN(3) == 0 {
			flags |= fsbatch.FlagAuditSkipped
		}
	case 4:
		flags = fsbatch.FlagPartialWrite
	}
	// mtimes from a minute in the future to two minutes ago: hot and cold files, skews.
	m := c.now.Add(time.Duration(r.IntN(180)-60) * time.Second).UnixNano()
	rw := row(p, flags, uint64(r.IntN(1000)), m)
	if shared := r.IntN(8) != 0; shared && c.dirs != nil {
		rw.Dir = sharedDir(c.dirs, rw.Dir.Path())
	}
	if r.IntN(4) == 0 {
		rw.ParentMtimeNs = c.now.Add(-time.Duration(r.IntN(120)) * time.Second).UnixNano()
	}
	return rw
}

// checkInvariants walks the whole tree: parents exist and are dirs, the index finds every node,
// aggregates equal a recount, Len equals the walk.
func checkInvariants(t testing.TB, v *View) {
	t.Helper()
	v.mu.RLock()
	defer v.mu.RUnlock()
	count := 0
	var visit func(id uint32) (files, dirs, size, maxM int64)
	visit = func(id uint32) (files, dirs, size, maxM int64) {
		var children int32
		for ch := v.st.Get(id).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			c := v.st.Get(ch)
			count++
			children++
			if c.Parent != id {
				t.Fatalf("node %d parent %d, linked under %d", ch, c.Parent, id)
			}
			if got := v.st.Lookup(id, v.st.NameString(c)); got != ch {
				t.Fatalf("index finds %d for node %d (%q)", got, ch, v.st.NameString(c))
			}
			maxM = max(maxM, c.Mtime)
			p := v.pathOf(ch)
			if _, ok := v.c.suspects[p]; ok != (c.Flags&store.FlagSuspect != 0) {
				t.Fatalf("%s: suspect flag %v, table %v", p, c.Flags&store.FlagSuspect != 0, ok)
			}
			if _, ok := v.c.additions[p]; ok != (c.Flags&store.FlagBlindAdd != 0) {
				t.Fatalf("%s: blind-spot flag %v, table %v", p, c.Flags&store.FlagBlindAdd != 0, ok)
			}
			if c.IsDir() {
				f, d, s, m := visit(ch)
				files, dirs, size, maxM = files+f, dirs+d+1, size+s, max(maxM, m)
			} else {
				files, size = files+1, size+c.Size
			}
		}
		g := v.dirs[id]
		if g == nil {
			t.Fatalf("dir %d has no aggregate", id)
		}
		if g.files != files || g.dirs != dirs || g.size != size || g.children != children {
			t.Fatalf("dir %d aggregate files %d dirs %d size %d children %d; recount files %d dirs %d size %d children %d",
				id, g.files, g.dirs, g.size, g.children, files, dirs, size, children)
		}
		sortedKids := func(onlyDirs bool) []uint32 {
			var want []uint32
			for ch := v.st.Get(id).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
				if !onlyDirs || v.st.Get(ch).IsDir() {
					want = append(want, ch)
				}
			}
			slices.SortFunc(want, func(x, y uint32) int { return bytes.Compare(v.st.Name(v.st.Get(x)), v.st.Name(v.st.Get(y))) })
			return want
		}
		if c := g.sorted.Load(); c != nil && !slices.Equal(*c, sortedKids(false)) {
			t.Fatalf("dir %d sorted cache %v; children sorted %v", id, *c, sortedKids(false))
		}
		if l := g.sortedDirs.Load(); l != nil {
			want := sortedKids(true)
			if !slices.Equal(l.ids, want) || len(l.ends) != len(want) || len(l.aggs) != len(want) {
				t.Fatalf("dir %d subdirectory cache %v; subdirectories sorted %v", id, l.ids, want)
			}
			for i, sub := range want {
				if l.aggs[i] != v.dirs[sub] {
					t.Fatalf("dir %d subdirectory cache: aggregate %d is not node %d's", id, i, sub)
				}
				if got := l.name(i); !bytes.Equal(got, v.st.Name(v.st.Get(sub))) {
					t.Fatalf("dir %d subdirectory cache: name %d is %q, node %d is named %q", id, i, got, sub, v.st.Name(v.st.Get(sub)))
				}
			}
		}
		if !g.rangeStale.Load() {
			var lo, hi []byte
			for ch := v.st.Get(id).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
				nm := v.st.Name(v.st.Get(ch))
				if lo == nil || bytes.Compare(nm, lo) < 0 {
					lo = nm
				}
				if hi == nil || bytes.Compare(nm, hi) > 0 {
					hi = nm
				}
			}
			mn, mx := g.minName.Load(), g.maxName.Load()
			if (mn == 0) != (lo == nil) || (mn != 0 && (!bytes.Equal(v.st.Name(v.st.Get(mn)), lo) || !bytes.Equal(v.st.Name(v.st.Get(mx)), hi))) {
				t.Fatalf("dir %d name range (%d, %d) is not its children's [%q, %q]", id, mn, mx, lo, hi)
			}
		}
		v.aggMu.Lock()
		m := v.maxMtimeLocked(id)
		v.aggMu.Unlock()
		if m != maxM {
			t.Fatalf("dir %d max mtime %d; recount %d", id, m, maxM)
		}
		return files, dirs, size, maxM
	}
	visit(v.root)
	// Every node but the root is on its name's chain, each chain is reachable from its slot.
	chained := 0
	for head := range v.st.NameHeads {
		name := v.st.Name(v.st.Get(head))
		if v.st.Get(head).PrevSame() != 0 {
			t.Fatalf("chain head %d has a predecessor", head)
		}
		if v.st.NameHead(string(name)) != head {
			t.Fatalf("slot of %q unreachable by lookup", name)
		}
		for id := head; id != 0; id = v.st.Get(id).NextSame() {
			n := v.st.Get(id)
			if n.Flags&store.FlagLive == 0 || !bytes.Equal(v.st.Name(n), name) {
				t.Fatalf("node %d on the chain of %q is dead or named %q", id, name, v.st.Name(n))
			}
			if nx := n.NextSame(); nx != 0 && v.st.Get(nx).PrevSame() != id {
				t.Fatalf("chain of %q: %d → %d has no back link", name, id, nx)
			}
			chained++
		}
	}
	if chained != count {
		t.Fatalf("%d nodes on name chains, %d in the tree", chained, count)
	}
	if len(v.c.heap) != len(v.c.suspects) {
		t.Fatalf("suspect heap %d, table %d", len(v.c.heap), len(v.c.suspects))
	}
	for i, s := range v.c.heap {
		if s.index != i || v.c.suspects[s.path] != s {
			t.Fatalf("heap entry %d out of sync: %+v", i, s)
		}
	}
	for p := range v.c.additions {
		if id, _ := v.resolve(p); id == 0 {
			t.Fatalf("blind-spot addition %s has no node", p)
		}
	}
	if count != v.size || v.st.Indexed() != v.size {
		t.Fatalf("walk %d nodes, size %d, index %d", count, v.size, v.st.Indexed())
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, c := newClockedView(t)
		c.dirs = map[string]*fsbatch.Dir{}
		seed := uint64(0)
		for i, b := range data {
			seed = seed*31 + uint64(b) + uint64(i)
		}
		r := rand.New(rand.NewPCG(seed, uint64(len(data))))
		for range len(data) * 4 {
			randomOp(t, r, v, c)
			if r.IntN(20) == 0 {
				_, _, _ = v.Apply(Origin(1+r.IntN(4)), 0, []fsbatch.Row{{Name: string(data)}})
			}
		}
		checkInvariants(t, v)
	})
}

// checkPacked fails unless packed (NUL-ended paths) and dirs are entries' paths and directories.
func checkPacked(t testing.TB, entries []Entry, packed []byte, dirs []uint32) {
	t.Helper()
	var paths []string
	for len(packed) > 0 {
		i := bytes.IndexByte(packed, 0)
		if i < 0 {
			t.Fatalf("packed paths end without a NUL: %q", packed)
		}
		paths, packed = append(paths, string(packed[:i])), packed[i+1:]
	}
	var wantDirs []uint32
	want := make([]string, len(entries))
	for i, e := range entries {
		want[i] = e.Path
		if e.IsDir {
			wantDirs = append(wantDirs, uint32(i))
		}
	}
	if !slices.Equal(paths, want) || !slices.Equal(dirs, wantDirs) {
		t.Fatalf("packed paths %q dirs %v, want %q dirs %v", paths, dirs, want, wantDirs)
	}
}

// TestFindPathsLargeNameAnswerKnowsItsDirectories: past nameSortMax matches an exact name is
// answered by walking to its matches, which tell FindPaths which are directories without
// reading them again; every fourth match here is a directory, and the packed answer must
// say so in the same places as Find's entries.
func TestFindPathsLargeNameAnswerKnowsItsDirectories(t *testing.T) {
	v := newView(t)
	var rows []fsbatch.Row
	for i := range nameSortMax + 200 {
		d := fmt.Sprintf("/t%d/d%04d", i%3, i)
		rows = append(rows, row(d, fsbatch.FlagDir, 0, 1))
		if i%4 == 0 {
			rows = append(rows, row(d+"/x", fsbatch.FlagDir, 0, 2))
		} else {
			rows = append(rows, row(d+"/x", 0, 1, 2))
		}
	}
	apply(t, v, OriginRealtime, rows...)
	for _, limit := range []int{nameSortMax + 200, 700} {
		entries, tr, err := v.Find(context.Background(), "/", Matcher{Name: "x"}, Limit{Entries: limit})
		if err != nil || len(entries) != limit || tr != (limit < nameSortMax+200) {
			t.Fatalf("Find limit %d: %d entries, truncated %v, %v", limit, len(entries), tr, err)
		}
		packed, dirs, ptr, err := v.FindPaths(context.Background(), "/", Matcher{Name: "x"}, Limit{Entries: limit})
		if err != nil || ptr != tr {
			t.Fatalf("FindPaths limit %d: truncated %v, %v", limit, ptr, err)
		}
		checkPacked(t, entries, packed, dirs)
		if len(dirs) == 0 {
			t.Fatal("no directory among the matches: the test lost its point")
		}
	}
}
