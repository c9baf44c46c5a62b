package fs

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"unsafe"

	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// matchName reports whether m selects the node named name.
func matchName(m *Matcher, name []byte, dir bool) bool {
	if !matchType(m, dir) {
		return false
	}
	if m.Name != "" {
		return string(name) == m.Name
	}
	// The name is only read during the call (the view's read lock is held): no copy.
	ok, _ := path.Match(m.Glob, unsafe.String(unsafe.SliceData(name), len(name)))
	return ok
}

// matchType applies DirsOnly and FilesOnly alone.
func matchType(m *Matcher, dir bool) bool { return !(m.DirsOnly && !dir) && !(m.FilesOnly && dir) }

// Find returns the entries below root whose basename matches, sorted by path, up to limit; a
// cancelled ctx stops the walk (its error is returned).
func (v *View) Find(ctx context.Context, root string, m Matcher, limit Limit) (entries []Entry, truncated bool, err error) {
	var paths pathBuf
	truncated, err = v.find(ctx, root, m, &findSink{limit: limit, cost: entryCost, add: func(id uint32, p []byte) {
		entries = append(entries, v.entry(id, paths.copy(p)))
	}})
	if err != nil {
		return nil, false, err
	}
	return entries, truncated, nil
}

// entryCost is what an Entry answer spends on a match at path p (EntryBytes).
func entryCost(p []byte) int { return EntryBytes(len(p), len(p)-bytes.LastIndexByte(p, '/')-1) }

// packedCost is what a packed answer spends on a match at path p: the path, its NUL and at
// most a directory index.
func packedCost(p []byte) int { return len(p) + 1 + 5 }

// FindPaths is Find answering only paths: each NUL-ended in packed (names never hold a NUL),
// in the same order, and dirs the positions of the directories among them. A large answer
// costs one growing byte slice instead of an Entry and a string per match.
func (v *View) FindPaths(ctx context.Context, root string, m Matcher, limit Limit) (packed []byte, dirs []uint32, truncated bool, err error) {
	n, expected := uint32(0), 0
	add := func(dir bool, p []byte) {
		if dir {
			dirs = append(dirs, n)
		}
		if cap(packed)-len(packed) < len(p)+1 {
			// Sized once from the first path when the count is known (paths below one root are
			// mostly alike in length), else doubling rather than append's 1.25×: fresh memory
			// is most of a large answer's cost.
			grow := max(len(p)+1, cap(packed), 4<<10)
			if n == 0 && expected > 0 {
				grow = expected * (len(p) + 1) * 9 / 8
				if limit.Bytes > 0 {
					grow = min(grow, limit.Bytes)
				}
			}
			packed = slices.Grow(packed, grow)
		}
		packed = append(append(packed, p...), 0)
		n++
	}
	truncated, err = v.find(ctx, root, m, &findSink{limit: limit, cost: packedCost,
		expect:   func(k int) { expected = k },
		add:      func(id uint32, p []byte) { add(v.st.Get(id).IsDir(), p) },
		addTyped: func(_ uint32, dir bool, p []byte) { add(dir, p) },
	})
	if err != nil {
		return nil, nil, false, err
	}
	return packed, dirs, truncated, nil
}

// findSink receives a find's matches in path order: add with each, its path valid only
// during the call; expect, when set, first with how many will come at most, when known.
// addTyped, when set, takes the matches whose finder already knows whether they are
// directories: a complete answer's 4,000 matches are otherwise 4,000 more cache misses to
// learn it (a fifth of the walk's cost, BenchmarkFind/…_complete_paths). The sink keeps the
// answer within limit: emit refuses a match beyond it, in entries or in bytes (cost each).
type findSink struct {
	add      func(id uint32, path []byte)
	addTyped func(id uint32, dir bool, path []byte)
	expect   func(n int)
	limit    Limit
	cost     func(path []byte) int
	n, used  int
}

// A finder's pending match ids may carry kindKnown, and kindDir for a directory, above the
// id's bits (ids fit in store.IDBits); emit passes them on as addTyped's dir.
const (
	kindKnown = 1 << 31
	kindDir   = 1 << 30
)

// emit adds a match, or returns false when the answer is full (the find is truncated).
func (s *findSink) emit(id uint32, path []byte) bool {
	c := 0
	if s.limit.Bytes > 0 {
		c = s.cost(path)
	}
	if !s.limit.Fits(s.n, s.used, c) {
		return false
	}
	s.n, s.used = s.n+1, s.used+c
	if id&kindKnown != 0 && s.addTyped != nil {
		s.addTyped(id&store.IDMask, id&kindDir != 0, path)
		return true
	}
	s.add(id&store.IDMask, path)
	return true
}

func (s *findSink) hint(n int) {
	if s.expect != nil {
		s.expect(n)
	}
}

func (v *View) find(ctx context.Context, root string, m Matcher, sink *findSink) (truncated bool, err error) {
	if m.Glob != "" {
		if _, err := path.Match(m.Glob, ""); err != nil {
			return false, fmt.Errorf("%w: glob %q: %w", fspath.ErrInvalid, m.Glob, err)
		}
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.dir(root)
	if err != nil {
		return false, err
	}
	w := v.work(ctx)
	truncated = v.findDFS(id, m, sink, w)
	return truncated, w.done()
}

// findDFS finds entries by basename without building a path or sorting a listing for every
// node. An exact name is answered from its name chain (findByName) unless the chain is too
// long to read whole, and a glob from the name table when that is smaller than the walk
// (globByNames) and few match; otherwise each directory is asked for its matching children
// (an exact name is one child-index lookup; a glob scans the children unsorted, literal prefix
// and suffix first). Few matches are sorted by path; many are taken by orderedFind, which
// stops at limit.
func (v *View) findDFS(root uint32, m Matcher, sink *findSink, w *work) (truncated bool) {
	if m.Name != "" && fspath.ValidName(m.Name) != nil {
		return false
	}
	limit := sink.limit.Entries
	if m.Name != "" {
		if truncated, ok := v.findByName(root, m, sink, w); ok || w.err != nil {
			return truncated
		}
	}
	pre, suf := globLiterals(m.Glob)
	const sortFew = 256
	if m.Glob != "" && !v.walkGlobs {
		if found, ok := v.globByNames(root, m, pre, suf, min(limit, sortFew), w); ok || w.err != nil {
			return w.err == nil && v.emitSorted(found, sink)
		}
	}
	var hits []uint32
	hitsIn := func(dir uint32) []uint32 {
		hits = hits[:0]
		if m.Name != "" {
			if id := v.st.Lookup(dir, m.Name); id != 0 {
				if n := v.st.Get(id); matchName(&m, v.st.Name(n), n.IsDir()) {
					hits = append(hits, id)
				}
			}
			return hits
		}
		if len(pre) > 0 && !v.mayHoldPrefix(dir, pre) {
			return hits
		}
		for ch := v.st.Get(dir).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			n := v.st.Get(ch)
			name := v.st.Name(n)
			if !bytes.HasPrefix(name, pre) || !bytes.HasSuffix(name, suf) || !matchName(&m, name, n.IsDir()) {
				continue
			}
			hits = append(hits, ch)
		}
		if len(hits) > 1 {
			slices.SortFunc(hits, func(x, y uint32) int { return bytes.Compare(v.st.Name(v.st.Get(x)), v.st.Name(v.st.Get(y))) })
		}
		return hits
	}
	// First, unordered: every directory of the subtree asked once, no listing sorted. When the
	// matches are few (the common case: a name or prefix that is rare), only they get paths and
	// are sorted; when they are many, the ordered walk below builds their paths incrementally
	// and stops at the limit.
	var found []uint32
	fits := true
	v.eachDir(root, func(dir uint32) bool {
		if !w.tick() {
			return false
		}
		if found = append(found, hitsIn(dir)...); len(found) > min(limit, sortFew) {
			fits = false
		}
		return fits
	})
	if w.err != nil {
		return false
	}
	if fits {
		return v.emitSorted(found, sink)
	}

	return v.orderedFind(root, nil, func(dst []uint32, dir uint32) []uint32 { return append(dst, hitsIn(dir)...) },
		func(uint32) bool { return true }, sink, w)
}

// eachDir calls fn with root and every directory below it until fn returns false. The whole
// view is its directory table; a subtree is walked down its subdirectory lists, so a find
// under a subtree costs the subtree, not the view.
func (v *View) eachDir(root uint32, fn func(dir uint32) bool) {
	if root == v.root {
		for dir := range v.dirs {
			if !fn(dir) {
				return
			}
		}
		return
	}
	stack := []uint32{root}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !fn(dir) {
			return
		}
		if g := v.dirs[dir]; g.dirs > 0 {
			stack = append(stack, v.subdirs(g, dir).ids...)
		}
	}
}

// emitSorted emits a few matches (found holds them all) in path order; it returns whether
// the answer's limit cut them.
func (v *View) emitSorted(found []uint32, sink *findSink) (truncated bool) {
	type hit struct {
		id   uint32
		path string
	}
	hs := make([]hit, len(found))
	for i, id := range found {
		hs[i] = hit{id, v.pathOf(id)}
	}
	slices.SortFunc(hs, func(a, b hit) int { return fspath.Compare(a.path, b.path) })
	sink.hint(len(hs))
	for _, h := range hs {
		if !sink.emit(h.id, unsafe.Slice(unsafe.StringData(h.path), len(h.path))) {
			return true
		}
	}
	return false
}

// globByNames answers a glob from the name table when that is the smaller thing to read: each
// distinct name is read once and only the matching names' chains are followed, instead of
// asking every directory of the subtree (and, without a literal prefix to rule directories
// out, reading every name in it). Repeated file names, as instruments write data_0001.dat into
// every run's directory, keep the table small; where names are mostly unique it is as large as
// the tree and the directory walk answers. ok is false when the table is the larger or its
// chains run past that budget, or when more than most nodes match (the ordered walk then stops
// at the limit instead).
func (v *View) globByNames(root uint32, m Matcher, pre, suf []byte, most int, w *work) (found []uint32, ok bool) {
	// The walk's cost: with a literal prefix, the subtree's directories (most ruled out by
	// their name range); without, every node of the subtree.
	g := v.dirs[root]
	budget := int(g.dirs) + 1
	if len(pre) == 0 {
		budget = int(g.files + g.dirs)
	}
	if v.st.DistinctNames() > budget {
		return nil, false
	}
	visits := 0
	for head := range v.st.NameHeads {
		if !w.tick() {
			return nil, false
		}
		name := v.st.Name(v.st.Get(head))
		if !bytes.HasPrefix(name, pre) || !bytes.HasSuffix(name, suf) {
			continue
		}
		if ok, _ := path.Match(m.Glob, unsafe.String(unsafe.SliceData(name), len(name))); !ok {
			continue
		}
		for id := head; id != 0; id = v.st.Get(id).NextSame() {
			if visits++; visits > budget {
				return nil, false
			}
			n := v.st.Get(id)
			if id == root || !matchType(&m, n.IsDir()) || (root != v.root && !v.isWithin(id, root)) {
				continue
			}
			if len(found) == most {
				return nil, false
			}
			found = append(found, id)
		}
	}
	return found, true
}

// orderedFind emits matches below root in the order List and Walk use, stopping at limit:
// hits appends a directory's matches sorted by name, and the walk descends only into the
// subdirectories descend accepts. Paths are built incrementally; a directory without
// subdirectories (its aggregate says so) is never scanned for them. name, when not nil, is
// every match's name (an exact-name find), so no match's node or name is read for it.
func (v *View) orderedFind(root uint32, name []byte, hits func(dst []uint32, dir uint32) []uint32, descend func(sub uint32) bool, sink *findSink, w *work) (truncated bool) {
	nameOf := func(id uint32) []byte {
		if name != nil {
			return name
		}
		return v.st.Name(v.st.Get(id & store.IDMask))
	}
	buf := make([]byte, 0, 256)
	if root != v.root {
		buf = append(buf, v.pathOf(root)...)
	}
	// Every directory on the way down keeps its pending matches on one stack; a deeper
	// directory's appends may move the stack, but never change what is below its own start.
	var stack []uint32
	var visit func(dir uint32, g *dirAgg) bool
	visit = func(dir uint32, g *dirAgg) bool {
		if !w.tick() {
			return false
		}
		base, start := len(buf), len(stack)
		defer func() { buf, stack = buf[:base], stack[:start] }()
		stack = hits(stack, dir)
		found := stack[start:]
		emit := func(id uint32) bool {
			buf = append(append(buf[:base], '/'), nameOf(id)...)
			if !sink.emit(id, buf) {
				truncated = true
				return false
			}
			return true
		}
		// The aggregate comes from the parent's subdirectory list, not a lookup in v.dirs: a
		// walk of the whole view visits every directory, and each lookup is a likely cache miss.
		if g.dirs > 0 {
			subs := v.subdirs(g, dir)
			for i, sub := range subs.ids {
				sn := subs.name(i)
				// Pre-order: matches named before sub, then sub itself if it matches, then its subtree.
				for len(found) > 0 && (found[0]&store.IDMask == sub || bytes.Compare(nameOf(found[0]), sn) < 0) {
					if !emit(found[0]) {
						return false
					}
					found = found[1:]
				}
				if !descend(sub) {
					continue
				}
				buf = append(append(buf[:base], '/'), sn...)
				if !visit(sub, subs.aggs[i]) {
					return false
				}
			}
		}
		for _, id := range found {
			if !emit(id) {
				return false
			}
		}
		return true
	}
	visit(root, v.dirs[root])
	return truncated
}

// nameChainVisits bounds the nodes findByName reads on a name's chain before it leaves the
// answer to the ordered walk, which stops at the limit: a name carried by millions of nodes
// must not be collected whole to return its first thousand.
const nameChainVisits = 1 << 17

// nameSortMax is the most matches findByName sorts by path; past it the matches are emitted by
// a walk of only the directories that hold them (sorted children cached), which stops at the
// limit and makes no child-index lookup.
const nameSortMax = 1024

// findByName answers an exact-name find from the name's chain: its nodes below root, in path
// order. ok is false when the chain is too long to read whole: the ordered walk of every
// directory then answers, stopping at the limit.
func (v *View) findByName(root uint32, m Matcher, sink *findSink, w *work) (truncated, ok bool) {
	return v.findNamed(root, m, nameSortMax, sink, w)
}

// findNamed is findByName with the most matches it sorts by path; more are ordered by
// walkToMatches. Tests pass a small sortMax to run both ways on small trees.
func (v *View) findNamed(root uint32, m Matcher, sortMax int, sink *findSink, w *work) (truncated, ok bool) {
	var found []uint32
	visits := 0
	for id := v.st.NameHead(m.Name); id != 0; id = v.st.Get(id).NextSame() {
		if visits++; visits > nameChainVisits || !w.tick() {
			return false, false
		}
		// Every node on the chain carries the name (the table compares names, not hashes):
		// only the type filter is left to check, and the matches' names are never read.
		n := v.st.Get(id)
		if id != root && matchType(&m, n.IsDir()) && (root == v.root || v.isWithin(id, root)) {
			found = append(found, id)
		}
	}
	if len(found) > sortMax {
		return v.walkToMatches(root, found, []byte(m.Name), sink, w), true
	}
	// Sort keys are the paths with "/" as NUL (names never hold one), so a plain byte compare
	// orders them as the walk does.
	type hit struct {
		id  uint32
		key string
	}
	var keys pathBuf
	var buf []byte
	hs := make([]hit, len(found))
	for i, id := range found {
		buf = swapByte(v.appendPath(buf[:0], id), '/', 0)
		hs[i] = hit{id, keys.copy(buf)}
	}
	slices.SortFunc(hs, func(a, b hit) int { return strings.Compare(a.key, b.key) })
	sink.hint(min(len(hs), sink.limit.Entries))
	for _, h := range hs {
		buf = swapByte(append(buf[:0], h.key...), 0, '/')
		if !sink.emit(h.id, buf) {
			return true, true
		}
	}
	return false, true
}

// walkToMatches emits found, nodes of one name below root, in path order: a walk of the sorted
// subdirectories that descends only into directories holding a match below them, stopping at
// limit. It reads a few nodes per match instead of probing the child index of every directory
// of the subtree, which under concurrent queries was most of a large answer's cost.
// noMatch is walkToMatches' mark of a directory whose matches are further down.
const noMatch = ^uint32(0)

func (v *View) walkToMatches(root uint32, found []uint32, name []byte, sink *findSink, w *work) bool {
	// marks holds every directory on the way from root to a match: the match it holds (a name
	// is unique within a directory) or noMatch when the matches are further down.
	marks := v.marks.Get(len(found) + len(found)/2)
	defer v.marks.Put(marks)
	for _, id := range found {
		n := v.st.Get(id)
		d, hit := n.Parent, id|kindKnown
		if n.IsDir() {
			hit |= kindDir
		}
		marks.Put(d, hit)
		for d != root {
			if d = v.st.Get(d).Parent; d == 0 {
				break
			}
			if _, seen := marks.Get(d); seen {
				break
			}
			marks.Put(d, noMatch)
		}
	}
	sink.hint(min(sink.limit.Entries, len(found)))
	// The walk asks descend(sub) and then, on entering sub, hits(sub): the mark found for the
	// first answers the second without another lookup.
	var lastDir, lastHit uint32
	return v.orderedFind(root, name,
		func(dst []uint32, dir uint32) []uint32 {
			hit, ok := lastHit, dir == lastDir // ids start at 1: the zero lastDir matches none
			if !ok {
				hit, ok = marks.Get(dir)
			}
			if ok && hit != noMatch {
				dst = append(dst, hit)
			}
			return dst
		},
		func(sub uint32) bool {
			hit, ok := marks.Get(sub)
			if ok {
				lastDir, lastHit = sub, hit
			}
			return ok
		}, sink, w)
}

// swapByte replaces every from in b by to, in place.
func swapByte(b []byte, from, to byte) []byte {
	for i, c := range b {
		if c == from {
			b[i] = to
		}
	}
	return b
}

// mayHoldPrefix reports whether a child of dir can have a name starting with pre, from the
// directory's name range. Called under the read lock: a stale range is recomputed and stored
// atomically (readers racing here compute the same values).
func (v *View) mayHoldPrefix(dir uint32, pre []byte) bool {
	g := v.dirs[dir]
	if g.children == 0 {
		return false
	}
	if g.rangeStale.Load() {
		var mn, mx uint32
		for ch := v.st.Get(dir).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			nm := v.st.Name(v.st.Get(ch))
			if mn == 0 || bytes.Compare(nm, v.st.Name(v.st.Get(mn))) < 0 {
				mn = ch
			}
			if mx == 0 || bytes.Compare(nm, v.st.Name(v.st.Get(mx))) > 0 {
				mx = ch
			}
		}
		g.minName.Store(mn)
		g.maxName.Store(mx)
		g.rangeStale.Store(false)
	}
	lo, hi := v.st.Name(v.st.Get(g.minName.Load())), v.st.Name(v.st.Get(g.maxName.Load()))
	// Names with the prefix form one interval starting at pre; the directory's names lie in
	// [lo, hi]. They miss each other when hi < pre, or when lo > pre without starting with it.
	return bytes.Compare(hi, pre) >= 0 && (bytes.Compare(lo, pre) <= 0 || bytes.HasPrefix(lo, pre))
}

// globLiterals returns a glob's literal prefix and suffix: every match starts and ends with
// them, so most names are rejected without running the matcher. The suffix is kept only for
// globs without classes or escapes, where it is plainly literal.
func globLiterals(glob string) (prefix, suffix []byte) {
	if glob == "" {
		return nil, nil
	}
	i := strings.IndexAny(glob, `*?[\`)
	if i < 0 {
		return []byte(glob), []byte(glob)
	}
	prefix = []byte(glob[:i])
	if !strings.ContainsAny(glob, `[\`) {
		suffix = []byte(glob[strings.LastIndexAny(glob, "*?")+1:])
	}
	return prefix, suffix
}
