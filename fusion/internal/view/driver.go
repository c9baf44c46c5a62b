package view

import (
	"context"
	"io"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/viewapi"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// Driver is what a view driver (fs today, the forest view next) offers Fusion. The pipe
// applies and controls through Ingest, the query service reads through Reader and compares
// through Verifier; none of them knows which driver it talks to. NewRegistry picks the driver
// from the view's configuration.
//
// Calls are per batch or per query, never per row, so the interface costs nothing on the
// hot paths. A driver is safe for concurrent use: the pipe's loop is the only writer, queries
// read concurrently with it.
type Driver interface {
	Ingest
	Verifier
	Reader
	Checkpointer
}

// Checkpointer writes and loads the driver's whole state (issue 16: durable views).
type Checkpointer interface {
	// WriteCheckpoint writes the state to w; the pipe's loop waits while it is taken.
	WriteCheckpoint(w io.Writer) (CheckpointInfo, error)
	// LoadCheckpoint replaces the state with a checkpoint, or refuses it (errs wrapping the
	// driver's refusal) and keeps the state as it was.
	LoadCheckpoint(data []byte) (CheckpointInfo, error)
}

// Ingest is the write side, called from the pipe's loop in stream order.
type Ingest interface {
	// Apply applies a decoded batch of one origin. scanStartNs is when the scan that produced
	// the rows started (Fusion physical time; 0 = unknown or not a scan): realtime evidence
	// newer than it wins (DESIGN.md §5.4). Rows dropped by arbitration count as applied;
	// invalid rows are rejected and counted, firstErr says why the first was.
	Apply(origin Origin, scanStartNs int64, rows []fsbatch.Row) (applied, rejected int, firstErr error)
	// SnapshotStart opens the snapshot of session owner; SnapshotEnd closes it and, unless
	// it failed, removes what it did not report (returned, DESIGN.md §5.1).
	SnapshotStart(owner string)
	SnapshotEnd(owner string, failed bool) (deleted []string)
	// AuditStart opens an audit; AuditEnd closes it and, unless it failed, removes what the
	// audit's fully listed directories no longer hold (returned, DESIGN.md §5.4).
	AuditStart()
	AuditEnd(failed bool) (deleted []string)
	// SentinelFeedback applies an agent's answer for suspect paths.
	SentinelFeedback(items []SentinelItem)
	// Tick lets the driver expire suspects when no batch arrives.
	Tick()
	// Reset drops everything (a live view whose last session ended).
	Reset()
	// Configure takes new limits in place (a reload), keeping the data: nodes held, the hot
	// threshold and the tombstone TTL (zero values mean the driver's defaults).
	Configure(maxNodes int, hotThreshold, tombstoneTTL time.Duration)
}

// Verifier compares a leader's deep walk with the view (DESIGN.md §5.6). One verify per view
// is open at a time; id is the command whose walk answers it.
type Verifier interface {
	// VerifyStart opens a verify of root; an open one is errs.ErrVerifyRunning.
	VerifyStart(id, root string, maxExamples int, repair bool) error
	// VerifyRows compares a batch of the walk (from the pipe's loop, in stream order).
	VerifyRows(id string, rows []fsbatch.Row) (compared, rejected int, firstErr error)
	// VerifyAbort drops the verify of id, if open.
	VerifyAbort(id string)
	// VerifyEnd closes the verify of id and returns what it found.
	VerifyEnd(id string) (VerifyResult, error)
}

// Reader answers queries. Paths are clean (fspath.Clean); an unknown path is of kind
// errs.ErrNotFound, a directory operation on a file errs.ErrNotDir. Answers are bounded by
// limit, in entries and in bytes, never by the size of the view. The walks (List, Walk, Find,
// FindPaths) stop when ctx ends and return its error: a client that cancelled or whose
// deadline passed costs no more work.
type Reader interface {
	// Stat describes one path.
	Stat(path string) (Entry, error)
	// List returns entries below dir depth first (children sorted by name), maxDepth levels
	// deep (<= 1: direct children), after the path after ("" = from the start), up to limit
	// (at least one); next is the last path returned when more remain, "" otherwise.
	List(ctx context.Context, dir string, maxDepth int, after string, limit Limit) (entries []Entry, next string, err error)
	// Walk calls fn for the entries below root, depth first and sorted, maxDepth levels deep
	// (0 = unlimited), until fn returns false. fn must not call the driver (a lock is held).
	Walk(ctx context.Context, root string, maxDepth int, fn func(Entry) bool) error
	// Find returns entries below root whose basename matches, sorted by path, up to limit;
	// truncated says the limit cut the answer.
	Find(ctx context.Context, root string, m Matcher, limit Limit) (entries []Entry, truncated bool, err error)
	// FindPaths is Find answering only paths, packed NUL-ended with their directories'
	// indexes (FindResponse.packed_paths).
	FindPaths(ctx context.Context, root string, m Matcher, limit Limit) (packed []byte, dirs []uint32, truncated bool, err error)
	// Visits returns the units of work (directories, names, children read) the walks above
	// have done since the driver was built.
	Visits() uint64
	// Stats returns the subtree aggregates at path.
	Stats(path string) (Stats, error)
	// Suspects lists suspect files at or below root, sorted by path.
	Suspects(root string, limit int) (list []SuspectEntry, truncated bool)
	// BlindSpots lists blind spots at or below root, at most limit of each kind.
	BlindSpots(root string, limit int) BlindSpotList
	// Consistency returns the view's consistency state.
	Consistency() ConsistencyStats
	// Len returns the number of nodes held; MemoryBytes estimates the heap they take.
	Len() int
	MemoryBytes() uint64
	ChangeLog
}

// ChangeLog is a driver's record of the changes it applied (DESIGN.md §5.6): each has the next
// sequence number of the driver's instance, which a Reset replaces.
type ChangeLog interface {
	// ChangeCursor returns the instance and the sequence of the last change.
	ChangeCursor() (instance, last uint64)
	// Changes returns up to limit changes after sequence after that pass the filter.
	Changes(after uint64, f ChangeFilter, limit int) ChangePage
	// Subscribe makes ch receive a non-blocking ping after changes are applied.
	Subscribe(ch chan<- struct{}) (cancel func())
	// LastChange returns when the last change was applied (Fusion ns; 0 = none).
	LastChange() int64
	// DeliveryHint says whether a bulk pass (snapshot, audit) is open, the sequence of its
	// first change and that of the last change of another origin: watchers may hold the
	// pass's changes until it ends.
	DeliveryHint() (bulk bool, bulkFrom, lastLive uint64)
	// Released returns a channel closed when held changes must go: a bulk pass's end, a
	// change of another origin, a reset. Taken before DeliveryHint is read.
	Released() <-chan struct{}
	// ChangeLogStats returns the changes held and the bytes they take.
	ChangeLogStats() (entries, bytes int)
}

// The driver contract's types, re-exported so callers import view alone.
type (
	Origin           = viewapi.Origin
	Entry            = viewapi.Entry
	Stats            = viewapi.Stats
	Matcher          = viewapi.Matcher
	ConsistencyStats = viewapi.ConsistencyStats
	CheckpointInfo   = viewapi.CheckpointInfo
	SuspectEntry     = viewapi.SuspectEntry
	BlindSpotList    = viewapi.BlindSpotList
	SentinelItem     = viewapi.SentinelItem
	DiffKind         = viewapi.DiffKind
	Attrs            = viewapi.Attrs
	Diff             = viewapi.Diff
	VerifyResult     = viewapi.VerifyResult
	ChangeKind       = viewapi.ChangeKind
	Change           = viewapi.Change
	ChangeFilter     = viewapi.ChangeFilter
	ChangePage       = viewapi.ChangePage
	Limit            = viewapi.Limit
)

// EntryBytes is what an answer spends on an entry (viewapi.EntryBytes).
func EntryBytes(pathLen, nameLen int) int { return viewapi.EntryBytes(pathLen, nameLen) }

// Change kinds.
const (
	ChangeCreated  = viewapi.ChangeCreated
	ChangeModified = viewapi.ChangeModified
	ChangeDeleted  = viewapi.ChangeDeleted
	ChangeFlags    = viewapi.ChangeFlags
)

// Origins, highest authority first (DESIGN.md §5.4).
const (
	OriginRealtime = viewapi.OriginRealtime
	OriginSnapshot = viewapi.OriginSnapshot
	OriginAudit    = viewapi.OriginAudit
	OriginOnDemand = viewapi.OriginOnDemand
)

// Difference kinds of a verify.
const (
	DiffMissing   = viewapi.DiffMissing
	DiffExtra     = viewapi.DiffExtra
	DiffDifferent = viewapi.DiffDifferent
)

// RowsDriver is what the rows driver (view/rows: a keyed row store for a schema other than
// fs) offers Fusion. A rows view's member holds one in Member.Rows and no Driver: the fs
// contract above (trees, paths, suspects, verify, the change log) has no meaning for rows,
// and a query of it on a rows view is refused (Member.FS). Like Driver, calls are per batch
// or per query and the pipe's loop is the only writer.
type RowsDriver interface {
	// Apply applies a batch of one origin in order; rows arbitration drops count as applied,
	// invalid rows are rejected and counted, firstErr says why the first was.
	Apply(origin Origin, rows []Row) (applied, rejected int, firstErr error)
	// SnapshotStart and SnapshotEnd bound the snapshot of session owner, AuditStart and
	// AuditEnd an audit; an end that did not fail removes the rows the walk did not report
	// and no realtime event wrote meanwhile, and returns how many.
	SnapshotStart(owner string)
	SnapshotEnd(owner string, failed bool) (deleted int)
	AuditStart()
	AuditEnd(failed bool) (deleted int)
	// Tick expires tombstones when no batch arrives.
	Tick()
	// Reset drops everything (a live view whose last session ended).
	Reset()
	// Configure takes new bounds in place (a reload), keeping the rows.
	Configure(maxRows int, tombstoneTTL time.Duration)
	// Get returns the row of key (errs.ErrNotFound when there is none).
	Get(key string) (StoredRow, error)
	// List returns a page of the rows whose key starts with prefix, after the key after,
	// passing the filter, in key order, bounded by limit (see rows.Store.List).
	List(ctx context.Context, prefix, after string, f RowFilter, limit Limit) (RowPage, error)
	// Stats returns the figures; Len the rows held; MemoryBytes the heap they take.
	Stats() RowStats
	Len() int
	MemoryBytes() uint64
	// Instance numbers the state since the driver was built or last reset.
	Instance() uint64
	Checkpointer
}

// The rows driver's contract types.
type (
	Row       = viewapi.Row
	StoredRow = viewapi.StoredRow
	RowFilter = viewapi.RowFilter
	RowPage   = viewapi.RowPage
	RowStats  = viewapi.RowStats
)

// RowBytes is what an answer spends on a stored row (viewapi.RowBytes).
func RowBytes(r *StoredRow) int { return viewapi.RowBytes(r) }
