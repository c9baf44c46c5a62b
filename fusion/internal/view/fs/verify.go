package fs

import (
	"fmt"
	"slices"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// Verification (DESIGN.md §5.6): the leader's deep walk of a subtree is compared with the
// view, row by row in the apply loop (so in order with the realtime rows around it), and what
// the walk did not report is found at the end through a seen mark, as snapshot reconciliation
// does. Nothing changes unless the caller asked for a repair.

// ErrVerifyRunning is returned when a verify of the view is already open.
var ErrVerifyRunning = errs.ErrVerifyRunning

type verifyState struct {
	id       string // the command whose walk this is
	root     string
	startNs  int64
	repair   bool
	max      int
	unlisted unlistedDirs
	res      VerifyResult
	// lastDir is the directory of the last row checked, lastWithin whether it lies in root:
	// a walk's rows come directory by directory.
	lastDir    *fsbatch.Dir
	lastWithin bool
}

// VerifyStart opens a verify of the subtree at root for the walk answering command id. With
// repair, the walk's rows are applied as an on-demand scan after they are compared and the
// extra entries are removed at the end.
func (v *View) VerifyStart(id, root string, maxExamples int, repair bool) error {
	root, err := fspath.Clean(root)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c.verify != nil {
		return fmt.Errorf("%w (view %s, path %s)", ErrVerifyRunning, v.opts.Name, v.c.verify.root)
	}
	v.st.ClearFlag(store.FlagVerifySeen)
	v.c.verify = &verifyState{id: id, root: root, startNs: v.opts.Now().UnixNano(), repair: repair,
		max: maxExamples, unlisted: newUnlistedDirs(), res: VerifyResult{Root: root}}
	return nil
}

// VerifyAbort drops the verify of command id, if it is the open one.
func (v *View) VerifyAbort(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c.verify != nil && v.c.verify.id == id {
		v.c.verify = nil
	}
}

// VerifyRows compares rows of the walk answering command id with the view. Rows of another
// command (an aborted verify) are ignored. It returns how many rows were compared and how many
// were invalid.
func (v *View) VerifyRows(id string, rows []fsbatch.Row) (compared, rejected int, firstErr error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginOnDemand
	vs := v.c.verify
	if vs == nil || vs.id != id {
		return 0, 0, nil
	}
	var ac applyCtx
	if vs.repair {
		// The same rows are applied as the on-demand scan they are, under the same evidence
		// rule: a node realtime touched since the walk started keeps its state.
		v.expireSuspects()
		ac = applyCtx{origin: OriginOnDemand, watermark: v.clock.Watermark().UnixNano(), now: v.opts.Now().UnixNano(),
			mono: v.opts.Mono(), threshold: v.opts.HotThreshold, scanStart: vs.startNs}
		ac.hotCutoffs = ac.watermark - int64(ac.threshold)
	}
	for i := range rows {
		r := &rows[i]
		ac.row, ac.p = r, ""
		err := v.verifyRow(vs, &ac, r)
		if err == nil && vs.repair {
			if err = v.applyRow(&ac, r); err == nil {
				if id := v.rowNode(r); id != 0 {
					v.st.Get(id).Flags |= store.FlagVerifySeen // repaired: not extra at the end
				}
			}
		}
		if err != nil {
			rejected++
			if firstErr == nil {
				firstErr = fmt.Errorf("row %d (%s): %w", i, r.Path(), err)
			}
			continue
		}
		compared++
	}
	return compared, rejected, firstErr
}

// verifyRow compares one row; ac holds the row and builds its path when a difference or a
// table needs it.
func (v *View) verifyRow(vs *verifyState, ac *applyCtx, r *fsbatch.Row) error {
	if r.IsDelete() {
		return fmt.Errorf("a walk reports no deletes")
	}
	if r.Name != "" {
		if err := fspath.ValidName(r.Name); err != nil {
			return err
		}
	}
	if !vs.within(ac) {
		return fmt.Errorf("%s is outside the verified subtree %s", ac.path(), vs.root)
	}
	vs.res.Walked++
	storage := Attrs{IsDir: r.IsDir(), Size: r.Size, MtimeNs: r.MtimeNs}
	if unlistedDir(r) {
		vs.unlisted.add(ac.path())
	}
	id := v.rowNode(r)
	if id == 0 {
		p := ac.path()
		if t, _, ok := v.c.tombstoned(p); ok && t.physicalNs >= vs.startNs {
			vs.res.Changed++ // deleted in real time since the walk started
			return nil
		}
		v.verifyDiff(vs, Diff{Path: p, Kind: DiffMissing, Storage: storage})
		return nil
	}
	n := v.st.Get(id)
	n.Flags |= store.FlagVerifySeen
	if n.LastUpdated != 0 && n.LastUpdated >= vs.startNs {
		vs.res.Changed++
		return nil
	}
	view := Attrs{IsDir: n.IsDir(), MtimeNs: n.Mtime}
	if !n.IsDir() {
		view.Size = uint64(n.Size)
	}
	switch {
	case view.IsDir != storage.IsDir:
	case storage.IsDir:
		return nil // directories are compared by type: their mtime is not a file's content
	case view.Size == storage.Size && view.MtimeNs == storage.MtimeNs:
		return nil
	}
	v.verifyDiff(vs, Diff{Path: ac.path(), Kind: DiffDifferent, Storage: storage, View: view})
	return nil
}

// within reports whether the row of ac lies in the verified subtree, building its path only
// when its directory is outside (the row may be the subtree's top).
func (vs *verifyState) within(ac *applyCtx) bool {
	r := ac.row
	switch {
	case vs.root == fspath.Root:
		return true
	case r.Name == "":
		return false
	}
	if r.Dir != vs.lastDir || vs.lastDir == nil {
		vs.lastDir, vs.lastWithin = r.Dir, fspath.IsWithin(r.Dir.Path(), vs.root)
	}
	return vs.lastWithin || ac.path() == vs.root
}

func (v *View) verifyDiff(vs *verifyState, d Diff) {
	switch d.Kind {
	case DiffMissing:
		vs.res.Missing++
	case DiffExtra:
		vs.res.Extra++
	case DiffDifferent:
		vs.res.Different++
	}
	if len(vs.res.Examples) < vs.max {
		vs.res.Examples = append(vs.res.Examples, d)
	}
}

// VerifyEnd closes the verify of command id once its walk's rows are applied, finds what the
// walk did not report and, with repair, removes it.
func (v *View) VerifyEnd(id string) (VerifyResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginOnDemand
	vs := v.c.verify
	if vs == nil || vs.id != id {
		return VerifyResult{}, fmt.Errorf("%w: the verify was abandoned", ErrNotFound)
	}
	v.c.verify = nil
	if vs.unlisted.overflow {
		return VerifyResult{}, fmt.Errorf("verify %s: more than %d directories could not be listed", vs.root, maxUnlisted)
	}
	top, err := v.resolve(vs.root)
	if err != nil {
		return VerifyResult{}, err
	}
	switch {
	case top == 0 || vs.unlisted.has(vs.root):
	case v.st.Get(top).Flags&store.FlagVerifySeen == 0:
		// The walk did not even report its top: the whole subtree is extra.
		v.verifyExtra(vs, top, vs.root)
	case v.st.Get(top).IsDir():
		v.judgeUnseen(top, vs.root, store.FlagVerifySeen, vs.startNs, &vs.unlisted, func(id uint32, p string) {
			v.verifyExtra(vs, id, p)
		})
	}
	vs.res.Repaired = vs.repair
	slices.SortFunc(vs.res.Examples, func(a, b Diff) int { return fspath.Compare(a.Path, b.Path) })
	return vs.res, nil
}

// verifyExtra counts a node (and its subtree) the walk did not report, and removes it when
// the verify repairs.
func (v *View) verifyExtra(vs *verifyState, id uint32, p string) {
	n := v.st.Get(id)
	d := Diff{Path: p, Kind: DiffExtra, View: Attrs{IsDir: n.IsDir(), MtimeNs: n.Mtime}}
	count := uint64(1)
	if n.IsDir() {
		g := v.dirs[id]
		count += uint64(g.files + g.dirs)
	} else {
		d.View.Size = uint64(n.Size)
	}
	v.verifyDiff(vs, d)
	vs.res.Extra += count - 1
	if vs.repair && id != v.root {
		v.removeCompensating(id, p)
	}
}
