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
