package fs

import (
	"time"

	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// auditState is one open audit (DESIGN.md §4.3, §5.4).
type auditState struct {
	startNs int64    // Fusion physical time at AuditStart
	listed  []string // directories the audit fully listed (not audit_skipped)
}

// AuditStart opens an audit. Seen marks of any earlier audit are cleared.
func (v *View) AuditStart() {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginAudit
	v.st.ClearFlag(store.FlagAuditSeen)
	v.c.audit = &auditState{startNs: v.opts.Now().UnixNano()}
}

// AuditEnd closes the audit. Its caller guarantees every row sent before it was applied (the
// pipe queue is ordered). Unless the audit failed, every child of a directory the audit fully
// listed that the audit did not report is deleted and recorded as a blind-spot deletion —
// except children with a tombstone and children a realtime event confirmed after the audit
// started (stale evidence). Old tombstones are purged. It returns the paths deleted.
func (v *View) AuditEnd(failed bool) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginAudit
	a := v.c.audit
	v.c.audit = nil
	if a == nil {
		return nil
	}
	now := v.opts.Now().UnixNano()
	var deleted []string
	if !failed {
		for _, dir := range a.listed {
			id, err := v.resolve(dir)
			if err != nil || id == 0 || !v.st.Get(id).IsDir() {
				continue // gone since it was listed; nothing to judge
			}
			var victims []uint32
			for ch := v.st.Get(id).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
				n := v.st.Get(ch)
				if n.Flags&store.FlagAuditSeen != 0 || n.LastUpdated > a.startNs {
					continue
				}
				if _, _, ok := v.c.tombstoned(fspath.Join(dir, v.st.NameString(n))); ok {
					continue
				}
				victims = append(victims, ch)
			}
			for _, ch := range victims {
				p := fspath.Join(dir, v.st.NameString(v.st.Get(ch)))
				v.removeCompensating(ch, p)
				deleted = append(deleted, p)
			}
		}
		v.c.auditCycles++
		v.c.lastAuditNs = now
	}
	v.c.purgeTombstones(now, v.opts.TombstoneTTL)
	return deleted
}

// removeCompensating deletes a subtree found missing by a compensating origin (audit,
// sentinel): no tombstone (the kernel did not see it go), a blind-spot deletion instead.
func (v *View) removeCompensating(id uint32, p string) {
	v.remove(id)
	v.c.deletions[p] = struct{}{}
}

// SentinelFeedback applies an agent's answer for suspect paths. Missing means deleted, through
// the compensating path (never "mtime 0"); an unchanged, cold file is cleared early; a changed
// one is updated and its suspect renewed.
func (v *View) SentinelFeedback(items []SentinelItem) {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginAudit
	wm := v.clock.Watermark().UnixNano()
	mono := v.opts.Mono()
	for _, it := range items {
		p, err := fspath.Clean(it.Path)
		if err != nil {
			continue
		}
		id, _ := v.resolve(p)
		if id == 0 || id == v.root {
			continue
		}
		n := v.st.Get(id)
		if !it.Exists {
			v.removeCompensating(id, p)
			continue
		}
		if n.IsDir() {
			continue
		}
		if it.MtimeNs == n.Mtime && int64(it.Size) == n.Size {
			if wm-it.MtimeNs >= int64(v.opts.HotThreshold) {
				v.unsuspect(id, p)
			}
			continue
		}
		if v.sizeFits(int64(it.Size)-n.Size) != nil {
			continue // the receiver bounds each size; the total is bounded here
		}
		v.setAttrs(id, int64(it.Size), it.MtimeNs)
		v.suspectFor(id, p, mono, v.opts.HotThreshold)
	}
}

// Tick expires suspects whose time is up: an unchanged mtime means the file is stable and the
// suspect is cleared; a changed one renews it for a full period with the new mtime.
func (v *View) Tick() {
	// Most ticks have nothing due: they must not queue for the write lock behind a long
	// read (a glob's walk), where every query arriving meanwhile would queue behind them
	// (BenchmarkStatUnderGlobs).
	v.mu.RLock()
	due := len(v.c.heap) > 0 && v.c.heap[0].expires <= v.opts.Mono()
	v.mu.RUnlock()
	if !due {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = 0
	v.expireSuspects()
}

func (v *View) expireSuspects() {
	now := v.opts.Mono()
	for len(v.c.heap) > 0 && v.c.heap[0].expires <= now {
		s := v.c.heap[0]
		id, _ := v.resolve(s.path)
		if id == 0 {
			v.c.clearSuspect(s.path)
			continue
		}
		n := v.st.Get(id)
		if n.Mtime == s.mtime {
			v.unsuspect(id, s.path)
			continue
		}
		v.c.markSuspect(s.path, n.Mtime, now, v.opts.HotThreshold)
	}
}

func (v *View) suspectFor(id uint32, p string, mono int64, life time.Duration) {
	n := v.st.Get(id)
	if n.Flags&store.FlagSuspect == 0 {
		n.Flags |= store.FlagSuspect
		v.recordID(ChangeFlags, id)
	}
	v.c.markSuspect(p, n.Mtime, mono, life)
}

func (v *View) unsuspect(id uint32, p string) {
	if n := v.st.Get(id); n.Flags&store.FlagSuspect != 0 {
		n.Flags &^= store.FlagSuspect
		v.recordID(ChangeFlags, id)
	}
	v.c.clearSuspect(p)
}
