package fs

import (
	"context"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fspath"
)

// Audit walks the whole tree as an audit with "true silence" (DESIGN.md §4.3): a directory
// whose mtime equals the one cache holds is sent as an audit_skipped row and its files are not
// sent (Fusion protects them), but its subdirectories are still walked. The cache is updated
// per directory as soon as its rows are handed to emit.
//
// opts lift the silence: a deep audit lists every directory; otherwise the silent directories
// of this cycle's bucket are listed in full (rolled) and sent like changed ones, so Fusion's
// missing detection judges them. source.WalkStats.Rolled counts the silent directories listed.
func (s *Source) Audit(ctx context.Context, cache *source.AuditCache, opts source.AuditOptions, emit func([]source.Event) error) (source.WalkStats, error) {
	return s.walk(ctx, fspath.Root, source.OriginAudit, cache, opts, emit)
}

// silence decides how an audit treats a directory: silent (its mtime is the cached one: sent
// audit_skipped, its files not listed) or rolled (silent by the cache, but listed in full by
// a deep audit or by its turn in the rolling verification). Other walks have no cache.
func (w *walker) silence(it dirItem) (silent, rolled bool) {
	if w.cache == nil || !w.cache.Silent(it.rel, it.row.MtimeNs) {
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
