package store

import (
	"hash/maphash"
	"unsafe"
)

// index maps (parent id, name) to a child id with linear probing over a []uint32; keys are
// read from the nodes themselves, so an entry costs 4 bytes plus load slack.
//
// A slot holds the node id in its low IDBits and a tag (the hash's top bits) above them. A
// probe compares tags first and reads a node only when they agree, so walking a cluster on a
// miss — every insert of a new name — touches the slots array alone instead of fetching a
// 56-byte node (a cache miss at millions of nodes) per occupied slot.
type index struct {
	seed  maphash.Seed
	slots []uint32
	count int
}

const (
	// IDBits is how many low bits of a slot hold a node id; callers may keep flags of their
	// own in the bits above it of an id they store.
	IDBits = 27
	// IDMask masks a node id out of such a value.
	IDMask = 1<<IDBits - 1
	// MaxIndexedNodes is the largest node id a slot can hold; views are capped below it.
	MaxIndexedNodes = IDMask - 1
)

func newIndex() index { return index{seed: maphash.MakeSeed(), slots: make([]uint32, 1024)} }

// A key's hash is the name's hash (seeded, shared with names) mixed with its parent id, so a
// row hashes its name once for both tables: the name's own hash is key hash ^ parentMix.
func (x *index) hash(parent uint32, name []byte) uint64 {
	return maphash.Bytes(x.seed, name) ^ parentMix(parent)
}

func (x *index) hashString(parent uint32, name string) uint64 {
	return maphash.String(x.seed, name) ^ parentMix(parent)
}

func parentMix(parent uint32) uint64 { return uint64(parent) * 0x9E3779B97F4A7C15 }

// tagOf takes the hash's top bits, which the slot position (its low bits) never uses.
func tagOf(h uint64) uint32 { return uint32(h>>(64-(32-IDBits))) << IDBits }

func (x *index) lookup(a *arena, parent uint32, name string) uint32 {
	return x.lookupHashed(a, parent, name, x.hashString(parent, name))
}

// lookupHashed is lookup with h = hashString(parent, name) already known.
func (x *index) lookupHashed(a *arena, parent uint32, name string, h uint64) uint32 {
	mask := uint64(len(x.slots) - 1)
	tag := tagOf(h)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0
		}
		if s&^IDMask != tag {
			continue
		}
		id := s & IDMask
		n := a.get(id)
		if n.Parent == parent && int(n.nameLen) == len(name) && string(a.name(n)) == name {
			return id
		}
	}
}

// insert adds id, whose key hashes to h. It grows the table after placing id, so grow finds
// every indexed node live in the arena, id included.
func (x *index) insert(a *arena, id uint32, h uint64) {
	x.place(h, id)
	x.count++
	if x.count*4 > len(x.slots)*3 {
		x.grow(a)
	}
}

// place puts id in the first free slot from h's home.
func (x *index) place(h uint64, id uint32) { placeSlot(x.slots, h, id|tagOf(h)) }

// placeSlot stores slot value s in the first free slot of a linear-probing table from h's home.
func placeSlot(slots []uint32, h uint64, s uint32) {
	mask := uint64(len(slots) - 1)
	i := h & mask
	for slots[i] != 0 {
		i = (i + 1) & mask
	}
	slots[i] = s
}

// grow doubles the table. It rehashes the arena's live nodes in id order rather than the old
// slots in hash order: every indexed node is live with a parent (only the roots have none), and
// reading nodes and names sequentially instead of one random node and name per slot is a
// large part of a big snapshot's cost (BenchmarkApplySnapshot; fustor-bench P1 end to end).
// The slots are written at random, so each node's slot is prefetched growAhead nodes before it
// is placed.
func (x *index) grow(a *arena) {
	x.slots = make([]uint32, len(x.slots)*2)
	adviseHuge(unsafe.Pointer(&x.slots[0]), uintptr(len(x.slots))*4)
	mask := uint64(len(x.slots) - 1)
	var hs [growAhead]uint64
	var ids [growAhead]uint32
	k := 0
	a.each(func(id uint32, n *Node) {
		if n.Parent == 0 {
			return
		}
		h := x.hash(n.Parent, a.name(n))
		prefetch(&x.slots[h&mask])
		j := k % growAhead
		if k >= growAhead {
			x.place(hs[j], ids[j])
		}
		hs[j], ids[j] = h, id
		k++
	})
	for i := max(0, k-growAhead); i < k; i++ {
		x.place(hs[i%growAhead], ids[i%growAhead])
	}
}

const growAhead = 16

// prefetchHome starts loading the home slot of hash h, for a lookup a few rows later.
func (x *index) prefetchHome(h uint64) { prefetch(&x.slots[h&uint64(len(x.slots)-1)]) }

// remove deletes id with backward-shift deletion, so no tombstones slow later probes.
func (x *index) remove(a *arena, id uint32) {
	n := a.get(id)
	mask := uint64(len(x.slots) - 1)
	i := x.hash(n.Parent, a.name(n)) & mask
	for x.slots[i]&IDMask != id {
		if x.slots[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	x.count--
	backShift(x.slots, i, func(s uint32) uint64 {
		m := a.get(s & IDMask)
		return x.hash(m.Parent, a.name(m))
	})
}

// backShift empties slot i of a linear-probing table and moves later entries of its cluster
// back into the gap, so no tombstones slow later probes; home gives an entry's hash.
func backShift(slots []uint32, i uint64, home func(uint32) uint64) {
	mask := uint64(len(slots) - 1)
	for {
		slots[i] = 0
		j := i
		for {
			j = (j + 1) & mask
			if slots[j] == 0 {
				return
			}
			h := home(slots[j]) & mask
			// Move slot j back to i unless its home lies cyclically in (i, j].
			if (j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j)) {
				slots[i] = slots[j]
				i = j
				break
			}
		}
	}
}

func (x *index) memory() uint64 { return uint64(len(x.slots)) * 4 }
