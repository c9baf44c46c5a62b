// Package fsbatch encodes and decodes the typed "fs" schema of the push stream
// (fustor.v1.FsBatch): directories are declared once per stream and rows name their parent by a
// stream-local id plus a basename, with columns of deltas so a row costs a few bytes on the wire.
//
// The Encoder lives on the agent side of one stream, the Decoder on the Fusion side of the same
// stream. Both keep a bounded table of directory declarations. Decoded rows point at the
// declaration of their directory (a Dir: parent and basename), shared by every row under it:
// no path is assembled on decode, the consumer resolves each Dir once (DESIGN.md §3).
package fsbatch

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fspath"
)

// Row flag bits, mirroring fustorv1.FsRowFlag.
const (
	FlagDelete       = uint32(fustorv1.FsRowFlag_FS_ROW_FLAG_DELETE)
	FlagDir          = uint32(fustorv1.FsRowFlag_FS_ROW_FLAG_DIR)
	FlagPartialWrite = uint32(fustorv1.FsRowFlag_FS_ROW_FLAG_PARTIAL_WRITE)
	FlagAuditSkipped = uint32(fustorv1.FsRowFlag_FS_ROW_FLAG_AUDIT_SKIPPED)
	knownFlags       = FlagDelete | FlagDir | FlagPartialWrite | FlagAuditSkipped
)

// RootID is the implicit id of the source root; it is never declared.
const RootID = 1

// DefaultMaxDirs and DefaultMaxDirBytes bound the declaration table of one stream: its
// directories, and the bytes of their names. An Encoder starts over (reset_dirs) at half of
// each, so a decoder with the defaults always has room for its next batch.
const (
	DefaultMaxDirs     = 1 << 18
	DefaultMaxDirBytes = 16 << 20
)

// ErrMalformed is wrapped by errors that make a whole batch unusable; the stream that carried
// it must end with INVALID_ARGUMENT. Row-level problems are reported per row instead.
var ErrMalformed = errors.New("malformed fs batch")

// ErrDirTable is wrapped by the error of a batch whose declarations would take the stream's
// table past Limits.MaxDirs or MaxDirBytes: the batch is refused whole, the stream must end
// (Fusion answers RESOURCE_EXHAUSTED), and an agent's next stream starts a fresh table. It
// is not an ErrMalformed: the batch is well-formed, the stream has declared too much.
var ErrDirTable = errors.New("directory declarations over the stream's bound")

// The mtimes a row may carry: [MinMtimeNs, MaxMtimeNs). Rows outside are rejected, never
// clamped (a clamped mtime would be a lie a query repeats). The range holds every real file,
// touched into the past or the future (DESIGN.md §1), and keeps the view's arithmetic on
// mtimes (watermark - mtime, in ns) within int64.
var (
	MinMtimeNs = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	MaxMtimeNs = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
)

// CheckMtime says why mtimeNs is outside [MinMtimeNs, MaxMtimeNs) (nil: it is not).
func CheckMtime(mtimeNs int64) error {
	if mtimeNs >= MinMtimeNs && mtimeNs < MaxMtimeNs {
		return nil
	}
	return fmt.Errorf("mtime %s is outside [1900-01-01, 2200-01-01): rejected", time.Unix(0, mtimeNs).UTC().Format(time.RFC3339))
}

// Row is one decoded fs event.
type Row struct {
	// Dir is the parent directory; nil stands for the root. The root row itself has an empty
	// Name (and any Dir).
	Dir *Dir
	// Name is the basename.
	Name string
	// Flags holds Flag* bits.
	Flags uint32
	// Size is the size in bytes.
	Size uint64
	// MtimeNs is the modification time in ns since the Unix epoch.
	MtimeNs int64
	// Index is the drift-corrected event time in ms.
	Index uint64
	// ParentMtimeNs is the parent's mtime as an audit saw it (0 otherwise).
	ParentMtimeNs int64
}

// Path returns the row's full normalised path, built on every call.
func (r *Row) Path() string {
	if r.Name == "" {
		return fspath.Root
	}
	return string(append(append(r.Dir.AppendPath(make([]byte, 0, 64)), '/'), r.Name...))
}

// IsDir reports whether the row is a directory.
func (r *Row) IsDir() bool { return r.Flags&FlagDir != 0 }

// IsDelete reports whether the row is a delete.
func (r *Row) IsDelete() bool { return r.Flags&FlagDelete != 0 }

// RowError describes one row a decoder skipped.
type RowError struct {
	Row int
	Err error
}

func (e RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Row, e.Err) }

// Decoder turns FsBatch messages of one stream back into rows. It is not safe for concurrent
// use; a stream has one receiving goroutine.
type Decoder struct {
	dirs    map[uint32]*Dir
	root    *Dir
	maxDirs int
	lim     Limits
	// dirBytes is the bytes of the names the table holds (declarations beyond the limits
	// hold none).
	dirBytes int
	// beyond is the one Dir every declaration beyond the limits maps to: a hostile chain of
	// deep or long directories costs a map entry each, not a path.
	beyond *Dir
}

// Limits bound what a row may be (issue 22): its path's bytes and depth, its name's bytes.
// Rows beyond them are rejected (counted, with a short reason); so are the rows under a
// directory declared beyond them. MaxDirs and MaxDirBytes bound the stream's declaration
// table (directories, bytes of their names); a batch that would pass them fails with
// ErrDirTable. A zero MaxDirs keeps the decoder's own (NewDecoder's maxDirs).
type Limits struct {
	MaxPathBytes, MaxDepth, MaxNameBytes int
	MaxDirs, MaxDirBytes                 int
}

// The defaults of Limits' zero fields.
const (
	DefaultMaxPathBytes = 4096
	DefaultMaxDepth     = 1024
	DefaultMaxNameBytes = 1024
)

func (l Limits) orDefaults() Limits {
	l.MaxPathBytes = cmp.Or(max(l.MaxPathBytes, 0), DefaultMaxPathBytes)
	l.MaxDepth = cmp.Or(max(l.MaxDepth, 0), DefaultMaxDepth)
	l.MaxNameBytes = cmp.Or(max(l.MaxNameBytes, 0), DefaultMaxNameBytes)
	l.MaxDirBytes = cmp.Or(max(l.MaxDirBytes, 0), DefaultMaxDirBytes)
	return l
}

// SetLimits sets the rows' and the table's bounds (zero fields: the defaults).
func (d *Decoder) SetLimits(l Limits) {
	if l.MaxDirs > 0 {
		d.maxDirs = l.MaxDirs
	}
	d.lim = l.orDefaults()
}

// beyondLimits says why a name under parent is beyond the limits ("" = it is not).
func (d *Decoder) beyondLimits(parent *Dir, name string) string {
	switch {
	case parent.bad:
		return "under a directory beyond the limits"
	case len(name) > d.lim.MaxNameBytes:
		return fmt.Sprintf("a name of %d bytes (at most %d)", len(name), d.lim.MaxNameBytes)
	case int(parent.depth)+1 > d.lim.MaxDepth:
		return fmt.Sprintf("a path deeper than %d levels", d.lim.MaxDepth)
	case int(parent.plen)+1+len(name) > d.lim.MaxPathBytes:
		return fmt.Sprintf("a path of %d bytes (at most %d)", int(parent.plen)+1+len(name), d.lim.MaxPathBytes)
	}
	return ""
}

// NewDecoder returns a decoder whose declaration table holds at most maxDirs directories
// (<= 0 means DefaultMaxDirs).
func NewDecoder(maxDirs int) *Decoder {
	if maxDirs <= 0 {
		maxDirs = DefaultMaxDirs
	}
	root := NewRoot()
	return &Decoder{dirs: map[uint32]*Dir{RootID: root}, root: root, maxDirs: maxDirs, lim: Limits{}.orDefaults(),
		beyond: &Dir{bad: true, name: "(beyond the limits)"}}
}

// Decode appends the rows of b to dst. index is the batch's EventBatch.index. A malformed batch
// returns an error wrapping ErrMalformed and no rows; rows that are individually invalid are
// skipped and described in rowErrs (at most maxRowErrs of them are kept, all are counted in
// rejected).
func (d *Decoder) Decode(b *fustorv1.FsBatch, index uint64, dst []Row) (rows []Row, rejected int, rowErrs []RowError, err error) {
	n := len(b.GetNames())
	if len(b.GetParentIds()) != n {
		return dst, 0, nil, fmt.Errorf("%w: %d parent_ids for %d names", ErrMalformed, len(b.GetParentIds()), n)
	}
	for _, col := range []struct {
		name string
		l    int
	}{{"flags", len(b.GetFlags())}, {"sizes", len(b.GetSizes())}, {"mtime_deltas", len(b.GetMtimeDeltas())}, {"index_deltas", len(b.GetIndexDeltas())}, {"parent_mtimes", len(b.GetParentMtimes())}} {
		if col.l != 0 && col.l != n {
			return dst, 0, nil, fmt.Errorf("%w: %s has %d values for %d rows", ErrMalformed, col.name, col.l, n)
		}
	}
	if b.GetResetDirs() {
		// Rows already decoded keep their Dirs: a queued batch still resolves as it was sent.
		clear(d.dirs)
		d.dirs[RootID] = d.root
		d.dirBytes = 0
	}
	for i, dir := range b.GetDirs() {
		if err := d.declare(dir); errors.Is(err, ErrDirTable) {
			return dst, 0, nil, err
		} else if err != nil {
			return dst, 0, nil, fmt.Errorf("%w: dirs[%d]: %w", ErrMalformed, i, err)
		}
	}
	flags, sizes, mdel, idel, pm := b.GetFlags(), b.GetSizes(), b.GetMtimeDeltas(), b.GetIndexDeltas(), b.GetParentMtimes()
	mtime, idx := b.GetMtimeBase(), index
	// Sized once: growing a batch's rows by doubling cost Fusion's snapshot CPU on every
	// batch (BenchmarkDecode/fresh).
	dst = slices.Grow(dst, n)
	for i, name := range b.GetNames() {
		r := Row{Name: name, Index: idx}
		if len(mdel) > 0 {
			mtime += mdel[i]
		}
		r.MtimeNs = mtime
		if len(idel) > 0 {
			idx += idel[i]
			r.Index = idx
		}
		if len(flags) > 0 {
			r.Flags = flags[i]
		}
		if len(sizes) > 0 {
			r.Size = sizes[i]
		}
		if len(pm) > 0 {
			r.ParentMtimeNs = pm[i]
		}
		rerr := d.resolve(&r, b.GetParentIds()[i])
		switch {
		case rerr != nil:
		case r.Size > math.MaxInt64:
			rerr = fmt.Errorf("size %d is over 2^63-1", r.Size)
		case len(mdel) > 0 && (mdel[i] > 0 && r.MtimeNs < mtime-mdel[i] || mdel[i] < 0 && r.MtimeNs > mtime-mdel[i]):
			rerr = errors.New("mtime out of range (its delta overflows): rejected")
		default:
			rerr = CheckMtime(r.MtimeNs)
		}
		if rerr != nil {
			rejected++
			if len(rowErrs) < maxRowErrs {
				rowErrs = append(rowErrs, RowError{Row: i, Err: rerr})
			}
			continue
		}
		dst = append(dst, r)
	}
	return dst, rejected, rowErrs, nil
}

const maxRowErrs = 8

func (d *Decoder) resolve(r *Row, parentID uint32) error {
	if r.Flags&^knownFlags != 0 {
		return fmt.Errorf("unknown flag bits %#x", r.Flags&^knownFlags)
	}
	if parentID == 0 {
		if r.Name != "" {
			return errors.New("parent id 0 is only for the root row (empty name)")
		}
		if !r.IsDir() {
			return errors.New("the root row must carry the dir flag")
		}
		return nil
	}
	parent, ok := d.dirs[parentID]
	if !ok {
		return fmt.Errorf("parent id %d was never declared on this stream", parentID)
	}
	if err := fspath.ValidName(r.Name); err != nil {
		return err
	}
	if why := d.beyondLimits(parent, r.Name); why != "" {
		return errors.New(why)
	}
	r.Dir = parent
	return nil
}

func (d *Decoder) declare(dir *fustorv1.FsDir) error {
	if dir.GetId() <= RootID {
		return fmt.Errorf("id %d is reserved", dir.GetId())
	}
	parent, ok := d.dirs[dir.GetParentId()]
	if !ok {
		return fmt.Errorf("dir %d: parent id %d was never declared", dir.GetId(), dir.GetParentId())
	}
	if err := fspath.ValidName(dir.GetName()); err != nil {
		return fmt.Errorf("dir %d: %w", dir.GetId(), err)
	}
	beyond := d.beyondLimits(parent, dir.GetName()) != ""
	if old, ok := d.dirs[dir.GetId()]; ok {
		if beyond && old == d.beyond || old.parent == parent && old.name == dir.GetName() {
			return nil
		}
		return fmt.Errorf("dir %d redeclared under another parent or name (%s)", dir.GetId(), fspath.Short(dir.GetName()))
	}
	if len(d.dirs) >= d.maxDirs {
		return fmt.Errorf("%w: more than %d directories declared on the stream; send reset_dirs", ErrDirTable, d.maxDirs)
	}
	if beyond {
		d.dirs[dir.GetId()] = d.beyond
		return nil
	}
	if d.dirBytes+len(dir.GetName()) > d.lim.MaxDirBytes {
		return fmt.Errorf("%w: the stream's directory names pass %d bytes; send reset_dirs", ErrDirTable, d.lim.MaxDirBytes)
	}
	d.dirBytes += len(dir.GetName())
	d.dirs[dir.GetId()] = parent.child(dir.GetName())
	return nil
}

// Dirs returns how many directories the decoder knows, the root included.
func (d *Decoder) Dirs() int { return len(d.dirs) }

// DirBytes returns the bytes of the names of the directories the decoder knows.
func (d *Decoder) DirBytes() int { return d.dirBytes }

// MaxDirs and MaxDirBytes return the bounds of the declaration table.
func (d *Decoder) MaxDirs() int     { return d.maxDirs }
func (d *Decoder) MaxDirBytes() int { return d.lim.MaxDirBytes }
