//go:build linux && !fustor_fsnotify

package fs

import (
	"container/list"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fustor/fustor/agent/internal/eventtime"
	"github.com/fustor/fustor/sdk/fspath"
)

// The watch budget (DESIGN.md §4.3 "hot watch set"): watches cost kernel memory, so at most
// budget directories are watched, the most recently active first. Activity is drift-normalised
// time: a directory's mtime turned into agent time at the pre-scan, then the agent time of the
// last event seen in it. A new directory takes the watch of the least recently active one
// (LRU); a kernel refusal (ENOSPC) lowers the budget to what the kernel gave. Directories
// without a watch are left to audit, which reports what changed in them as blind spots.

// watchLRU orders watched directories (never the root) by activity, most recent in front.
type watchLRU struct {
	l list.List
	m map[int]*list.Element // wd → element holding *lruEntry
}

type lruEntry struct {
	wd int
	at int64 // agent time, ns
}

func (u *watchLRU) init() { u.m = map[int]*list.Element{} }

func (u *watchLRU) add(wd int, at int64) {
	if e, ok := u.m[wd]; ok {
		e.Value.(*lruEntry).at = at
		u.l.MoveToFront(e)
		return
	}
	u.m[wd] = u.l.PushFront(&lruEntry{wd: wd, at: at})
}

// touch records activity in wd; unknown descriptors (the root) are ignored.
func (u *watchLRU) touch(wd int, at int64) {
	if e, ok := u.m[wd]; ok {
		e.Value.(*lruEntry).at = at
		u.l.MoveToFront(e)
	}
}

func (u *watchLRU) remove(wd int) {
	if e, ok := u.m[wd]; ok {
		u.l.Remove(e)
		delete(u.m, wd)
	}
}

func (u *watchLRU) at(wd int) (int64, bool) {
	if e, ok := u.m[wd]; ok {
		return e.Value.(*lruEntry).at, true
	}
	return 0, false
}

// oldest returns the least recently active watched directory.
func (u *watchLRU) oldest() (int, bool) {
	if e := u.l.Back(); e != nil {
		return e.Value.(*lruEntry).wd, true
	}
	return 0, false
}

// dirSeen is a directory met by a tree walk of the watcher, with or without a watch.
type dirSeen struct {
	rel     string
	mtimeNs int64
	wd      int // -1: not watched
}

// atBudget reports whether a further watch would exceed the budget.
func (w *inotify) atBudget() bool { return w.budget > 0 && len(w.wds) >= w.budget }

// evictOldest removes the watch of the least recently active directory.
func (w *inotify) evictOldest() bool {
	wd, ok := w.lru.oldest()
	if !ok {
		return false
	}
	w.s.log.Debug("watch evicted", zap.String("path", w.wds[wd]))
	w.unbind(wd, true)
	w.s.c.watchesEvicted.Add(1)
	w.s.c.leftToAudit.Add(1)
	return true
}

// lowerBudget answers ENOSPC: the kernel's limit is below ours, so ours becomes what it gave.
func (w *inotify) lowerBudget(rel string, err error) {
	w.s.c.watchNoSpace.Add(1)
	n := max(len(w.wds), 1)
	if w.budget != 0 && n >= w.budget {
		return
	}
	w.budget = n
	w.s.c.watchBudget.Store(int64(n))
	w.s.c.budgetLowered.Add(1)
	w.s.log.Warn("inotify watch limit reached; watch budget lowered, the least recently active directories are left to audit",
		zap.String("path", rel), zap.Int("budget", n), zap.Error(err))
}

// rebalance runs after a walk of the whole tree (pre-scan, rewatch after an overflow): it
// estimates the drift from the directory mtimes at the first one, then gives the budget's
// watches to the most recently active directories and orders the LRU by activity.
func (w *inotify) rebalance(seen []dirSeen, first bool) {
	clock := w.s.cfg.Clock
	if first && !clock.Estimated() {
		mt := make([]int64, len(seen))
		for i, d := range seen {
			mt[i] = d.mtimeNs
		}
		d := eventtime.EstimateDrift(mt, clock.Wall())
		clock.SetDrift(d)
		w.s.log.Info("clock drift estimated", zap.Duration("drift", d), zap.Int("directories", len(seen)))
	}
	type ranked struct {
		dirSeen
		at int64
	}
	rs := make([]ranked, 0, len(seen))
	for _, d := range seen {
		if d.rel == fspath.Root {
			continue
		}
		at := clock.Normalize(d.mtimeNs)
		if d.wd >= 0 {
			if la, ok := w.lru.at(d.wd); ok {
				at = max(at, la)
			}
		}
		rs = append(rs, ranked{d, at})
	}
	slices.SortFunc(rs, func(a, b ranked) int { return -cmpInt64(a.at, b.at) })
	keep := len(rs)
	if w.budget > 0 {
		keep = min(keep, max(w.budget-1, 0)) // the root always holds one watch
	}
	unwatched := 0
	for _, r := range rs[keep:] {
		if r.wd >= 0 {
			w.unbind(r.wd, true)
			w.s.c.watchesEvicted.Add(1)
		}
		unwatched++
	}
	for i := range rs[:keep] {
		r := &rs[i]
		if r.wd < 0 {
			if r.wd = w.addDirWatch(r.rel, false); r.wd < 0 {
				unwatched++
			}
		}
	}
	w.s.c.leftToAudit.Store(uint64(unwatched))
	// Oldest first, each pushed to the front: the most recently active ends in front.
	for i := keep - 1; i >= 0; i-- {
		if rs[i].wd >= 0 {
			w.lru.add(rs[i].wd, rs[i].at)
		}
	}
	if unwatched > 0 {
		w.s.log.Info("watch budget: directories left to audit", zap.Int("budget", w.budget),
			zap.Int("watches", len(w.wds)), zap.Int("unwatched", unwatched))
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// addDirWatch adds a watch on rel within the budget, evicting the least recently active
// directory when evict is set and the budget is spent. It returns the descriptor, or -1. A
// directory watched by a walk has no activity yet (rebalance ranks it by its mtime); one that
// just appeared is active now.
func (w *inotify) addDirWatch(rel string, evict bool) int {
	for attempt := 0; attempt < 2; attempt++ {
		if w.atBudget() && (!evict || !w.evictOldest()) {
			return -1
		}
		wd, err := w.addWatch(w.fd, w.s.abs(rel), watchMask)
		if err == nil {
			w.bind(wd, rel)
			at := int64(0)
			if evict {
				at = time.Now().UnixNano()
			}
			w.lru.add(wd, at)
			return wd
		}
		if !errors.Is(err, unix.ENOSPC) {
			w.watchFailed(rel, err)
			return -1
		}
		w.lowerBudget(rel, err)
	}
	return -1
}
