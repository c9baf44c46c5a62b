package fsbatch

import (
	"fmt"

	"github.com/fustor/fustor/sdk/fspath"
)

// Dir is a directory of a stream: its parent and its basename, never its path. The decoder
// makes one per declaration and every row under it points at it, so decoding assembles no
// path string (DESIGN.md §3): a consumer resolves the chain to its own ids once per directory
// and builds a path (Path, Row.Path) only where a table keys by it.
//
// A Dir is immutable, except for its slot: one remembered value for the goroutine that
// consumes the stream's rows (Fusion's view keeps there the node the directory resolved to,
// under a tag that changes whenever such a node may have gone). Only that one goroutine may
// use the slot; fsbatch never reads it.
type Dir struct {
	parent *Dir
	name   string
	// depth is the directory's number of path components, plen its path's length in bytes
	// (the root: 0, 0); bad marks a directory declared beyond a decoder's Limits (rows under
	// it are rejected).
	depth, plen uint32
	bad         bool

	slotTag uint64
	slotVal uint32
}

// NewRoot returns the root of a new chain of directories.
func NewRoot() *Dir { return &Dir{} }

// Child returns the directory name below d; name must be a valid basename.
func (d *Dir) Child(name string) (*Dir, error) {
	if err := fspath.ValidName(name); err != nil {
		return nil, err
	}
	return d.child(name), nil
}

// child is Child without the name's check.
func (d *Dir) child(name string) *Dir {
	return &Dir{parent: d, name: name, depth: d.depth + 1, plen: d.plen + 1 + uint32(len(name)), bad: d.bad}
}

// DirOf returns a chain of new directories for the clean path p (the root for "/").
func DirOf(p string) (*Dir, error) {
	c, err := fspath.Clean(p)
	if err != nil {
		return nil, err
	}
	if c != p {
		return nil, fmt.Errorf("%w: %q is not clean", fspath.ErrInvalid, p)
	}
	d := NewRoot()
	if p == fspath.Root {
		return d, nil
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if d, err = d.Child(p[start:i]); err != nil {
				return nil, err
			}
			start = i + 1
		}
	}
	return d, nil
}

// Parent returns the parent directory, nil for the root.
func (d *Dir) Parent() *Dir { return d.parent }

// Name returns the basename, "" for the root.
func (d *Dir) Name() string { return d.name }

// IsRoot reports whether d is the root of its chain.
func (d *Dir) IsRoot() bool { return d.parent == nil }

// Path returns the directory's normalised path. It is built on every call: keep it where it
// is needed more than once.
func (d *Dir) Path() string {
	if d == nil || d.parent == nil {
		return fspath.Root
	}
	return string(d.AppendPath(nil))
}

// AppendPath appends the directory's path to b; nothing for the root, whose children's paths
// are then "/" + name.
func (d *Dir) AppendPath(b []byte) []byte {
	var stack [32]*Dir
	chain := stack[:0]
	for cur := d; cur != nil && cur.parent != nil; cur = cur.parent {
		chain = append(chain, cur)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		b = append(append(b, '/'), chain[i].name...)
	}
	return b
}

// Slot returns the value remembered under tag, if tag (non-zero) is the one it was stored
// with.
func (d *Dir) Slot(tag uint64) (uint32, bool) {
	if tag != 0 && d.slotTag == tag {
		return d.slotVal, true
	}
	return 0, false
}

// SetSlot remembers v under tag.
func (d *Dir) SetSlot(tag uint64, v uint32) { d.slotTag, d.slotVal = tag, v }
