package fs

import (
	"container/heap"
	"slices"
	"time"

	"github.com/fustor/fustor/sdk/fspath"
)

// Side tables of the consistency engine (DESIGN.md §5.3). They are keyed by path because a
// node id is reused once its node is gone, while a tombstone must outlive its node.

// tombstone remembers a realtime delete.
type tombstone struct {
	logicalNs  int64 // watermark at the delete (NFS time domain)
	physicalNs int64 // Fusion wall clock at the delete (for the TTL)
}

// suspect is a file that may still be being written.
type suspect struct {
	path    string
	expires int64 // monotonic ns
	mtime   int64 // mtime recorded when entered or renewed
	index   int   // position in the heap
}

type suspectHeap []*suspect

func (h suspectHeap) Len() int           { return len(h) }
func (h suspectHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h suspectHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *suspectHeap) Push(x any) {
	s := x.(*suspect)
	s.index = len(*h)
	*h = append(*h, s)
}
func (h *suspectHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.index = -1
	return s
}

// consistency holds the side tables; guarded by View.mu.
type consistency struct {
	tombs     map[string]tombstone
	suspects  map[string]*suspect
	heap      suspectHeap
	additions map[string]struct{}
	deletions map[string]struct{}

	audit       *auditState
	snap        *snapState
	verify      *verifyState
	auditCycles uint64
	lastAuditNs int64
}

func newConsistency() consistency {
	return consistency{tombs: map[string]tombstone{}, suspects: map[string]*suspect{},
		additions: map[string]struct{}{}, deletions: map[string]struct{}{}}
}

// tombstoned returns the tombstone covering p: its own, or the nearest ancestor's (a directory
// delete covers its whole subtree, DESIGN.md §9.3).
func (c *consistency) tombstoned(p string) (tombstone, string, bool) {
	if len(c.tombs) == 0 {
		return tombstone{}, "", false
	}
	for q := p; ; {
		if t, ok := c.tombs[q]; ok {
			return t, q, true
		}
		if q == fspath.Root {
			return tombstone{}, "", false
		}
		q, _ = fspath.Split(q)
	}
}

// markSuspect enters or renews p for life from now.
func (c *consistency) markSuspect(p string, mtime, nowMono int64, life time.Duration) {
	if s, ok := c.suspects[p]; ok {
		s.expires, s.mtime = nowMono+int64(life), mtime
		heap.Fix(&c.heap, s.index)
		return
	}
	s := &suspect{path: p, expires: nowMono + int64(life), mtime: mtime}
	c.suspects[p] = s
	heap.Push(&c.heap, s)
}

func (c *consistency) clearSuspect(p string) {
	if s, ok := c.suspects[p]; ok {
		heap.Remove(&c.heap, s.index)
		delete(c.suspects, p)
	}
}

// hotLife returns how long a scanned file of the given age stays suspect:
// clamp(threshold − age, 1 s, threshold), or 0 when it is not hot.
func hotLife(ageNs int64, threshold time.Duration) time.Duration {
	if ageNs >= int64(threshold) {
		return 0
	}
	return min(max(threshold-time.Duration(ageNs), time.Second), threshold)
}

// purgeTombstones drops tombstones older than ttl (physical clock).
func (c *consistency) purgeTombstones(nowNs int64, ttl time.Duration) {
	for p, t := range c.tombs {
		if nowNs-t.physicalNs > int64(ttl) {
			delete(c.tombs, p)
		}
	}
}

// sortedWithin returns up to limit keys of m at or below root, sorted, and whether more exist.
func sortedWithin[V any](m map[string]V, root string, limit int) ([]string, bool) {
	var out []string
	for p := range m {
		if fspath.IsWithin(p, root) {
			out = append(out, p)
		}
	}
	sortPaths(out)
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// sortPaths orders paths as the tree walks them: by components.
func sortPaths(ps []string) {
	slices.SortFunc(ps, fspath.Compare)
}
