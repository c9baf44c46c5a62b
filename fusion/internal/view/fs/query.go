package fs

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// Stat describes one path.
func (v *View) Stat(p string) (Entry, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.resolve(p)
	if err != nil {
		return Entry{}, err
	}
	if id == 0 {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	return v.entry(id, p), nil
}

func (v *View) entry(id uint32, p string) Entry {
	n := v.st.Get(id)
	e := Entry{Path: p, IsDir: n.IsDir(), Size: uint64(n.Size), MtimeNs: n.Mtime, LastUpdatedAtNs: n.LastUpdated,
		Suspect: n.Flags&store.FlagSuspect != 0, KnownByAgent: n.Flags&store.FlagKnown != 0, AuditSkipped: n.Flags&store.FlagAuditSkipped != 0}
	if id != v.root {
		e.Name = p[len(p)-int(n.NameLen()):] // p ends with the name: no copy of its own
	}
	if e.IsDir {
		e.ChildCount = int(v.dirs[id].children)
	}
	return e
}

// sortedChildren returns a directory's children ordered by name, from its cache or built and
// cached (readers racing here build equal slices). The slice is shared: callers must not
// modify it.
func (v *View) sortedChildren(dir uint32) []uint32 {
	cache := &v.dirs[dir].sorted
	if p := cache.Load(); p != nil {
		return *p
	}
	out := make([]uint32, 0, v.dirs[dir].children)
	for ch := v.st.Get(dir).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
		out = append(out, ch)
	}
	v.sortByName(out)
	cache.Store(&out)
	return out
}

func (v *View) sortByName(ids []uint32) {
	slices.SortFunc(ids, func(x, y uint32) int { return bytes.Compare(v.st.Name(v.st.Get(x)), v.st.Name(v.st.Get(y))) })
}

// subdirList is a directory's subdirectories ordered by name, their names copied side by side:
// an ordered find reads them from one place instead of from each child's node and name, two
// cache misses per subdirectory that were a third of a large find's time.
type subdirList struct {
	ids []uint32
	// aggs[i] is ids[i]'s aggregate, fixed for the life of its node; removing the node drops
	// this list with the parent's other caches.
	aggs  []*dirAgg
	ends  []uint32 // ids[i]'s name is names[ends[i-1]:ends[i]]
	names []byte
}

func (l *subdirList) name(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = l.ends[i-1]
	}
	return l.names[start:l.ends[i]]
}

// subdirs returns dir's subdirList (g is its aggregate), from its cache or built and cached
// like sortedChildren's.
func (v *View) subdirs(g *dirAgg, dir uint32) *subdirList {
	if p := g.sortedDirs.Load(); p != nil {
		return p
	}
	l := &subdirList{ids: make([]uint32, 0, g.dirs)}
	for ch := v.st.Get(dir).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
		if v.st.Get(ch).IsDir() {
			l.ids = append(l.ids, ch)
		}
	}
	v.sortByName(l.ids)
	l.ends, l.aggs = make([]uint32, len(l.ids)), make([]*dirAgg, len(l.ids))
	for i, id := range l.ids {
		l.names = append(l.names, v.st.Name(v.st.Get(id))...)
		l.ends[i] = uint32(len(l.names))
		l.aggs[i] = v.dirs[id]
	}
	g.sortedDirs.Store(l)
	return l
}

// pathBuf hands out path strings carved from shared chunks, so a listing allocates per chunk
// rather than per entry. A chunk is only ever appended to, never reallocated, so the strings
// already handed out stay valid.
type pathBuf struct{ chunk []byte }

func (b *pathBuf) join(prefix string, name []byte) string {
	if prefix == fspath.Root {
		prefix = ""
	}
	start := b.reserve(len(prefix) + 1 + len(name))
	b.chunk = append(append(append(b.chunk, prefix...), '/'), name...)
	return unsafe.String(&b.chunk[start], len(b.chunk)-start)
}

// copy returns p as a string carved from the chunks.
func (b *pathBuf) copy(p []byte) string {
	start := b.reserve(len(p))
	b.chunk = append(b.chunk, p...)
	return unsafe.String(&b.chunk[start], len(p))
}

// reserve makes room for n bytes and returns where they will start.
func (b *pathBuf) reserve(n int) int {
	if cap(b.chunk)-len(b.chunk) < n {
		// Chunks double from 256 bytes to 16 KiB: a one-match answer stays small.
		b.chunk = make([]byte, 0, max(n, min(16<<10, max(256, 2*cap(b.chunk)))))
	}
	return len(b.chunk)
}

// walker visits a subtree depth-first, children sorted by name, optionally resuming after a
// path (paging) without visiting what comes before it.
type walker struct {
	v        *View
	paths    pathBuf
	maxDepth int
	fn       func(id uint32, p string) bool
	w        *work
}

// walk visits the children of dir (at depth 1..maxDepth). after holds the remaining parts of
// the resume path below dir; entries up to and including it are skipped.
func (w *walker) walk(dir uint32, prefix string, depth int, after []string) bool {
	for _, ch := range w.v.sortedChildren(dir) {
		if !w.w.tick() {
			return false
		}
		n := w.v.st.Get(ch)
		p := w.paths.join(prefix, w.v.st.Name(n))
		name := p[len(p)-int(n.NameLen()):]
		var sub []string
		if len(after) > 0 {
			switch c := strings.Compare(name, after[0]); {
			case c < 0:
				continue
			case c == 0:
				sub = after[1:]
				if len(sub) == 0 {
					// the resume point itself: skip it, continue with its subtree
					if n.IsDir() && depth < w.maxDepth && !w.walk(ch, p, depth+1, nil) {
						return false
					}
					after = nil
					continue
				}
			}
			after = nil
		}
		if sub == nil {
			if !w.fn(ch, p) {
				return false
			}
		}
		if n.IsDir() && depth < w.maxDepth && !w.walk(ch, p, depth+1, sub) {
			return false
		}
	}
	return true
}

func (v *View) dir(p string) (uint32, error) {
	id, err := v.resolve(p)
	if err != nil {
		return 0, err
	}
	if id == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	if !v.st.Get(id).IsDir() {
		return 0, fmt.Errorf("%w: %s", ErrNotDir, p)
	}
	return id, nil
}

// List returns up to limit entries below dir in depth-first order (children sorted by name),
// maxDepth levels deep (<= 1: direct children), starting after the path after. next is the
// last path returned when more remain, "" otherwise. A cancelled ctx stops the walk.
func (v *View) List(ctx context.Context, dir string, maxDepth int, after string, limit Limit) (entries []Entry, next string, err error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.dir(dir)
	if err != nil {
		return nil, "", err
	}
	var resume []string
	if after != "" {
		if !fspath.IsWithin(after, dir) || after == dir {
			return nil, "", fmt.Errorf("%w: page token %q is not below %q", fspath.ErrInvalid, after, dir)
		}
		rel := strings.TrimPrefix(after, dir)
		resume = strings.Split(strings.TrimPrefix(rel, "/"), "/")
	}
	more, used := false, 0
	if maxDepth <= 1 && limit.Entries > 0 {
		entries = make([]Entry, 0, min(limit.Entries, int(v.dirs[id].children)))
	}
	w := &walker{v: v, maxDepth: max(maxDepth, 1), w: v.work(ctx), fn: func(id uint32, p string) bool {
		e := v.entry(id, p)
		c := EntryBytes(len(e.Path), len(e.Name))
		if !limit.Fits(len(entries), used, c) {
			more = true
			return false
		}
		entries, used = append(entries, e), used+c
		return true
	}}
	w.walk(id, dir, 1, resume)
	if err := w.w.done(); err != nil {
		return nil, "", err
	}
	if more && len(entries) > 0 {
		next = entries[len(entries)-1].Path
	}
	return entries, next, nil
}

// Walk visits the subtree below root depth-first, sorted; maxDepth 0 is unlimited; fn returning
// false stops the walk. fn runs under the read lock and must not call the view.
func (v *View) Walk(ctx context.Context, root string, maxDepth int, fn func(Entry) bool) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.dir(root)
	if err != nil {
		return err
	}
	if maxDepth <= 0 {
		maxDepth = int(^uint(0) >> 1)
	}
	w := &walker{v: v, maxDepth: maxDepth, w: v.work(ctx), fn: func(id uint32, p string) bool { return fn(v.entry(id, p)) }}
	w.walk(id, root, 1, nil)
	return w.w.done()
}

// isWithin reports whether node id is root or below it.
func (v *View) isWithin(id, root uint32) bool {
	for ; id != 0; id = v.st.Get(id).Parent {
		if id == root {
			return true
		}
	}
	return false
}

// Stats returns the aggregates of the subtree at p (a file counts itself).
func (v *View) Stats(p string) (Stats, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.resolve(p)
	if err != nil {
		return Stats{}, err
	}
	if id == 0 {
		return Stats{}, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	n := v.st.Get(id)
	if !n.IsDir() {
		return Stats{Files: 1, TotalSize: uint64(n.Size), LatestMtimeNs: n.Mtime}, nil
	}
	g := v.dirs[id]
	v.aggMu.Lock()
	m := v.maxMtimeLocked(id)
	v.aggMu.Unlock()
	return Stats{Files: uint64(g.files), Dirs: uint64(g.dirs), TotalSize: uint64(g.size), LatestMtimeNs: m}, nil
}
