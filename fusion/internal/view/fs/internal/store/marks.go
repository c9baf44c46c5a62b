package store

import (
	"math/bits"
	"sync"
)

// MarkTable maps a node id to a uint32 value, for the fs view's walkToMatches: the match a
// directory holds, or a marker when the matches are further down. A complete answer marks and
// looks up some 20,000 directories; a Go map made them a large share of Fusion's CPU under
// concurrent finds (BenchmarkFind, …_complete_paths), so this is an open-addressing table of
// id<<32|value in one slice, reused through a MarkPool. Ids start at 1, so a zero slot is
// empty.
type MarkTable struct {
	slots []uint64
	shift uint
	count int
}

// maxPooledMarkSlots bounds the tables a MarkPool keeps (8 MiB).
const maxPooledMarkSlots = 1 << 20

// MarkPool keeps emptied mark tables for the next find; concurrent finds each take their own.
// The zero value is ready to use.
type MarkPool struct{ p sync.Pool }

// Get returns an empty table with room for about n marks before it grows.
func (p *MarkPool) Get(n int) *MarkTable {
	t, _ := p.p.Get().(*MarkTable)
	if t == nil {
		t = new(MarkTable)
	}
	t.Reset(n)
	return t
}

// Put hands t back for reuse, unless an outsized find grew it past what is worth keeping.
func (p *MarkPool) Put(t *MarkTable) {
	if len(t.slots) <= maxPooledMarkSlots {
		p.p.Put(t)
	}
}

// Reset empties the table, with room for about n marks before it grows.
func (t *MarkTable) Reset(n int) {
	size := 1 << bits.Len(uint(2*n+63))
	if cap(t.slots) >= size {
		t.slots = t.slots[:size]
		clear(t.slots)
	} else {
		t.slots = make([]uint64, size)
	}
	t.shift = 64 - uint(bits.TrailingZeros(uint(size)))
	t.count = 0
}

func (t *MarkTable) home(id uint32) uint64 { return (uint64(id) * 0x9E3779B97F4A7C15) >> t.shift }

// Get returns id's value and whether id is in the table.
func (t *MarkTable) Get(id uint32) (uint32, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(id); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == id {
			return uint32(s), true
		}
	}
}

// Put sets id's value, adding id if it is new; id must not be 0.
func (t *MarkTable) Put(id, v uint32) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(id)
	for ; t.slots[i] != 0; i = (i + 1) & mask {
		if uint32(t.slots[i]>>32) == id {
			t.slots[i] = uint64(id)<<32 | uint64(v)
			return
		}
	}
	t.slots[i] = uint64(id)<<32 | uint64(v)
	if t.count++; t.count*2 > len(t.slots) {
		t.grow()
	}
}

func (t *MarkTable) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	t.shift--
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := t.home(uint32(s >> 32))
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}
