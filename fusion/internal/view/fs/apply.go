package fs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// applyAhead is how many rows ahead Apply prefetches a row's child-index slot.
const applyAhead = 8

// applyCtx holds the clocks read once per Apply call.
type applyCtx struct {
	origin     Origin
	watermark  int64 // logical, NFS time domain
	now        int64 // physical
	mono       int64
	threshold  time.Duration
	hotCutoffs int64 // rows with mtime above this are younger than the hot threshold
	// scanStart is the Fusion physical time the scan that produced the rows started
	// (snapshot, audit, on-demand): a node a realtime event touched at or after it holds
	// fresher evidence than the row (DESIGN.md §5.4). 0 = unknown: any realtime-confirmed
	// node is kept.
	scanStart int64

	// row and p: the row being applied and its path, built at most once and only if a table
	// keyed by path needs it (path).
	row *fsbatch.Row
	p   string
}

// path returns the path of the row being applied.
func (ac *applyCtx) path() string {
	if ac.p == "" {
		ac.p = ac.row.Path()
	}
	return ac.p
}

// Apply applies rows of one origin under one write lock, by the arbitration rules of
// DESIGN.md §5.4 ("realtime first, mtime decides"). Invalid rows are rejected and counted;
// none can panic the view. Rows dropped by arbitration (zombies, stale audit rows) count as
// applied: they were valid and were judged.
//
// scanStartNs is when the scan that produced the rows started (Fusion physical time; 0 =
// unknown), such as an on-demand scan whose command was sent then. For snapshot and audit
// rows the open snapshot's or audit's own start is used; scanStartNs only fills in when none
// is open.
func (v *View) Apply(origin Origin, scanStartNs int64, rows []fsbatch.Row) (applied, rejected int, firstErr error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.expireSuspects()
	v.chg.origin = origin
	ac := applyCtx{origin: origin, watermark: v.clock.Watermark().UnixNano(), now: v.opts.Now().UnixNano(),
		mono: v.opts.Mono(), threshold: v.opts.HotThreshold, scanStart: scanStartNs}
	ac.hotCutoffs = ac.watermark - int64(ac.threshold)
	switch {
	case origin == OriginSnapshot && v.c.snap != nil:
		ac.scanStart = v.c.snap.startNs
	case origin == OriginAudit && v.c.audit != nil:
		ac.scanStart = v.c.audit.startNs
	}
	for i := range rows {
		// Every new row's lookup misses in a table of megabytes; start loading the slot of the
		// row applyAhead rows on while this one is applied. Only rows whose directory is
		// already resolved are prefetched: their parent id is known without a lookup.
		if j := i + applyAhead; j < len(rows) {
			if parent, ok := v.knownDir(rows[j].Dir); ok {
				v.st.PrefetchHome(v.st.HashString(parent, rows[j].Name))
			}
		}
		if err := v.applyRow(&ac, &rows[i]); err != nil {
			rejected++
			v.rejected++
			if firstErr == nil {
				firstErr = fmt.Errorf("row %d (%s): %w", i, rows[i].Path(), err)
			}
			continue
		}
		applied++
	}
	if rejected > 0 {
		v.log.Debug("rows rejected", zap.Int("rejected", rejected), zap.Error(firstErr))
	}
	return applied, rejected, firstErr
}

func (v *View) applyRow(ac *applyCtx, r *fsbatch.Row) error {
	if ac.row != r {
		ac.row, ac.p = r, ""
	}
	if r.Name == "" {
		if r.IsDelete() || !r.IsDir() {
			return fmt.Errorf("the root can only be updated as a directory")
		}
		root := v.st.Get(v.root)
		v.setAttrs(v.root, int64(r.Size), r.MtimeNs)
		setAuditSkipped(root, ac.origin, r)
		v.snapSeen(ac, v.root, r)
		ac.p = fspath.Root
		v.auditSeen(ac, v.root, r)
		return nil
	}
	if err := fspath.ValidName(r.Name); err != nil {
		return err
	}
	if len(r.Name) > 0xffff {
		return fmt.Errorf("name longer than 65535 bytes")
	}
	if r.IsDelete() {
		return v.applyDelete(ac, r)
	}
	realtime := ac.origin == OriginRealtime
	if !realtime && len(v.c.tombs) > 0 {
		// A row from a scan of a path deleted in real time is a zombie unless the file is
		// newer than the delete (reincarnation). Realtime rows are causal and always pass.
		p := ac.path()
		if t, at, ok := v.c.tombstoned(p); ok {
			if r.MtimeNs <= t.logicalNs {
				return nil
			}
			if at == p {
				delete(v.c.tombs, p)
			}
		}
	}
	var stamp int64
	if realtime {
		stamp = ac.now // a realtime event confirms the directories it implies
	}
	parent, err := v.dirNode(r.Dir, true, stamp)
	if err != nil {
		return err
	}
	dir := r.IsDir()
	h := v.st.HashString(parent, r.Name)
	id := v.st.LookupHashed(parent, r.Name, h)
	compensating := ac.origin == OriginAudit || ac.origin == OriginOnDemand
	if !realtime && id != 0 {
		if n := v.st.Get(id); n.LastUpdated != 0 && n.LastUpdated >= ac.scanStart {
			// The freshest evidence wins (DESIGN.md §5.4): a realtime event touched the node
			// since the scan started, so the scan's stat may predate it. Otherwise the row
			// replaces the node whatever the direction of its mtime (touch -d, cp -p).
			v.snapSeen(ac, id, r)
			v.auditSeen(ac, id, r)
			setAuditSkipped(n, ac.origin, r)
			return nil
		}
	}
	if compensating && id == 0 && r.ParentMtimeNs != 0 && v.st.Get(parent).Mtime > r.ParentMtimeNs {
		// The parent changed after the scan listed it: the row is older than memory.
		return nil
	}
	if id != 0 && v.st.Get(id).IsDir() != dir {
		// A file became a directory or the reverse: the old node and its subtree go.
		v.remove(id)
		id = 0
	}
	isNew := id == 0
	var oldMtime, oldSize int64
	if isNew {
		flags := uint16(store.FlagKnown)
		if compensating {
			flags = 0
		}
		if !dir {
			if err := v.sizeFits(int64(r.Size)); err != nil {
				return err
			}
		}
		if id, err = v.insert(parent, r.Name, h, dir, int64(r.Size), r.MtimeNs, flags); err != nil {
			return err
		}
	} else {
		oldMtime, oldSize = v.st.Get(id).Mtime, v.st.Get(id).Size
		if !dir {
			if err := v.sizeFits(int64(r.Size) - oldSize); err != nil {
				return err
			}
		}
		v.setAttrs(id, int64(r.Size), r.MtimeNs)
	}
	n := v.st.Get(id)
	switch ac.origin {
	case OriginRealtime:
		v.applyRealtimeUpsert(ac, id, r)
	case OriginSnapshot:
		if n.Flags&store.FlagKnown == 0 && !isNew {
			n.Flags |= store.FlagKnown
			v.recordID(ChangeFlags, id) // known by an agent now (a checkpoint's redo needs it)
		}
		n.Flags |= store.FlagKnown
		v.snapSeen(ac, id, r)
		if !dir && r.Flags&fsbatch.FlagPartialWrite != 0 {
			// The agent saw a write without its close: sent, never skipped, and suspect
			// until it settles (DESIGN.md §5.3).
			v.suspectFor(id, ac.path(), ac.mono, ac.threshold)
		} else {
			v.hotCheck(ac, id, r)
		}
	case OriginAudit, OriginOnDemand:
		changed := isNew || oldMtime != r.MtimeNs || oldSize != int64(r.Size)
		if !dir && changed {
			was := n.Flags
			n.Flags &^= store.FlagKnown
			n.Flags |= store.FlagBlindAdd
			v.c.additions[ac.path()] = struct{}{}
			if was&(store.FlagBlindAdd|store.FlagKnown) != store.FlagBlindAdd && !isNew {
				v.recordID(ChangeFlags, id)
			}
		}
		v.auditSeen(ac, id, r)
		// A file the scan finds as an agent last reported it in real time, settled (known, not
		// suspect), was closed since its last write: young as it may be, nothing was written
		// to it unseen (its mtime would differ), so it is not made suspect again (DESIGN.md
		// §5.3: cleared at once by a realtime closed write). wait-stable relies on it.
		if changed || n.Flags&store.FlagKnown == 0 || n.Flags&store.FlagSuspect != 0 || n.LastUpdated == 0 {
			v.hotCheck(ac, id, r)
		}
	}
	setAuditSkipped(n, ac.origin, r)
	return nil
}

func (v *View) applyRealtimeUpsert(ac *applyCtx, id uint32, r *fsbatch.Row) {
	n := v.st.Get(id)
	n.LastUpdated = ac.now
	// Known by an agent now: a change of the node's flags, recorded once (below if it also
	// leaves the blind-spot additions).
	unrecorded := n.Flags&store.FlagKnown == 0
	n.Flags |= store.FlagKnown
	defer func() {
		if unrecorded {
			v.recordID(ChangeFlags, id)
		}
	}()
	v.clock.Sample(r.MtimeNs)
	if len(v.c.tombs) > 0 || len(v.c.additions) > 0 || len(v.c.deletions) > 0 || len(v.c.suspects) > 0 || r.Flags&fsbatch.FlagPartialWrite != 0 {
		p := ac.path()
		delete(v.c.tombs, p)
		delete(v.c.additions, p)
		delete(v.c.deletions, p)
		if n.Flags&store.FlagBlindAdd != 0 {
			n.Flags &^= store.FlagBlindAdd
			v.recordID(ChangeFlags, id)
			unrecorded = false
		}
		if !n.IsDir() {
			if r.Flags&fsbatch.FlagPartialWrite != 0 {
				v.suspectFor(id, p, ac.mono, ac.threshold)
			} else {
				v.unsuspect(id, p)
			}
		}
	}
}

// sizeFits says why a file's size may not grow by delta (nil: it may): the view's total
// size, the root's aggregate, which no directory's exceeds (sizes are never negative), would
// pass 2^63-1. Rows that would make a total wrap are rejected; the totals stay exact.
func (v *View) sizeFits(delta int64) error {
	if delta > 0 && v.dirs[v.root].size > math.MaxInt64-delta {
		return fmt.Errorf("the view's total size would pass 2^63-1 bytes: rejected")
	}
	return nil
}

// hotCheck makes a scanned file suspect when it is younger than the hot threshold.
func (v *View) hotCheck(ac *applyCtx, id uint32, r *fsbatch.Row) {
	if r.IsDir() || r.MtimeNs <= ac.hotCutoffs {
		return
	}
	if life := hotLife(ac.watermark-r.MtimeNs, ac.threshold); life > 0 {
		v.suspectFor(id, ac.path(), ac.mono, life)
	}
}

// auditSeen marks a node reported by the open audit, records fully listed directories, and
// clears a blind-spot deletion of a path that is back.
func (v *View) auditSeen(ac *applyCtx, id uint32, r *fsbatch.Row) {
	if ac.origin != OriginAudit || v.c.audit == nil {
		return
	}
	v.st.Get(id).Flags |= store.FlagAuditSeen
	if len(v.c.deletions) > 0 {
		delete(v.c.deletions, ac.path())
	}
	if r.IsDir() && r.Flags&fsbatch.FlagAuditSkipped == 0 {
		v.c.audit.listed = append(v.c.audit.listed, ac.path())
	}
}

func (v *View) applyDelete(ac *applyCtx, r *fsbatch.Row) error {
	parent, err := v.dirNode(r.Dir, false, 0)
	if err != nil {
		return err
	}
	p := ac.path()
	var id uint32
	if parent != 0 {
		id = v.st.Lookup(parent, r.Name)
	}
	switch ac.origin {
	case OriginRealtime:
		if id != 0 {
			v.remove(id)
		}
		v.c.tombs[p] = tombstone{logicalNs: ac.watermark, physicalNs: ac.now}
		if len(v.c.deletions) > 0 {
			for q := range v.c.deletions {
				if fspath.IsWithin(q, p) {
					delete(v.c.deletions, q)
				}
			}
		}
	default:
		// A scan that says a path is gone is compensating evidence.
		if id != 0 {
			v.removeCompensating(id, p)
		}
	}
	return nil
}

func setAuditSkipped(n *store.Node, origin Origin, r *fsbatch.Row) {
	if origin != OriginAudit || !n.IsDir() {
		return
	}
	if r.Flags&fsbatch.FlagAuditSkipped != 0 {
		n.Flags |= store.FlagAuditSkipped
	} else {
		n.Flags &^= store.FlagAuditSkipped
	}
}

// resolve returns the id of a normalised path, 0 if absent.
func (v *View) resolve(p string) (uint32, error) {
	if p == fspath.Root {
		return v.root, nil
	}
	if len(p) == 0 || p[0] != '/' {
		return 0, fmt.Errorf("%w: %q", fspath.ErrInvalid, p)
	}
	id := v.root
	for part := range strings.SplitSeq(p[1:], "/") {
		if part == "" {
			return 0, fmt.Errorf("%w: %q", fspath.ErrInvalid, p)
		}
		if id = v.st.Lookup(id, part); id == 0 {
			return 0, nil
		}
	}
	return id, nil
}

// dirNode returns the node of directory d (nil: the root). With create, missing directories
// are made (mtime 0, last updated at stamp) and files standing where a directory must be are
// replaced; without, a directory that is not in the view is 0. What d resolved to is kept in
// its slot under v.dirTag, so a stream's directory is resolved once, not once per row, and an
// unresolved one costs a lookup per level up to its nearest resolved ancestor.
func (v *View) dirNode(d *fsbatch.Dir, create bool, stamp int64) (uint32, error) {
	if id, ok := v.knownDir(d); ok {
		return id, nil
	}
	var stack [32]*fsbatch.Dir
	chain := stack[:0]
	id := v.root
	for cur := d; !cur.IsRoot(); cur = cur.Parent() {
		if got, ok := cur.Slot(v.dirTag); ok {
			id = got
			break
		}
		chain = append(chain, cur)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		name := chain[i].Name()
		if len(name) > 0xffff {
			return 0, fmt.Errorf("name longer than 65535 bytes")
		}
		h := v.st.HashString(id, name)
		child := v.st.LookupHashed(id, name, h)
		if child != 0 && !v.st.Get(child).IsDir() {
			if !create {
				return 0, nil
			}
			v.remove(child) // a file: no directory goes, the resolved ones stay valid
			child = 0
		}
		if child == 0 {
			if !create {
				return 0, nil
			}
			var err error
			if child, err = v.insert(id, name, h, true, 0, 0, store.FlagKnown); err != nil {
				return 0, err
			}
			v.st.Get(child).LastUpdated = stamp
		}
		chain[i].SetSlot(v.dirTag, child)
		id = child
	}
	v.lastDir, v.lastDirID = d, id
	return id, nil
}

// rowNode returns the node a row names, 0 if the view does not hold it.
func (v *View) rowNode(r *fsbatch.Row) uint32 {
	if r.Name == "" {
		return v.root
	}
	parent, err := v.dirNode(r.Dir, false, 0)
	if err != nil || parent == 0 {
		return 0
	}
	return v.st.Lookup(parent, r.Name)
}

// knownDir returns d's node if d is already resolved under the current tag.
func (v *View) knownDir(d *fsbatch.Dir) (uint32, bool) {
	switch {
	case d == nil || d.IsRoot():
		return v.root, true
	case d == v.lastDir:
		return v.lastDirID, true
	}
	if id, ok := d.Slot(v.dirTag); ok {
		v.lastDir, v.lastDirID = d, id
		return id, true
	}
	return 0, false
}

// dirsGone forgets every resolved directory: one was removed, and its node id may be reused.
func (v *View) dirsGone() {
	v.dirTag = rand.Uint64() | 1
	v.lastDir, v.lastDirID = nil, 0
	v.chg.changeDirGone()
}
