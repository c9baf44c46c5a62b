package fs

import "math/bits"

// markTable maps a directory id to the match it holds, or noMatch when the matches are
// further down, for walkToMatches. A complete answer marks and looks up some 20,000
// directories; Go's map spent 15 % of Fusion's CPU on them under 20 clients, so this is an
// open-addressing table of id<<32|value in one slice, reused through View.marks. Ids start at
// 1, so a zero slot is empty.
type markTable struct {
	slots []uint64
	shift uint
	count int
}

const (
	noMatch = ^uint32(0)
	// maxPooledMarkSlots bounds the tables View.marks keeps (8 MiB).
	maxPooledMarkSlots = 1 << 20
)

// reset empties the table, with room for about n marks before it grows.
func (t *markTable) reset(n int) {
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

func (t *markTable) home(id uint32) uint64 { return (uint64(id) * 0x9E3779B97F4A7C15) >> t.shift }

func (t *markTable) get(id uint32) (uint32, bool) {
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

// put sets id's value, adding id if it is new.
func (t *markTable) put(id, v uint32) {
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

func (t *markTable) grow() {
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
