package rows

import (
	"slices"
	"sort"
)

// chunkMax is how many keys one chunk of the index holds before it splits: an insert moves
// at most that many keys and the chunk list moves by one slot per split.
const chunkMax = 512

// index keeps the keys of the live rows sorted, for listings in key order with a seek: a list
// of sorted chunks, every key of a chunk below every key of the next. A seek is two binary
// searches, an insert or a removal touches one chunk (and the chunk list when it splits or
// empties), so no operation costs the size of the view.
type index struct {
	chunks [][]string
	n      int
}

// chunkOf returns the chunk that holds, or would hold, key.
func (x *index) chunkOf(key string) int {
	// The first chunk whose last key is >= key; past the end: the last chunk.
	i := sort.Search(len(x.chunks), func(i int) bool {
		c := x.chunks[i]
		return c[len(c)-1] >= key
	})
	return min(i, len(x.chunks)-1)
}

// insert adds key, which must not be present.
func (x *index) insert(key string) {
	x.n++
	if len(x.chunks) == 0 {
		x.chunks = [][]string{{key}}
		return
	}
	ci := x.chunkOf(key)
	c := x.chunks[ci]
	i, _ := slices.BinarySearch(c, key)
	c = slices.Insert(c, i, key)
	if len(c) <= chunkMax {
		x.chunks[ci] = c
		return
	}
	half := len(c) / 2
	left := slices.Clone(c[:half])
	right := slices.Clone(c[half:])
	x.chunks[ci] = left
	x.chunks = slices.Insert(x.chunks, ci+1, right)
}

// remove drops key, if present.
func (x *index) remove(key string) {
	if len(x.chunks) == 0 {
		return
	}
	ci := x.chunkOf(key)
	c := x.chunks[ci]
	i, ok := slices.BinarySearch(c, key)
	if !ok {
		return
	}
	x.n--
	c = slices.Delete(c, i, i+1)
	if len(c) == 0 {
		x.chunks = slices.Delete(x.chunks, ci, ci+1)
		return
	}
	x.chunks[ci] = c
}

// ascend calls fn for the keys from from on (above it when strict), in order, until fn
// returns false.
func (x *index) ascend(from string, strict bool, fn func(key string) bool) {
	if len(x.chunks) == 0 {
		return
	}
	ci := x.chunkOf(from)
	i, found := slices.BinarySearch(x.chunks[ci], from)
	if found && strict {
		i++
	}
	for ; ci < len(x.chunks); ci, i = ci+1, 0 {
		c := x.chunks[ci]
		for ; i < len(c); i++ {
			if !fn(c[i]) {
				return
			}
		}
	}
}

// reset drops every key.
func (x *index) reset() { *x = index{} }
