// Package fs is the fs view: an in-memory tree of one data set's files, applied from agents'
// rows and read by queries (DESIGN.md §5.3). Per-directory aggregates (file and dir counts,
// total size, latest mtime) are kept up to date on every change so subtree stats cost O(1).
//
// It is a view driver: *View implements view.Driver, its types are the contract's
// (view/viewapi, aliased in types.go) and its errors are of package errs' kinds. Only package
// view constructs it; the rest of Fusion reaches it through the interface.
package fs

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
	"github.com/fustor/fustor/sdk/clock"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// Errors returned by queries and rows; each is of an errs kind, which the server maps.
var (
	ErrNotFound = errs.New(errs.ErrNotFound, "path not found")
	ErrNotDir   = errs.ErrNotDir
	ErrFull     = errs.New(errs.ErrFull, "view is full")
)

// MaxIndexedNodes is the largest node id the child index can hold; views are capped below it.
const MaxIndexedNodes = store.MaxIndexedNodes

// Options configure a view.
type Options struct {
	Name string
	// MaxNodes bounds the nodes held; rows that would add more are rejected and counted.
	MaxNodes int
	// Now is the physical clock (nil = time.Now).
	Now func() time.Time
	// Mono is the monotonic clock in ns for suspect expiry (nil = time since New).
	Mono func() int64
	// HotThreshold is the age below which a scanned file is suspect (0 = 30 s).
	HotThreshold time.Duration
	// TombstoneTTL is how long tombstones are kept, purged at audit end (0 = 1 h).
	TombstoneTTL time.Duration
	// ClockWindow is the logical clock's sample window (0 = clock.DefaultWindow).
	ClockWindow int
	// ChangeLogEntries and ChangeLogBytes bound the change log (0 = DefaultChangeLogEntries,
	// DefaultChangeLogBytes).
	ChangeLogEntries, ChangeLogBytes int
}

// dirAgg is kept for directories only: they are a small fraction of the nodes.
type dirAgg struct {
	files, dirs, size int64
	maxMtime          int64
	children          int32
	dirty             bool // maxMtime must be recomputed (a max was removed or lowered)
	// minName and maxName are the children with the smallest and largest names (0: none), so
	// a glob's literal prefix can rule a whole directory out without reading its children.
	// Removing either only marks the range stale; the next query that needs it recomputes it
	// under the read lock, hence atomics (concurrent readers store the same values).
	minName, maxName atomic.Uint32
	rangeStale       atomic.Bool
	// sorted and sortedDirs cache the children (all, and the subdirectories with their names)
	// ordered by name for listings and ordered finds, which would otherwise sort them on every
	// query. Built by the first query that needs them (under the read lock, hence atomics),
	// dropped by any change to the directory's children. At most 4 bytes per child of a listed
	// directory, and 8 plus its name per subdirectory of a directory a find walked.
	sorted     atomic.Pointer[[]uint32]
	sortedDirs atomic.Pointer[subdirList]
}

// childrenChanged drops the sorted caches.
func (g *dirAgg) childrenChanged() {
	if g.sorted.Load() != nil {
		g.sorted.Store(nil)
	}
	if g.sortedDirs.Load() != nil {
		g.sortedDirs.Store(nil)
	}
}

// View is one fs view.
type View struct {
	log  *zap.Logger
	opts Options

	mu sync.RWMutex
	// st holds the nodes, their names, the child index and the by-name chains.
	st   *store.Store
	dirs map[uint32]*dirAgg
	root uint32
	size int // nodes, root excluded

	// aggMu serialises lazy max-mtime recomputation among readers (writers hold mu).
	aggMu sync.Mutex

	c     consistency
	clock *clock.Logical

	rejected uint64
	// dirTag keys the nodes remembered in the slots of stream directories (dirNode); it
	// changes whenever a directory leaves the view. lastDir is the last directory resolved:
	// consecutive rows mostly share it.
	dirTag    uint64
	lastDir   *fsbatch.Dir
	lastDirID uint32
	// chainDir's aggregates and its ancestors' (ancestors); 0 = none kept.
	chainDir uint32
	chain    []*dirAgg

	// marks pools walkToMatches' mark tables; concurrent finds each take their own.
	marks store.MarkPool

	// walkGlobs makes every glob find walk the directories (tests compare both plans).
	walkGlobs bool

	// visits counts the work of queries' walks (work.go).
	visits atomic.Uint64

	// chg is the change log (changes.go).
	chg changeLog

	// checkpointHook, when set (tests), is called under the read lock when a checkpoint's
	// last piece ends: the state the checkpoint stands for.
	checkpointHook func()
}

// New returns an empty view.
func New(log *zap.Logger, opts Options) *View {
	if log == nil {
		log = zap.NewNop()
	}
	opts.limits()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Mono == nil {
		start := time.Now()
		opts.Mono = func() int64 { return int64(time.Since(start)) }
	}
	v := &View{log: log, opts: opts, clock: clock.NewLogical(opts.Now, opts.ClockWindow)}
	v.init()
	return v
}

// limits fills the defaults of the options a reload may change.
func (o *Options) limits() {
	if o.MaxNodes <= 0 {
		o.MaxNodes = 100_000_000
	}
	// Node ids (the root's included) must fit an index slot.
	o.MaxNodes = min(o.MaxNodes, MaxIndexedNodes-1)
	if o.HotThreshold <= 0 {
		o.HotThreshold = 30 * time.Second
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = time.Hour
	}
	if o.ChangeLogEntries <= 0 {
		o.ChangeLogEntries = DefaultChangeLogEntries
	}
	if o.ChangeLogBytes <= 0 {
		o.ChangeLogBytes = DefaultChangeLogBytes
	}
}

// Configure takes new limits in place, keeping the tree: a view over its new node bound
// keeps its nodes and rejects rows that would add more.
func (v *View) Configure(maxNodes int, hotThreshold, tombstoneTTL time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.opts.MaxNodes, v.opts.HotThreshold, v.opts.TombstoneTTL = maxNodes, hotThreshold, tombstoneTTL
	v.opts.limits()
}

func (v *View) init() {
	v.st, v.dirs, v.size = store.New(), map[uint32]*dirAgg{}, 0
	v.root = v.st.Add(0, "", 0)
	v.st.Get(v.root).Flags |= store.FlagDir | store.FlagKnown
	v.dirs[v.root] = &dirAgg{}
	v.chainDir = 0
	v.dirsGone()
	v.c = newConsistency()
	v.chg.reset(v.opts.ChangeLogEntries, v.opts.ChangeLogBytes)
}

// Reset drops everything; the change log starts a new instance (watchers are told).
func (v *View) Reset() {
	v.mu.Lock()
	v.init()
	v.chg.changed = true
	v.notify()
	v.releaseHolds()
	v.mu.Unlock()
}

// Len returns the number of nodes, root excluded.
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.size
}

// Rejected returns how many rows were rejected since the view was created.
func (v *View) Rejected() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.rejected
}

// MemoryBytes estimates the heap held by the structure.
func (v *View) MemoryBytes() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.st.Memory() + uint64(len(v.dirs))*96
}

// insert creates a child node and updates the ancestors' aggregates; h is the key's index
// hash, v.st.HashString(parent, name), which the caller's lookup computed.
func (v *View) insert(parent uint32, name string, h uint64, dir bool, size, mtime int64, flags uint16) (uint32, error) {
	if v.size >= v.opts.MaxNodes {
		return 0, ErrFull
	}
	id := v.st.Add(parent, name, h)
	n := v.st.Get(id)
	n.Size, n.Mtime = size, mtime
	n.Flags |= flags
	if dir {
		n.Flags |= store.FlagDir
		n.Size = size
		v.dirs[id] = &dirAgg{}
	}
	p := v.st.Get(parent)
	if p.FirstChild != 0 {
		v.st.Get(p.FirstChild).PrevSib = id
		n.NextSib = p.FirstChild
	}
	p.FirstChild = id
	g := v.dirs[parent]
	g.children++
	g.childrenChanged()
	if !g.rangeStale.Load() {
		nm := v.st.Name(n)
		if mn := g.minName.Load(); mn == 0 || bytes.Compare(nm, v.st.Name(v.st.Get(mn))) < 0 {
			g.minName.Store(id)
		}
		if mx := g.maxName.Load(); mx == 0 || bytes.Compare(nm, v.st.Name(v.st.Get(mx))) > 0 {
			g.maxName.Store(id)
		}
	}
	v.size++
	var df, dd int64 = 1, 0
	if dir {
		df, dd, size = 0, 1, 0
	}
	v.propagate(parent, df, dd, size, mtime)
	v.recordID(ChangeCreated, id)
	return id, nil
}

// ancestors returns the aggregates of dir and of every directory above it. A snapshot or a
// burst of writes adds many files to one directory in a row, so the chain of the last
// directory is kept (v.chainDir); a removal, which can free directories, drops it.
func (v *View) ancestors(dir uint32) []*dirAgg {
	if dir != v.chainDir || dir == 0 {
		v.chain = v.chain[:0]
		for id := dir; id != 0; id = v.st.Get(id).Parent {
			v.chain = append(v.chain, v.dirs[id])
		}
		v.chainDir = dir
	}
	return v.chain
}

// propagate adds count and size deltas to every ancestor from dir up, and raises max mtimes.
func (v *View) propagate(dir uint32, files, dirs, size, mtime int64) {
	for _, g := range v.ancestors(dir) {
		g.files += files
		g.dirs += dirs
		g.size += size
		if mtime > g.maxMtime {
			g.maxMtime = mtime
		}
	}
}

// lowered marks ancestors dirty when a node holding mtime m left or got older: only those whose
// max could have come from it. An ancestor's max is never below a descendant's, so the walk
// stops at the first one above m; it must not stop at a dirty one, whose parent may still hold
// m as a clean maximum.
func (v *View) lowered(dir uint32, m int64) {
	for id := dir; id != 0; id = v.st.Get(id).Parent {
		g := v.dirs[id]
		if g.maxMtime > m {
			return
		}
		g.dirty = true
	}
}

// setFile updates a file's size and mtime.
func (v *View) setAttrs(id uint32, size, mtime int64) {
	n := v.st.Get(id)
	oldM := n.Mtime
	if size != n.Size || mtime != oldM {
		defer v.recordID(ChangeModified, id)
	}
	if !n.IsDir() && size != n.Size {
		v.propagate(n.Parent, 0, 0, size-n.Size, 0)
	}
	n.Size, n.Mtime = size, mtime
	if mtime > oldM {
		v.propagate(n.Parent, 0, 0, 0, mtime)
	} else if mtime < oldM {
		v.lowered(n.Parent, oldM)
	}
}

// remove deletes id and its subtree.
func (v *View) remove(id uint32) {
	v.recordID(ChangeDeleted, id)
	n := v.st.Get(id)
	parent, wasDir := n.Parent, n.IsDir()
	var files, dirs, size, maxM int64
	if wasDir {
		g := v.dirs[id]
		files, dirs, size = g.files, g.dirs+1, g.size
		maxM = max(n.Mtime, v.maxMtimeLocked(id))
	} else {
		files, size, maxM = 1, n.Size, n.Mtime
	}
	// unlink from the parent
	if n.PrevSib != 0 {
		v.st.Get(n.PrevSib).NextSib = n.NextSib
	} else {
		v.st.Get(parent).FirstChild = n.NextSib
	}
	if n.NextSib != 0 {
		v.st.Get(n.NextSib).PrevSib = n.PrevSib
	}
	g := v.dirs[parent]
	g.children--
	g.childrenChanged()
	if g.children == 0 {
		g.minName.Store(0)
		g.maxName.Store(0)
		g.rangeStale.Store(false)
	} else if g.minName.Load() == id || g.maxName.Load() == id {
		g.rangeStale.Store(true)
	}
	v.forgetFlagged(id)
	// free the subtree iteratively: deep trees must not overflow the stack. The kept ancestor
	// chain may hold directories freed here, whose ids can be reused.
	v.chainDir = 0
	stack := []uint32{id}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		c := v.st.Get(cur)
		for ch := c.FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			stack = append(stack, ch)
		}
		if c.IsDir() {
			delete(v.dirs, cur)
		}
		v.st.Remove(cur)
		v.size--
	}
	v.propagate(parent, -files, -dirs, -size, 0)
	v.lowered(parent, maxM)
	if wasDir {
		v.dirsGone()
	}
	v.st.Compact()
}

// forgetFlagged drops the side-table entries of nodes in the subtree of id (still linked).
func (v *View) forgetFlagged(id uint32) {
	if len(v.c.suspects) == 0 && len(v.c.additions) == 0 {
		return
	}
	stack := []uint32{id}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := v.st.Get(cur)
		if n.Flags&(store.FlagSuspect|store.FlagBlindAdd) != 0 {
			p := v.pathOf(cur)
			v.c.clearSuspect(p)
			delete(v.c.additions, p)
		}
		for ch := n.FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			stack = append(stack, ch)
		}
	}
}

// pathOf builds a node's path from its parent chain.
func (v *View) pathOf(id uint32) string {
	if id == v.root {
		return "/"
	}
	return string(v.appendPath(nil, id))
}

// appendPath appends the path of id (not the root) to b.
func (v *View) appendPath(b []byte, id uint32) []byte {
	var stack [32]uint32
	chain := stack[:0]
	for cur := id; cur != v.root && cur != 0; cur = v.st.Get(cur).Parent {
		chain = append(chain, cur)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		b = append(append(b, '/'), v.st.Name(v.st.Get(chain[i]))...)
	}
	return b
}

// maxMtimeLocked returns a directory's latest subtree mtime, recomputing dirty ones. Callers
// hold mu for writing, or for reading plus aggMu.
func (v *View) maxMtimeLocked(dir uint32) int64 {
	g := v.dirs[dir]
	if !g.dirty {
		return g.maxMtime
	}
	var m int64
	for ch := v.st.Get(dir).FirstChild; ch != 0; {
		c := v.st.Get(ch)
		m = max(m, c.Mtime)
		if c.IsDir() {
			m = max(m, v.maxMtimeLocked(ch))
		}
		ch = c.NextSib
	}
	g.maxMtime, g.dirty = m, false
	return m
}
