package fs

import (
	"hash/maphash"
)

// index maps (parent id, name) to a child id with linear probing over a []uint32 of node ids;
// keys are read from the nodes themselves, so an entry costs 4 bytes plus load slack.
type index struct {
	seed  maphash.Seed
	slots []uint32
	count int
}

func newIndex() *index { return &index{seed: maphash.MakeSeed(), slots: make([]uint32, 1024)} }

func (x *index) hash(parent uint32, name []byte) uint64 {
	return maphash.Bytes(x.seed, name) ^ (uint64(parent) * 0x9E3779B97F4A7C15)
}

func (x *index) hashString(parent uint32, name string) uint64 {
	return maphash.String(x.seed, name) ^ (uint64(parent) * 0x9E3779B97F4A7C15)
}

func (x *index) lookup(a *arena, parent uint32, name string) uint32 {
	mask := uint64(len(x.slots) - 1)
	for i := x.hashString(parent, name) & mask; ; i = (i + 1) & mask {
		id := x.slots[i]
		if id == 0 {
			return 0
		}
		n := a.get(id)
		if n.parent == parent && int(n.nameLen) == len(name) && string(a.name(n)) == name {
			return id
		}
	}
}

func (x *index) insert(a *arena, id uint32) {
	if (x.count+1)*4 > len(x.slots)*3 {
		x.grow(a)
	}
	n := a.get(id)
	mask := uint64(len(x.slots) - 1)
	i := x.hash(n.parent, a.name(n)) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = id
	x.count++
}

func (x *index) grow(a *arena) {
	old := x.slots
	x.slots = make([]uint32, len(old)*2)
	mask := uint64(len(x.slots) - 1)
	for _, id := range old {
		if id == 0 {
			continue
		}
		n := a.get(id)
		i := x.hash(n.parent, a.name(n)) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = id
	}
}

// remove deletes id with backward-shift deletion, so no tombstones slow later probes.
func (x *index) remove(a *arena, id uint32) {
	n := a.get(id)
	mask := uint64(len(x.slots) - 1)
	i := x.hash(n.parent, a.name(n)) & mask
	for x.slots[i] != id {
		if x.slots[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	x.count--
	for {
		x.slots[i] = 0
		j := i
		for {
			j = (j + 1) & mask
			if x.slots[j] == 0 {
				return
			}
			m := a.get(x.slots[j])
			home := x.hash(m.parent, a.name(m)) & mask
			// Move slot j back to i unless its home lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j)) {
				x.slots[i] = x.slots[j]
				i = j
				break
			}
		}
	}
}

func (x *index) memory() uint64 { return uint64(len(x.slots)) * 4 }
