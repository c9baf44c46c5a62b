package source

import (
	"math"
	"sync"
)

// WalkStats counts what one walk saw.
type WalkStats struct {
	Dirs, Files uint64
	// Skipped counts entries left out because of a problem: permission, vanished between
	// listing and lstat, a name the wire cannot carry, a directory swapped for a symlink, an
	// I/O error. The source's counters have them by reason.
	Skipped uint64
	// Excluded counts entries hidden by the source's excludes (not a problem, so not in
	// Skipped).
	Excluded uint64
	// Silent counts directories an audit found unchanged (sent audit_skipped, files not sent).
	Silent uint64
	// Rolled counts directories an audit found unchanged but listed in full anyway, as a deep
	// audit or by the rolling verification (AuditOptions); not counted in Silent.
	Rolled uint64
	// Writing counts files a snapshot sent while the watcher saw a write to them without its
	// close (a writer holding it open, a truncate): sent flagged fsbatch.FlagPartialWrite, so
	// Fusion holds them suspect, rather than left out. A close-write that never comes, or
	// comes while no session is up, would otherwise keep them out of the view for good.
	Writing uint64
	// Deferred counts hot files a snapshot sent last, after re-checking them.
	Deferred uint64
}

// Add adds o's counts to w (a parallel walk sums its workers').
func (w *WalkStats) Add(o WalkStats) {
	w.Dirs += o.Dirs
	w.Files += o.Files
	w.Skipped += o.Skipped
	w.Excluded += o.Excluded
	w.Silent += o.Silent
	w.Rolled += o.Rolled
	w.Writing += o.Writing
	w.Deferred += o.Deferred
}

// AuditOptions say how far one audit looks past true silence (DESIGN.md §4.3). The zero value
// is pure true silence: every directory whose mtime is the cached one is skipped.
type AuditOptions struct {
	// Deep lists and stats every directory whatever the cache holds, and still refreshes the
	// cache. For a known loss of realtime events (the lost ones can be in-place writes, which
	// change no directory's mtime) and as every Nth audit.
	Deep bool
	// Share is the part of the silent directories an audit lists in full anyway, so that a
	// file rewritten in place (its directory's mtime unchanged) is found within a bounded
	// number of audits: directories fall into K = ceil(1/Share) buckets by a stable hash of
	// their path, and each audit rolls one bucket. 0 (or less) = none, 1 (or more) = all; the
	// share actually rolled is 1/K.
	Share float64
	// Cycle numbers the audit: cycle c rolls bucket c mod K, so K consecutive audits roll
	// every directory once.
	Cycle uint64
}

// MaxRollBuckets bounds K for a tiny Share: past it the conversion from float would overflow,
// and no tree is audited 4 billion times anyway.
const MaxRollBuckets = 1 << 32

// RollBuckets returns K, the number of audits over which Share re-lists every silent
// directory (0 = Share rolls none).
func (o AuditOptions) RollBuckets() uint64 {
	switch {
	case !(o.Share > 0): // NaN too
		return 0
	case o.Share >= 1:
		return 1
	}
	// The epsilon keeps 1/0.1 = 10.000000000000002 from becoming 11 buckets.
	k := math.Ceil(1/o.Share - 1e-9)
	if k >= MaxRollBuckets {
		return MaxRollBuckets
	}
	return uint64(k)
}

// AuditCache remembers each directory's mtime at the last audit that listed it. It belongs to
// the contract, not to a driver, because its lifetime is the pipe's: one per leadership, so a
// new cache (or Reset) makes the next audit a full one, as after a promotion. The driver reads
// and fills it during the walk. Safe for concurrent use.
//
// Each entry also notes the audit that last set it (Begin numbers them), so that after a
// completed audit Completed can tell the directories that audit saw from those it did not
// (gone, excluded, unreadable): only the former are worth keeping, and only a completed
// audit's view is worth saving — a failed one leaves entries of two audits mixed.
type AuditCache struct {
	mu  sync.Mutex
	m   map[string]auditEntry
	gen uint64
}

type auditEntry struct {
	mtime int64
	gen   uint64
}

// NewAuditCache returns an empty cache.
func NewAuditCache() *AuditCache { return &AuditCache{m: map[string]auditEntry{}} }

// NewAuditCacheFrom returns a cache holding dirs (path -> mtime), as Completed returned them:
// a cache saved by an earlier run of the agent.
func NewAuditCacheFrom(dirs map[string]int64) *AuditCache {
	c := &AuditCache{m: make(map[string]auditEntry, len(dirs))}
	for k, v := range dirs {
		c.m[k] = auditEntry{mtime: v}
	}
	return c
}

// Reset forgets every directory.
func (c *AuditCache) Reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// Len returns how many directories the cache holds.
func (c *AuditCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Silent reports whether the directory rel was last listed with this mtime: unchanged since.
func (c *AuditCache) Silent(rel string, mtime int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[rel]
	return ok && e.mtime == mtime
}

// Set records that the directory rel was listed (its rows handed on) with this mtime.
func (c *AuditCache) Set(rel string, mtime int64) {
	c.mu.Lock()
	c.m[rel] = auditEntry{mtime: mtime, gen: c.gen}
	c.mu.Unlock()
}

// Begin starts an audit: what Set records from now on belongs to it.
func (c *AuditCache) Begin() {
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
}

// Completed is called after the audit begun last completed: it drops the directories that
// audit did not set (a complete walk sets every directory it reaches, silent ones included, so
// these are gone, excluded or unreadable: forgetting them can only make a later audit list
// more) and returns a copy of what is left, path -> mtime, for saving.
func (c *AuditCache) Completed() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m))
	for k, e := range c.m {
		if e.gen != c.gen {
			delete(c.m, k)
			continue
		}
		out[k] = e.mtime
	}
	return out
}
