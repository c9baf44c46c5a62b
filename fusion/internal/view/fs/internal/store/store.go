package store

// Store holds the nodes, their names, the child index and the name table. It is not safe for
// concurrent use; the fs view guards it with its lock (readers may share it: no read method
// writes).
type Store struct {
	arena
	idx    index
	byName names
}

// New returns an empty store. Id 0 is never allocated: it means "none" in every link.
func New() *Store {
	s := &Store{arena: arena{next: 1}, idx: newIndex()}
	s.byName = newNames(s.idx.seed)
	return s
}

// Get returns the node of id, which must have been allocated: a node never moves, so the
// pointer stays valid until the next Remove of id.
func (s *Store) Get(id uint32) *Node { return s.arena.get(id) }

// Name returns n's name, valid until the next Compact (a Remove may compact).
func (s *Store) Name(n *Node) []byte { return s.arena.name(n) }

// NameString returns a copy of n's name.
func (s *Store) NameString(n *Node) string { return s.arena.nameString(n) }

// Add allocates a live node named name under parent, and puts it in the child index and the
// name table; h is HashString(parent, name), which the caller's lookup computed. A parent of 0
// makes a root, which neither table holds. The other fields are zero but Flags (FlagLive):
// the caller links the node into its parent's children.
func (s *Store) Add(parent uint32, name string, h uint64) uint32 {
	id := s.alloc()
	n := s.get(id)
	n.Parent, n.Flags = parent, FlagLive
	n.nameRef, n.nameLen = s.putName(name), uint16(len(name))
	if parent != 0 {
		s.idx.insert(&s.arena, id, h)
		s.byName.add(&s.arena, id, h^parentMix(parent))
	}
	return id
}

// Remove takes id out of both tables and frees it; its Parent and name must be those it was
// added with. The caller has unlinked it from its siblings.
func (s *Store) Remove(id uint32) {
	if s.get(id).Parent != 0 {
		s.idx.remove(&s.arena, id)
		s.byName.remove(&s.arena, id)
	}
	s.release(id)
}

// HashString returns the child index's hash of (parent, name), for LookupHashed, Add and
// PrefetchHome.
func (s *Store) HashString(parent uint32, name string) uint64 {
	return s.idx.hashString(parent, name)
}

// Lookup returns the child of parent named name (0: none).
func (s *Store) Lookup(parent uint32, name string) uint32 {
	return s.idx.lookup(&s.arena, parent, name)
}

// LookupHashed is Lookup with h = HashString(parent, name) already known.
func (s *Store) LookupHashed(parent uint32, name string, h uint64) uint32 {
	return s.idx.lookupHashed(&s.arena, parent, name, h)
}

// PrefetchHome starts loading the child index slot where the lookup of hash h begins, for a
// lookup a few rows later.
func (s *Store) PrefetchHome(h uint64) { s.idx.prefetchHome(h) }

// Indexed returns how many nodes the child index holds (every live node but the roots).
func (s *Store) Indexed() int { return s.idx.count }

// NameHead returns the first node of name's chain (0: no node has that name); the others
// follow through Node.NextSame.
func (s *Store) NameHead(name string) uint32 { return s.byName.head(&s.arena, name) }

// NameHeads yields the first node of every name's chain, one per distinct name.
func (s *Store) NameHeads(yield func(uint32) bool) { s.byName.heads(yield) }

// DistinctNames returns how many distinct names the non-root nodes have.
func (s *Store) DistinctNames() int { return s.byName.count }

// Each calls f for every live node in id order, reading the chunks sequentially.
func (s *Store) Each(f func(id uint32, n *Node)) { s.each(f) }

// ClearFlag clears flag on every node, reading the chunks sequentially.
func (s *Store) ClearFlag(flag uint16) { s.clearFlag(flag) }

// Compact rewrites the name arenas when deleted names outweigh live ones, so churn cannot
// grow memory without bound; it invalidates the slices Name returned.
func (s *Store) Compact() { s.compact() }

// Allocated returns the largest id ever allocated (freed ids are reused before new ones).
func (s *Store) Allocated() uint32 { return s.next - 1 }

// Memory estimates the bytes the store holds.
func (s *Store) Memory() uint64 { return s.arena.memory() + s.idx.memory() + s.byName.memory() }
