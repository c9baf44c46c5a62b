package fsbatch

import (
	"strings"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fspath"
)

// Encoder builds FsBatch messages for one stream, declaring each directory the first time a
// row needs it. When its table reaches maxDirs, or its names DefaultMaxDirBytes/2 bytes, it
// starts over with reset_dirs, so memory stays bounded on endless streams and a decoder with
// the default bounds never refuses it. Not safe for concurrent use.
type Encoder struct {
	ids     map[string]uint32
	next    uint32
	maxDirs int
	// dirBytes is the bytes of the names declared since the last reset.
	dirBytes int
	batch    *fustorv1.FsBatch
	mtime    int64
	index    uint64

	// Columns: the last flushed batch's (until Recycle), and those a new batch reuses.
	flushed     *fustorv1.FsBatch
	flushedCols columns
	spare       columns
	// rowsHint sizes a new batch's columns when there are none to reuse: the last batch's rows.
	rowsHint int
}

// columns are an FsBatch's per-row slices, kept whole: Flush drops all-zero ones from the
// message, not from here.
type columns struct {
	parentIDs, flags []uint32
	names            []string
	sizes            []uint64
	mtimeDeltas      []int64
	indexDeltas      []uint64
	parentMtimes     []int64
}

// NewEncoder returns an encoder whose declaration table holds about maxDirs directories
// (<= 0 means DefaultMaxDirs/2, leaving a decoder with the default bound room for one batch).
func NewEncoder(maxDirs int) *Encoder {
	if maxDirs <= 0 {
		maxDirs = DefaultMaxDirs / 2
	}
	e := &Encoder{maxDirs: maxDirs}
	e.Reset()
	return e
}

// Reset forgets every declaration, for a new stream.
func (e *Encoder) Reset() {
	e.ids = map[string]uint32{fspath.Root: RootID}
	e.next = RootID + 1
	e.dirBytes = 0
	e.batch = nil
}

// Add appends one row, described by its full normalised path, to the batch being built.
// index is the row's event time in ms. It returns the number of rows in the batch.
func (e *Encoder) Add(path string, flags uint32, size uint64, mtimeNs int64, index uint64, parentMtimeNs int64) int {
	b := e.cur(mtimeNs, index)
	var pid uint32
	var name string
	if path == fspath.Root {
		flags |= FlagDir
	} else {
		var dir string
		dir, name = fspath.Split(path)
		pid = e.dirID(dir)
	}
	b.ParentIds = append(b.ParentIds, pid)
	b.Names = append(b.Names, name)
	b.Flags = append(b.Flags, flags)
	b.Sizes = append(b.Sizes, size)
	b.MtimeDeltas = append(b.MtimeDeltas, mtimeNs-e.mtime)
	e.mtime = mtimeNs
	b.IndexDeltas = append(b.IndexDeltas, index-e.index)
	e.index = index
	b.ParentMtimes = append(b.ParentMtimes, parentMtimeNs)
	return len(b.Names)
}

// Len returns the number of rows in the batch being built.
func (e *Encoder) Len() int {
	if e.batch == nil {
		return 0
	}
	return len(e.batch.Names)
}

// Flush returns the batch built so far and the EventBatch.index it must be sent with, and
// starts a new one. Columns that are all zero are left empty to save bytes.
func (e *Encoder) Flush() (*fustorv1.FsBatch, uint64) {
	b := e.batch
	if b == nil {
		return nil, 0
	}
	e.batch = nil
	e.flushed = b
	e.flushedCols = columns{b.ParentIds, b.Flags, b.Names, b.Sizes, b.MtimeDeltas, b.IndexDeltas, b.ParentMtimes}
	e.rowsHint = len(b.Names)
	base := b.IndexDeltas[0]
	b.IndexDeltas[0] = 0
	trimZeros(&b.IndexDeltas)
	trimZeros(&b.Flags)
	trimZeros(&b.Sizes)
	trimZeros(&b.ParentMtimes)
	trimZeros(&b.MtimeDeltas)
	return b, base
}

// Recycle hands back the batch the last Flush returned, once it has been sent (marshalled):
// the next batch appends into its columns instead of allocating them. Without it every batch
// allocates its columns, sized from the one before. The caller must not use b afterwards;
// any other batch is ignored.
func (e *Encoder) Recycle(b *fustorv1.FsBatch) {
	if b == nil || b != e.flushed {
		return
	}
	e.flushed = nil
	clear(e.flushedCols.names) // no name stays alive through a kept column
	e.spare, e.flushedCols = e.flushedCols, columns{}
}

func (e *Encoder) cur(mtimeNs int64, index uint64) *fustorv1.FsBatch {
	if e.batch == nil {
		// The table is reset only between batches, so every id a batch uses is declared in
		// it or known from before; within one batch it may exceed maxDirs by the batch's dirs.
		reset := len(e.ids) >= e.maxDirs || e.dirBytes >= DefaultMaxDirBytes/2
		if reset {
			e.ids = map[string]uint32{fspath.Root: RootID}
			e.next = RootID + 1
			e.dirBytes = 0
		}
		c := e.spare
		e.spare = columns{}
		if c.names == nil {
			n := e.rowsHint
			c = columns{make([]uint32, 0, n), make([]uint32, 0, n), make([]string, 0, n), make([]uint64, 0, n),
				make([]int64, 0, n), make([]uint64, 0, n), make([]int64, 0, n)}
		}
		e.batch = &fustorv1.FsBatch{MtimeBase: mtimeNs, ResetDirs: reset,
			ParentIds: c.parentIDs[:0], Flags: c.flags[:0], Names: c.names[:0], Sizes: c.sizes[:0],
			MtimeDeltas: c.mtimeDeltas[:0], IndexDeltas: c.indexDeltas[:0], ParentMtimes: c.parentMtimes[:0]}
		e.mtime = mtimeNs
		// The first index delta is relative to 0 and becomes the batch index in Flush.
		e.index = 0
	}
	return e.batch
}

func (e *Encoder) dirID(dir string) uint32 {
	if id, ok := e.ids[dir]; ok {
		return id
	}
	parent, name := fspath.Split(dir)
	pid := e.dirID(parent)
	id := e.next
	e.next++
	// dir is usually a slice of a row's path, which may share its memory with many other
	// paths (the agent's walk cuts a listing's paths from one block): keep a copy.
	e.ids[strings.Clone(dir)] = id
	e.dirBytes += len(name)
	e.batch.Dirs = append(e.batch.Dirs, &fustorv1.FsDir{Id: id, ParentId: pid, Name: name})
	return id
}

type number interface{ ~uint32 | ~uint64 | ~int64 }

func trimZeros[T number](s *[]T) {
	for _, v := range *s {
		if v != 0 {
			return
		}
	}
	*s = nil
}
