package fs

import (
	"context"
	"math"
	"sync"

	"github.com/fustor/fustor/sdk/fspath"
)

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

// maxRollBuckets bounds K for a tiny Share: past it the conversion from float would overflow,
// and no tree is audited 4 billion times anyway.
const maxRollBuckets = 1 << 32

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
	if k >= maxRollBuckets {
		return maxRollBuckets
	}
	return uint64(k)
}

// Audit walks the whole tree as an audit with "true silence" (DESIGN.md §4.3): a directory
// whose mtime equals the one cache holds is sent as an audit_skipped row and its files are not
// sent (Fusion protects them), but its subdirectories are still walked. The cache is updated
// per directory as soon as its rows are handed to emit.
//
// opts lift the silence: a deep audit lists every directory; otherwise the silent directories
// of this cycle's bucket are listed in full (rolled) and sent like changed ones, so Fusion's
// missing detection judges them. WalkStats.Rolled counts the silent directories listed.
func (s *Source) Audit(ctx context.Context, cache *AuditCache, opts AuditOptions, emit func([]Event) error) (WalkStats, error) {
	return s.walk(ctx, fspath.Root, KindAudit, cache, opts, emit)
}

// silence decides how an audit treats a directory: silent (its mtime is the cached one: sent
// audit_skipped, its files not listed) or rolled (silent by the cache, but listed in full by
// a deep audit or by its turn in the rolling verification). Other walks have no cache.
func (w *walker) silence(it dirItem) (silent, rolled bool) {
	if w.cache == nil || !w.cache.silent(it.rel, it.row.MtimeNs) {
		return false, false
	}
	if w.deep || (w.rollK > 0 && dirHash(it.rel)%w.rollK == w.rollBucket) {
		return false, true
	}
	return true, false
}

// dirHash is a stable hash of a directory's path: a directory stays in its bucket across
// audits and agent restarts, so the rolling cursor reaches each one within K audits. FNV-1a
// alone is weak modulo small K (its low bit is the parity of the bytes' low bits), hence the
// finalizer (MurmurHash3's fmix64).
func dirHash(rel string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(rel); i++ {
		h ^= uint64(rel[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// AuditCache remembers each directory's mtime at the last audit that listed it. A new cache
// (or Reset) makes the next audit a full one, as after a promotion. Safe for concurrent use.
type AuditCache struct {
	mu sync.Mutex
	m  map[string]int64
}

// NewAuditCache returns an empty cache.
func NewAuditCache() *AuditCache { return &AuditCache{m: map[string]int64{}} }

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

func (c *AuditCache) silent(rel string, mtime int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.m[rel]
	return ok && m == mtime
}

func (c *AuditCache) set(rel string, mtime int64) {
	c.mu.Lock()
	c.m[rel] = mtime
	c.mu.Unlock()
}
