package fs

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/fustor/fustor/sdk/fspath"
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
	n := v.a.get(id)
	e := Entry{Path: p, IsDir: n.isDir(), Size: uint64(n.size), MtimeNs: n.mtime, LastUpdatedAtNs: n.lastUpdated,
		Suspect: n.flags&flagSuspect != 0, KnownByAgent: n.flags&flagKnown != 0, AuditSkipped: n.flags&flagAuditSkipped != 0}
	if id != v.root {
		e.Name = v.a.nameString(n)
	}
	if e.IsDir {
		e.ChildCount = int(v.dirs[id].children)
	}
	return e
}

// sortedChildren returns a directory's children ordered by name.
func (v *View) sortedChildren(dir uint32) []uint32 {
	out := make([]uint32, 0, v.dirs[dir].children)
	for ch := v.a.get(dir).firstChild; ch != 0; ch = v.a.get(ch).nextSib {
		out = append(out, ch)
	}
	slices.SortFunc(out, func(x, y uint32) int { return bytes.Compare(v.a.name(v.a.get(x)), v.a.name(v.a.get(y))) })
	return out
}

// walker visits a subtree depth-first, children sorted by name, optionally resuming after a
// path (paging) without visiting what comes before it.
type walker struct {
	v        *View
	maxDepth int
	fn       func(id uint32, p string) bool
}

// walk visits the children of dir (at depth 1..maxDepth). after holds the remaining parts of
// the resume path below dir; entries up to and including it are skipped.
func (w *walker) walk(dir uint32, prefix string, depth int, after []string) bool {
	for _, ch := range w.v.sortedChildren(dir) {
		n := w.v.a.get(ch)
		name := w.v.a.nameString(n)
		p := fspath.Join(prefix, name)
		var sub []string
		if len(after) > 0 {
			switch c := strings.Compare(name, after[0]); {
			case c < 0:
				continue
			case c == 0:
				sub = after[1:]
				if len(sub) == 0 {
					// the resume point itself: skip it, continue with its subtree
					if n.isDir() && depth < w.maxDepth && !w.walk(ch, p, depth+1, nil) {
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
		if n.isDir() && depth < w.maxDepth && !w.walk(ch, p, depth+1, sub) {
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
	if !v.a.get(id).isDir() {
		return 0, fmt.Errorf("%w: %s", ErrNotDir, p)
	}
	return id, nil
}

// List returns up to limit entries below dir in depth-first order (children sorted by name),
// maxDepth levels deep (<= 1: direct children), starting after the path after. next is the
// last path returned when more remain, "" otherwise.
func (v *View) List(dir string, maxDepth int, after string, limit int) (entries []Entry, next string, err error) {
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
	more := false
	w := &walker{v: v, maxDepth: max(maxDepth, 1), fn: func(id uint32, p string) bool {
		if len(entries) == limit {
			more = true
			return false
		}
		entries = append(entries, v.entry(id, p))
		return true
	}}
	w.walk(id, dir, 1, resume)
	if more {
		next = entries[len(entries)-1].Path
	}
	return entries, next, nil
}

// Walk visits the subtree below root depth-first, sorted; maxDepth 0 is unlimited; fn returning
// false stops the walk. fn runs under the read lock and must not call the view.
func (v *View) Walk(root string, maxDepth int, fn func(Entry) bool) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.dir(root)
	if err != nil {
		return err
	}
	if maxDepth <= 0 {
		maxDepth = int(^uint(0) >> 1)
	}
	w := &walker{v: v, maxDepth: maxDepth, fn: func(id uint32, p string) bool { return fn(v.entry(id, p)) }}
	w.walk(id, root, 1, nil)
	return nil
}

// Matcher selects entries by basename.
type Matcher struct {
	Name, Glob          string
	DirsOnly, FilesOnly bool
}

func (m *Matcher) match(name []byte, dir bool) bool {
	if (m.DirsOnly && !dir) || (m.FilesOnly && dir) {
		return false
	}
	if m.Name != "" {
		return string(name) == m.Name
	}
	ok, _ := path.Match(m.Glob, string(name))
	return ok
}

// Find returns up to limit entries below root whose basename matches, sorted by path.
func (v *View) Find(root string, m Matcher, limit int) (entries []Entry, truncated bool, err error) {
	if m.Glob != "" {
		if _, err := path.Match(m.Glob, ""); err != nil {
			return nil, false, fmt.Errorf("%w: glob %q: %w", fspath.ErrInvalid, m.Glob, err)
		}
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	id, err := v.dir(root)
	if err != nil {
		return nil, false, err
	}
	if m.Name != "" {
		entries, truncated = v.findName(id, m, limit)
		return entries, truncated, nil
	}
	w := &walker{v: v, maxDepth: int(^uint(0) >> 1), fn: func(id uint32, p string) bool {
		n := v.a.get(id)
		if !m.match(v.a.name(n), n.isDir()) {
			return true
		}
		if len(entries) == limit {
			truncated = true
			return false
		}
		entries = append(entries, v.entry(id, p))
		return true
	}}
	w.walk(id, root, 1, nil)
	return entries, truncated, nil
}

// findName finds an exact basename with one child-index lookup per directory of the subtree
// instead of visiting every node: directories are a small fraction of a file tree.
func (v *View) findName(root uint32, m Matcher, limit int) ([]Entry, bool) {
	if fspath.ValidName(m.Name) != nil {
		return nil, false
	}
	type hit struct {
		id   uint32
		path string
	}
	var hits []hit
	for dir := range v.dirs {
		if !v.isWithin(dir, root) {
			continue
		}
		if id := v.idx.lookup(v.a, dir, m.Name); id != 0 && m.match(v.a.name(v.a.get(id)), v.a.get(id).isDir()) {
			hits = append(hits, hit{id, v.pathOf(id)})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int { return comparePaths(a.path, b.path) })
	truncated := len(hits) > limit
	if truncated {
		hits = hits[:limit]
	}
	entries := make([]Entry, len(hits))
	for i, h := range hits {
		entries[i] = v.entry(h.id, h.path)
	}
	return entries, truncated
}

// isWithin reports whether node id is root or below it.
func (v *View) isWithin(id, root uint32) bool {
	for ; id != 0; id = v.a.get(id).parent {
		if id == root {
			return true
		}
	}
	return false
}

// comparePaths orders paths as the tree walk does: component by component, i.e. as if "/"
// sorted before every other byte.
func comparePaths(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
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
	n := v.a.get(id)
	if !n.isDir() {
		return Stats{Files: 1, TotalSize: uint64(n.size), LatestMtimeNs: n.mtime}, nil
	}
	g := v.dirs[id]
	v.aggMu.Lock()
	m := v.maxMtimeLocked(id)
	v.aggMu.Unlock()
	return Stats{Files: uint64(g.files), Dirs: uint64(g.dirs), TotalSize: uint64(g.size), LatestMtimeNs: m}, nil
}
