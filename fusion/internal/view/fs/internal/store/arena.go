package store

import "unsafe"

const (
	chunkBits = 18
	chunkSize = 1 << chunkBits
	nameBits  = 22
	nameChunk = 1 << nameBits
)

// Node flag bits. Store itself reads two: FlagLive (Each skips freed ids) and FlagDir (IsDir);
// the others mean something to the fs view only, and are allocated here so that no two bits
// collide.
const (
	FlagDir uint16 = 1 << iota
	FlagSuspect
	FlagKnown
	FlagAuditSkipped
	FlagLive       // set while the id is in use
	FlagAuditSeen  // reported by the open audit
	FlagBlindAdd   // recorded as a blind-spot addition
	FlagSnapSeen   // reported by the open snapshot (fs/reconcile.go)
	FlagVerifySeen // reported by the open verify walk (fs/verify.go)
)

// Node is one file or directory, 56 bytes. The exported fields are the caller's to read and
// write in its hot loops (the tree links and the attributes); the name and the same-name chain
// are store's, reached through Store.Name and NextSame, because the child index and the name
// table key on them.
type Node struct {
	Size        int64
	Mtime       int64
	LastUpdated int64
	Parent      uint32
	FirstChild  uint32
	NextSib     uint32
	PrevSib     uint32
	nameRef     uint32 // chunk<<nameBits | offset in names
	nameLen     uint16
	Flags       uint16
	// nextSame and prevSame chain the nodes sharing this name (names.go).
	nextSame, prevSame uint32
}

// IsDir reports whether FlagDir is set.
func (n *Node) IsDir() bool { return n.Flags&FlagDir != 0 }

// NameLen is the length of the node's name in bytes.
func (n *Node) NameLen() int { return int(n.nameLen) }

// NextSame is the next node with the same name (0: none), for walking a Store.NameHead chain.
func (n *Node) NextSame() uint32 { return n.nextSame }

// PrevSame is the previous node with the same name (0: n is the chain's head).
func (n *Node) PrevSame() uint32 { return n.prevSame }

type arena struct {
	chunks [][]Node
	free   []uint32
	next   uint32 // next never-used id

	names     [][]byte
	liveBytes int
	deadBytes int
}

func (a *arena) get(id uint32) *Node { return &a.chunks[id>>chunkBits][id&(chunkSize-1)] }

func (a *arena) alloc() uint32 {
	if n := len(a.free); n > 0 {
		id := a.free[n-1]
		a.free = a.free[:n-1]
		return id
	}
	id := a.next
	a.next++
	if int(id>>chunkBits) >= len(a.chunks) {
		c := make([]Node, chunkSize)
		adviseHuge(unsafe.Pointer(&c[0]), chunkSize*unsafe.Sizeof(Node{}))
		a.chunks = append(a.chunks, c)
	}
	return id
}

// each calls f for every live node in id order, reading the chunks sequentially.
func (a *arena) each(f func(id uint32, n *Node)) {
	for c, chunk := range a.chunks {
		base := uint32(c) << chunkBits
		for i := range chunk {
			id := base + uint32(i)
			if id >= a.next {
				return
			}
			if n := &chunk[i]; n.Flags&FlagLive != 0 {
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
			chunk[i].Flags &^= flag
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
	*n = Node{}
	a.free = append(a.free, id)
}

func (a *arena) name(n *Node) []byte {
	c := a.names[n.nameRef>>nameBits]
	off := n.nameRef & (nameChunk - 1)
	return c[off : off+uint32(n.nameLen)]
}

func (a *arena) nameString(n *Node) string { return string(a.name(n)) }

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
	a.each(func(_ uint32, n *Node) {
		c := old[n.nameRef>>nameBits]
		off := n.nameRef & (nameChunk - 1)
		n.nameRef = a.putName(string(c[off : off+uint32(n.nameLen)]))
	})
}

func (a *arena) memory() uint64 {
	return uint64(len(a.chunks))*chunkSize*uint64(unsafe.Sizeof(Node{})) + uint64(len(a.names))*nameChunk + uint64(cap(a.free))*4
}
