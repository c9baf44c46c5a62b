package fs

import (
	"time"

	"github.com/fustor/fustor/sdk/fspath"
)

// Consistency returns the view's consistency state.
func (v *View) Consistency() ConsistencyStats {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return ConsistencyStats{Suspects: len(v.c.suspects), Additions: len(v.c.additions), Deletions: len(v.c.deletions),
		Tombstones: len(v.c.tombs), AuditCycles: v.c.auditCycles, LastAuditEndNs: v.c.lastAuditNs,
		AuditRunning: v.c.audit != nil, WatermarkNs: v.clock.Watermark().UnixNano()}
}

// Watermark returns the view's logical clock.
func (v *View) Watermark() time.Time { return v.clock.Watermark() }

// Suspects lists suspect files at or below root, sorted by path, at most limit.
func (v *View) Suspects(root string, limit int) (out []SuspectEntry, truncated bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	paths, truncated := sortedWithin(v.c.suspects, root, limit)
	now := v.opts.Mono()
	for _, p := range paths {
		id, _ := v.resolve(p)
		if id == 0 {
			continue
		}
		out = append(out, SuspectEntry{Entry: v.entry(id, p), ExpiresIn: time.Duration(max(0, v.c.suspects[p].expires-now))})
	}
	return out, truncated
}

// BlindSpots lists blind spots at or below root, sorted, at most limit of each kind.
func (v *View) BlindSpots(root string, limit int) BlindSpotList {
	if root == "" {
		root = fspath.Root
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	adds, t1 := sortedWithin(v.c.additions, root, limit)
	dels, t2 := sortedWithin(v.c.deletions, root, limit)
	return BlindSpotList{Additions: adds, Deletions: dels, Truncated: t1 || t2}
}
