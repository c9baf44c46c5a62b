package fs

import "unsafe"

// The tree is stored for tens of millions of files: nodes live in fixed-size chunks addressed by
// uint32 ids (growth never copies a huge slice), names in chunked byte arenas, and children are
// found through one open-addressing index (index.go) instead of a Go map per directory.

const (
	chunkBits = 18
	chunkSize = 1 << chunkBits
	nameBits  = 22
	nameChunk = 1 << nameBits
)

// Node flag bits.
const (
	flagDir uint16 = 1 << iota
	flagSuspect
	flagKnown
	flagAuditSkipped
	flagLive       // set while the id is in use
	flagAuditSeen  // reported by the open audit
	flagBlindAdd   // recorded as a blind-spot addition
	flagSnapSeen   // reported by the open snapshot (reconcile.go)
	flagVerifySeen // reported by the open verify walk (verify.go)
)

// node is 56 bytes.
type node struct {
	size        int64
	mtime       int64
	lastUpdated int64
	parent      uint32
	firstChild  uint32
	nextSib     uint32
	prevSib     uint32
	nameRef     uint32 // chunk<<nameBits | offset in names
	nameLen     uint16
	flags       uint16
	// nextSame and prevSame chain the nodes sharing this name (names.go).
	nextSame, prevSame uint32
}

func (n *node) isDir() bool { return n.flags&flagDir != 0 }

type arena struct {
	chunks [][]node
	free   []uint32
	next   uint32 // next never-used id

	names     [][]byte
	liveBytes int
	deadBytes int
}

func newArena() *arena {
	a := &arena{next: 1} // id 0 is "none"
	return a
}

func (a *arena) get(id uint32) *node { return &a.chunks[id>>chunkBits][id&(chunkSize-1)] }

func (a *arena) alloc() uint32 {
	if n := len(a.free); n > 0 {
		id := a.free[n-1]
		a.free = a.free[:n-1]
		return id
	}
	id := a.next
	a.next++
	if int(id>>chunkBits) >= len(a.chunks) {
		c := make([]node, chunkSize)
		adviseHuge(unsafe.Pointer(&c[0]), chunkSize*unsafe.Sizeof(node{}))
		a.chunks = append(a.chunks, c)
	}
	return id
}

// each calls f for every live node in id order, reading the chunks sequentially.
func (a *arena) each(f func(id uint32, n *node)) {
	for c, chunk := range a.chunks {
		base := uint32(c) << chunkBits
		for i := range chunk {
			id := base + uint32(i)
			if id >= a.next {
				return
			}
			if n := &chunk[i]; n.flags&flagLive != 0 {
				f(id, n)
			}
		}
	}
}

// clearFlag clears flag on every node, reading the chunks sequentially.
func (a *arena) clearFlag(flag uint16) {
	for c, chunk := range a.chunks {
		n := min(uint32(len(chunk)), a.next-uint32(c)<<chunkBits)
		for i := range chunk[:n] {
			chunk[i].flags &^= flag
		}
		if n < uint32(len(chunk)) {
			return
		}
	}
}

func (a *arena) release(id uint32) {
	n := a.get(id)
	a.deadBytes += int(n.nameLen)
	a.liveBytes -= int(n.nameLen)
	*n = node{}
	a.free = append(a.free, id)
}

func (a *arena) name(n *node) []byte {
	c := a.names[n.nameRef>>nameBits]
	off := n.nameRef & (nameChunk - 1)
	return c[off : off+uint32(n.nameLen)]
}

func (a *arena) nameString(n *node) string { return string(a.name(n)) }

// putName stores name (at most 65535 bytes; validated by the caller) and returns its reference.
func (a *arena) putName(name string) uint32 {
	last := len(a.names) - 1
	if last < 0 || len(a.names[last])+len(name) > nameChunk {
		c := make([]byte, 0, nameChunk)
		adviseHuge(unsafe.Pointer(unsafe.SliceData(c)), nameChunk)
		a.names = append(a.names, c)
		last++
	}
	off := len(a.names[last])
	a.names[last] = append(a.names[last], name...)
	a.liveBytes += len(name)
	return uint32(last)<<nameBits | uint32(off)
}

// compact rewrites the name arenas when deleted names outweigh live ones, so churn cannot grow
// memory without bound.
func (a *arena) compact() {
	if a.deadBytes < nameChunk || a.deadBytes < a.liveBytes {
		return
	}
	old := a.names
	a.names, a.liveBytes, a.deadBytes = nil, 0, 0
	a.each(func(_ uint32, n *node) {
		c := old[n.nameRef>>nameBits]
		off := n.nameRef & (nameChunk - 1)
		n.nameRef = a.putName(string(c[off : off+uint32(n.nameLen)]))
	})
}

func (a *arena) memory() uint64 {
	return uint64(len(a.chunks))*chunkSize*uint64(unsafe.Sizeof(node{})) + uint64(len(a.names))*nameChunk + uint64(cap(a.free))*4
}
