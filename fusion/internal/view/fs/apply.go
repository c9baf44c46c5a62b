package fs

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// Apply applies rows from one source under one write lock. Invalid rows are rejected and
// counted; none can panic the view. The full arbitration of DESIGN.md §5.4 (tombstones,
// suspects' expiry, blind spots, audit missing-detection) builds on applyRow.
func (v *View) Apply(src Source, rows []fsbatch.Row) (applied, rejected int, firstErr error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range rows {
		if err := v.applyRow(src, &rows[i]); err != nil {
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

func (v *View) applyRow(src Source, r *fsbatch.Row) error {
	if r.Name == "" {
		if r.IsDelete() || !r.IsDir() {
			return fmt.Errorf("the root can only be updated as a directory")
		}
		root := v.a.get(v.root)
		v.setAttrs(v.root, int64(r.Size), r.MtimeNs)
		setAuditSkipped(root, src, r)
		return nil
	}
	if err := fspath.ValidName(r.Name); err != nil {
		return err
	}
	if len(r.Name) > 0xffff {
		return fmt.Errorf("name longer than 65535 bytes")
	}
	if r.IsDelete() {
		parent, err := v.resolve(r.Parent)
		if err != nil {
			return err
		}
		if parent != 0 {
			if id := v.idx.lookup(v.a, parent, r.Name); id != 0 {
				v.remove(id)
			}
		}
		return nil
	}
	parent, err := v.ensureDir(r.Parent)
	if err != nil {
		return err
	}
	dir := r.IsDir()
	id := v.idx.lookup(v.a, parent, r.Name)
	if id != 0 && v.a.get(id).isDir() != dir {
		// A file became a directory or the reverse: the old node and its subtree go.
		v.remove(id)
		id = 0
	}
	if id == 0 {
		flags := uint16(flagKnown)
		if src == SourceAudit || src == SourceOnDemand {
			flags = 0
		}
		if id, err = v.insert(parent, r.Name, dir, int64(r.Size), r.MtimeNs, flags); err != nil {
			return err
		}
	} else {
		v.setAttrs(id, int64(r.Size), r.MtimeNs)
	}
	n := v.a.get(id)
	switch src {
	case SourceRealtime:
		n.lastUpdated = v.opts.Now().UnixNano()
		n.flags |= flagKnown
		if !dir {
			if r.Flags&fsbatch.FlagPartialWrite != 0 {
				n.flags |= flagSuspect
			} else {
				n.flags &^= flagSuspect
			}
		}
	case SourceSnapshot:
		n.flags |= flagKnown
	}
	setAuditSkipped(n, src, r)
	return nil
}

func setAuditSkipped(n *node, src Source, r *fsbatch.Row) {
	if src != SourceAudit || !n.isDir() {
		return
	}
	if r.Flags&fsbatch.FlagAuditSkipped != 0 {
		n.flags |= flagAuditSkipped
	} else {
		n.flags &^= flagAuditSkipped
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
		if id = v.idx.lookup(v.a, id, part); id == 0 {
			return 0, nil
		}
	}
	return id, nil
}

// ensureDir resolves a directory path, creating missing directories (mtime 0) and replacing
// files that stand where a directory must be.
func (v *View) ensureDir(p string) (uint32, error) {
	if p == v.lastParent && v.lastParentID != 0 {
		return v.lastParentID, nil
	}
	if _, err := fspath.Clean(p); err != nil {
		return 0, err
	}
	id := v.root
	if p != fspath.Root {
		for part := range strings.SplitSeq(p[1:], "/") {
			if err := fspath.ValidName(part); err != nil {
				return 0, err
			}
			child := v.idx.lookup(v.a, id, part)
			if child != 0 && !v.a.get(child).isDir() {
				v.remove(child)
				child = 0
			}
			if child == 0 {
				var err error
				if child, err = v.insert(id, part, true, 0, 0, flagKnown); err != nil {
					return 0, err
				}
			}
			id = child
		}
	}
	v.lastParent, v.lastParentID = p, id
	return id, nil
}
