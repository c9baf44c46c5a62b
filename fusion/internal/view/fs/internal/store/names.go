package store

import (
	"hash/maphash"
	"unsafe"
)

// names finds nodes by basename alone, for find by exact name: every node with a name is on
// that name's doubly linked chain (node.nextSame/prevSame), and an open-addressing table maps
// the name to the chain's head. An exact-name find then costs its matches, not one child-index
// probe per directory of the subtree. Same layout as index: a slot holds the head's id and a
// hash tag; the key is read from the head node.
type names struct {
	seed  maphash.Seed
	slots []uint32
	count int // distinct names
}

// newNames shares the index's seed, so a name's hash comes from the row's key hash.
func newNames(seed maphash.Seed) names { return names{seed: seed, slots: make([]uint32, 256)} }

func (x *names) hash(name []byte) uint64 { return maphash.Bytes(x.seed, name) }

// slot returns the position of name's slot, or of the empty slot where it would go.
func (x *names) slot(a *arena, name []byte, h uint64) uint64 {
	mask := uint64(len(x.slots) - 1)
	tag := tagOf(h)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 || (s&^IDMask == tag && string(a.name(a.get(s&IDMask))) == string(name)) {
			return i
		}
	}
}

// head returns the first node named name (0: none).
func (x *names) head(a *arena, name string) uint32 {
	b := []byte(name)
	return x.slots[x.slot(a, b, x.hash(b))] & IDMask
}

// heads yields the first node of every name's chain, one per distinct name.
func (x *names) heads(yield func(uint32) bool) {
	for _, s := range x.slots {
		if s != 0 && !yield(s&IDMask) {
			return
		}
	}
}

// add puts id, whose name is set and hashes to h, at the head of its name's chain.
// It grows the table after linking id, so a grow that scans the arena sees id's chain whole.
func (x *names) add(a *arena, id uint32, h uint64) {
	n := a.get(id)
	i := x.slot(a, a.name(n), h)
	if old := x.slots[i] & IDMask; old != 0 {
		n.nextSame = old
		a.get(old).prevSame = id
	} else {
		x.count++
	}
	n.prevSame = 0
	x.slots[i] = id | tagOf(h)
	if x.count*4 > len(x.slots)*3 {
		x.grow(a)
	}
}

// remove unlinks id from its name's chain.
func (x *names) remove(a *arena, id uint32) {
	n := a.get(id)
	prev, next := n.prevSame, n.nextSame
	n.prevSame, n.nextSame = 0, 0
	if next != 0 {
		a.get(next).prevSame = prev
	}
	if prev != 0 {
		a.get(prev).nextSame = next
		return
	}
	// id was the head.
	h := x.hash(a.name(n))
	i := x.slot(a, a.name(n), h)
	if x.slots[i]&IDMask != id {
		return // not indexed (cannot happen for a live node)
	}
	if next != 0 {
		x.slots[i] = next | tagOf(h)
		return
	}
	x.count--
	backShift(x.slots, i, func(s uint32) uint64 { return x.hash(a.name(a.get(s & IDMask))) })
}

// grow doubles the table. When most nodes have names of their own it rehashes the chain heads
// found by scanning the arena in id order, as index.grow does, instead of reading one random
// node and name per old slot; when names repeat (data_0001.dat in every directory) the old
// slots are far fewer than the nodes and it reads those.
func (x *names) grow(a *arena) {
	old := x.slots
	x.slots = make([]uint32, len(old)*2)
	adviseHuge(unsafe.Pointer(&x.slots[0]), uintptr(len(x.slots))*4)
	if x.count*4 < int(a.next) {
		for _, s := range old {
			if s != 0 {
				placeSlot(x.slots, x.hash(a.name(a.get(s&IDMask))), s)
			}
		}
		return
	}
	a.each(func(id uint32, n *Node) {
		if n.prevSame == 0 && n.Parent != 0 {
			h := x.hash(a.name(n))
			placeSlot(x.slots, h, id|tagOf(h))
		}
	})
}

func (x *names) memory() uint64 { return uint64(len(x.slots)) * 4 }
