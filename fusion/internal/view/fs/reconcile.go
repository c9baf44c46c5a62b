package fs

import (
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// A snapshot is a complete listing of the tree (DESIGN.md §5.1): what it did not report is
// gone, unless newer evidence says otherwise. Without this, a leader that restarts before its
// old session expires (so the view is never reset) upserts the tree again and every file
// deleted while it was down stays in the view for ever.

// maxUnlisted bounds the directories one walk (snapshot or verify) may report as not listed
// (permission denied, I/O error); past it the walk judges nothing.
const maxUnlisted = 1 << 16

// unlistedDirs holds the directories a walk reported without listing them (FlagAuditSkipped
// on the row): their children are unknown, so not judged. Bounded by maxUnlisted.
type unlistedDirs struct {
	m        map[string]struct{}
	overflow bool // more than maxUnlisted: the walk judges nothing
}

func newUnlistedDirs() unlistedDirs { return unlistedDirs{m: map[string]struct{}{}} }

// unlistedDir reports whether r is a directory its walk reported without listing it.
func unlistedDir(r *fsbatch.Row) bool { return r.IsDir() && r.Flags&fsbatch.FlagAuditSkipped != 0 }

// add records the path of a directory the walk did not list.
func (u *unlistedDirs) add(p string) {
	if len(u.m) >= maxUnlisted {
		u.overflow = true
		return
	}
	u.m[p] = struct{}{}
}

func (u *unlistedDirs) has(p string) bool {
	_, ok := u.m[p]
	return ok
}

// snapState is the open snapshot.
type snapState struct {
	owner    string // the session whose snapshot it is
	startNs  int64  // Fusion physical time at SnapshotStart
	unlisted unlistedDirs
}

// SnapshotStart opens the snapshot of owner (a session id) and starts a new session
// sequence's baseline: blind spots are reset. A snapshot already open is abandoned: it judges
// nothing.
func (v *View) SnapshotStart(owner string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginSnapshot
	for p := range v.c.additions {
		if id, _ := v.resolve(p); id != 0 {
			v.st.Get(id).Flags &^= store.FlagBlindAdd
		}
	}
	clear(v.c.additions)
	clear(v.c.deletions)
	v.st.ClearFlag(store.FlagSnapSeen)
	v.c.snap = &snapState{owner: owner, startNs: v.opts.Now().UnixNano(), unlisted: newUnlistedDirs()}
}

// snapSeen marks a node reported by the open snapshot.
func (v *View) snapSeen(ac *applyCtx, id uint32, r *fsbatch.Row) {
	if ac.origin != OriginSnapshot || v.c.snap == nil {
		return
	}
	v.st.Get(id).Flags |= store.FlagSnapSeen
	if unlistedDir(r) {
		v.c.snap.unlisted.add(ac.path())
	}
}

// SnapshotEnd closes owner's snapshot. Its caller guarantees every row sent before it was
// applied (the pipe queue is ordered). Unless the walk failed, every node the snapshot did not
// report is removed and recorded as a blind-spot deletion — except nodes a realtime event
// touched since the snapshot started, nodes under a tombstone, and the content of directories
// the walk could not list. A snapshot that did not report its top (the root row every walk
// sends first) judges nothing either: it cannot have been a complete listing. It returns the
// paths removed (a directory stands for its subtree).
func (v *View) SnapshotEnd(owner string, failed bool) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	defer v.changesDone()
	v.chg.origin = OriginSnapshot
	sn := v.c.snap
	if sn == nil || sn.owner != owner {
		return nil
	}
	v.c.snap = nil
	if !failed {
		v.chg.loading = false // the view can be queried from now: its changes are recorded
	}
	if failed || sn.unlisted.overflow || sn.unlisted.has(fspath.Root) || v.st.Get(v.root).Flags&store.FlagSnapSeen == 0 {
		return nil
	}
	var gone []string
	v.judgeUnseen(v.root, fspath.Root, store.FlagSnapSeen, sn.startNs, &sn.unlisted, func(id uint32, p string) {
		v.removeCompensating(id, p)
		gone = append(gone, p)
	})
	return gone
}

// judgeUnseen walks the subtree of dir (seen, fully listed) and calls gone for each child
// the walk did not report (no seen flag) that is not protected: touched by a realtime event
// at or after startNs, or under a tombstone. A directory that is not protected itself but
// holds seen or protected nodes is kept and judged inside. Seen directories are descended into
// unless their path is in unlisted. gone may remove the node it is given.
func (v *View) judgeUnseen(dir uint32, dirPath string, seen uint16, startNs int64, unlisted *unlistedDirs, gone func(id uint32, p string)) {
	type frame struct {
		id uint32
		p  string
	}
	stack := []frame{{dir, dirPath}}
	var victims []frame
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		victims = victims[:0]
		for ch := v.st.Get(f.id).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			n := v.st.Get(ch)
			seenIt := n.Flags&seen != 0
			if !seenIt && n.LastUpdated != 0 && n.LastUpdated >= startNs {
				continue // created or confirmed in real time during the walk
			}
			if seenIt && (!n.IsDir() || n.FirstChild == 0) {
				continue // reported, nothing below: no path to build
			}
			p := fspath.Join(f.p, v.st.NameString(n))
			if seenIt {
				if !unlisted.has(p) {
					stack = append(stack, frame{ch, p})
				}
				continue
			}
			if _, _, ok := v.c.tombstoned(p); ok {
				continue // a realtime delete covers it: the delete's own rules apply
			}
			if n.IsDir() && v.holdsKept(ch, seen, startNs) {
				// Not reported itself, yet the walk or realtime saw something below it (a
				// parent only implied by its children's rows): it exists; judge inside.
				stack = append(stack, frame{ch, p})
				continue
			}
			victims = append(victims, frame{ch, p})
		}
		for _, x := range victims {
			gone(x.id, x.p)
		}
	}
}

// holdsKept reports whether a node below dir was seen by the walk or touched by a realtime
// event at or after ns.
func (v *View) holdsKept(dir uint32, seen uint16, ns int64) bool {
	stack := []uint32{dir}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for ch := v.st.Get(cur).FirstChild; ch != 0; ch = v.st.Get(ch).NextSib {
			n := v.st.Get(ch)
			if n.Flags&seen != 0 || n.LastUpdated != 0 && n.LastUpdated >= ns {
				return true
			}
			if n.IsDir() {
				stack = append(stack, ch)
			}
		}
	}
	return false
}
