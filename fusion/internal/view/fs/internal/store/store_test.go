package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestIndexTagsAndRemoval fills the index past several grows with names that share parents
// and prefixes, removes every third entry, and checks each lookup against a plain map: tags
// must never hide a present key or admit an absent one.
func TestIndexTagsAndRemoval(t *testing.T) {
	for _, tc := range []struct {
		name    string
		parents int
		perDir  int
	}{
		{"one wide directory", 1, 20_000},
		{"many small directories", 5_000, 4},
		{"mixed", 200, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, x := &arena{next: 1}, newIndex()
			want := map[string]uint32{}
			key := func(p uint32, n string) string { return fmt.Sprintf("%d/%s", p, n) }
			var ids []uint32
			for p := range tc.parents {
				for c := range tc.perDir {
					id := a.alloc()
					n := a.get(id)
					name := fmt.Sprintf("data_%04d.dat", c)
					// The view's invariant, which grow relies on: an indexed node is live.
					n.Flags = FlagLive
					n.Parent, n.nameRef, n.nameLen = uint32(p+1), a.putName(name), uint16(len(name))
					x.insert(a, id, x.hash(n.Parent, a.name(n)))
					want[key(n.Parent, name)] = id
					ids = append(ids, id)
				}
			}
			for i, id := range ids {
				if i%3 == 0 {
					n := a.get(id)
					x.remove(a, id)
					delete(want, key(n.Parent, a.nameString(n)))
				}
			}
			if x.count != len(want) {
				t.Fatalf("count %d, want %d", x.count, len(want))
			}
			for i, id := range ids {
				n := a.get(id)
				got := x.lookup(a, n.Parent, a.nameString(n))
				if i%3 == 0 && got != 0 {
					t.Fatalf("removed %s found as %d", a.nameString(n), got)
				}
				if i%3 != 0 && got != id {
					t.Fatalf("lookup %d/%s = %d, want %d", n.Parent, a.nameString(n), got, id)
				}
			}
			if got := x.lookup(a, 1, "absent.dat"); got != 0 {
				t.Fatalf("absent name found as %d", got)
			}
		})
	}
}

// TestArenaCompactKeepsLiveNames frees most of a name arena's bytes and compacts it: every
// live node keeps its name, and the dead bytes are gone.
func TestArenaCompactKeepsLiveNames(t *testing.T) {
	a := &arena{next: 1}
	want := map[uint32]string{}
	for i := range 80_000 {
		id := a.alloc()
		n := a.get(id)
		name := fmt.Sprintf("%06d-%058d", i, i) // 65 bytes: 80,000 of them fill more than a chunk
		n.Flags, n.nameRef, n.nameLen = FlagLive, a.putName(name), uint16(len(name))
		want[id] = name
	}
	for id := range want {
		if id%10 != 0 {
			a.release(id)
			delete(want, id)
		}
	}
	before := len(a.names)
	a.compact()
	if a.deadBytes != 0 || len(a.names) >= before {
		t.Fatalf("after compact: %d dead bytes, %d name chunks (before %d)", a.deadBytes, len(a.names), before)
	}
	for id, name := range want {
		if got := a.nameString(a.get(id)); got != name {
			t.Fatalf("node %d named %q after compact, want %q", id, got, name)
		}
	}
}

// TestMarkTableAgreesWithAMap: random puts (new ids and overwrites) past several growths,
// then every id a map holds is found with its value and ids never put are absent; a reset
// table is empty.
func TestMarkTableAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	var mt MarkTable
	for _, n := range []int{0, 10, 5000} {
		mt.Reset(n / 4)
		want := map[uint32]uint32{}
		for range n {
			id := 1 + rng.Uint32N(uint32(2*n+1))
			v := rng.Uint32()
			mt.Put(id, v)
			want[id] = v
		}
		if mt.count != len(want) {
			t.Fatalf("n=%d: count %d, want %d", n, mt.count, len(want))
		}
		for id := uint32(1); id <= uint32(2*n+1); id++ {
			got, ok := mt.Get(id)
			w, wok := want[id]
			if ok != wok || got != w {
				t.Fatalf("n=%d: get(%d) = %d, %v; want %d, %v", n, id, got, ok, w, wok)
			}
		}
	}
	mt.Reset(1)
	if _, ok := mt.Get(1); ok || mt.count != 0 {
		t.Fatal("a reset table still holds marks")
	}
}

// TestStoreKeepsTablesWithNodes drives the API the fs view uses: nodes added under parents are
// found by key and on their name's chain, a root is in neither table, removed nodes leave both,
// and a freed id is reused.
func TestStoreKeepsTablesWithNodes(t *testing.T) {
	s := New()
	root := s.Add(0, "", 0)
	if root == 0 || s.Indexed() != 0 || s.DistinctNames() != 0 {
		t.Fatalf("root %d: indexed %d, names %d; want a nonzero id in neither table", root, s.Indexed(), s.DistinctNames())
	}
	add := func(parent uint32, name string) uint32 {
		if s.Lookup(parent, name) != 0 {
			t.Fatalf("%d/%s present before Add", parent, name)
		}
		id := s.Add(parent, name, s.HashString(parent, name))
		if n := s.Get(id); n.Parent != parent || n.Flags != FlagLive || s.NameString(n) != name || n.NameLen() != len(name) {
			t.Fatalf("added %d/%s: node %+v named %q", parent, name, *n, s.NameString(n))
		}
		return id
	}
	var dirs []uint32
	for d := range 50 {
		dirs = append(dirs, add(root, fmt.Sprintf("d%02d", d)))
	}
	files := map[uint32]string{}
	for _, d := range dirs {
		for f := range 40 {
			name := fmt.Sprintf("f%02d", f)
			files[add(d, name)] = name
		}
	}
	chain := func(name string) map[uint32]bool {
		got := map[uint32]bool{}
		prev := uint32(0)
		for id := s.NameHead(name); id != 0; id = s.Get(id).NextSame() {
			if s.Get(id).PrevSame() != prev {
				t.Fatalf("chain of %s: %d's PrevSame %d, want %d", name, id, s.Get(id).PrevSame(), prev)
			}
			got[id], prev = true, id
		}
		return got
	}
	if s.Indexed() != 50+50*40 || s.DistinctNames() != 50+40 {
		t.Fatalf("indexed %d, names %d; want %d, %d", s.Indexed(), s.DistinctNames(), 50+50*40, 50+40)
	}
	if c := chain("f07"); len(c) != 50 {
		t.Fatalf("chain of f07 holds %d nodes, want 50", len(c))
	}
	// Remove every other directory's files: the tables shrink and keep the rest.
	var freed uint32
	for id := range files {
		if (s.Get(id).Parent-dirs[0])%2 == 0 {
			s.Remove(id)
			delete(files, id)
			freed = id
		}
	}
	for id, name := range files {
		if got := s.Lookup(s.Get(id).Parent, name); got != id {
			t.Fatalf("lookup of kept %d/%s = %d, want %d", s.Get(id).Parent, name, got, id)
		}
	}
	if c := chain("f07"); len(c) != 25 {
		t.Fatalf("chain of f07 holds %d nodes after removals, want 25", len(c))
	}
	live := 0
	s.Each(func(uint32, *Node) { live++ })
	if live != 1+50+25*40 || s.Indexed() != 50+25*40 {
		t.Fatalf("%d live, %d indexed; want %d, %d", live, s.Indexed(), 1+50+25*40, 50+25*40)
	}
	before := s.Allocated()
	if id := s.Add(dirs[0], "again", s.HashString(dirs[0], "again")); id > before || s.Allocated() != before {
		t.Fatalf("Add after frees took id %d (allocated %d, was %d); want a freed one like %d", id, s.Allocated(), before, freed)
	}
}
