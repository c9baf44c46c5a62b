// Package source is the agent's source contract (DESIGN.md §2, §4): what a source emits (Event,
// with its Origin), what its walks report (WalkStats), the audit's cache and options, what the
// sentinel sees, and the interfaces a source implements, split by capability.
//
// The pipe and the bus are written against this package only; the drivers implement it:
// source/fs (walk + inotify), source/journal (a replayable change log) and source/s3 (an object
// store: listings, and an incremental listing for realtime) emit fs rows (Event); source/sql (a
// database table) emits rows of a generic schema (Row, rows.go: RowSnapshotter and its
// RowAuditor and RowResumer, the generic counterparts of the capabilities below). Only agent/internal/app
// names a driver (agent/internal/app/layers_test.go checks it), so a new source is a new driver
// package and a case in app, never a change to the pipe.
//
// Capabilities:
//
//   - Snapshotter (every source): walk a subtree on demand: the snapshot, on-demand scans.
//   - Watcher: realtime through the shared bus; its position is lost whenever it stops, so a
//     session on it always starts with a snapshot (inotify).
//   - Resumer: realtime from the source's own log, from an index; no bus, no snapshot when the
//     committed index is still in the log.
//   - Auditor, Sentineler (optional): the leader's periodic audit and its sentinel answers.
//   - Counters (optional): the source's counters for heartbeats and metrics.
//   - RealtimeReporter (optional): whether a running watcher sees changes right now.
//
// Describe sums up what a source can do (Capabilities), as sent to Fusion.
package source

import (
	"context"
	"strconv"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// Origin tells which activity produced an event; on the wire it is the batch's MessageSource.
type Origin int

// Event origins.
const (
	OriginRealtime Origin = iota
	OriginSnapshot
	OriginAudit
	OriginOnDemand
)

func (o Origin) String() string {
	switch o {
	case OriginRealtime:
		return "realtime"
	case OriginSnapshot:
		return "snapshot"
	case OriginAudit:
		return "audit"
	case OriginOnDemand:
		return "on_demand"
	}
	return "origin(" + strconv.Itoa(int(o)) + ")"
}

// IsWalk reports whether o is produced by a walk (Snapshotter.Snapshot or Auditor.Audit)
// rather than by realtime.
func (o Origin) IsWalk() bool {
	return o == OriginSnapshot || o == OriginAudit || o == OriginOnDemand
}

// Event is one fs-schema row.
//
// Path may share its memory with the other paths of the listing it came from (a walk carves
// a directory's paths out of one block): whatever keeps a Path longer than the event's trip
// to the sender must copy it (strings.Clone), or it keeps the whole block alive.
type Event struct {
	Origin Origin
	// Path is normalised (sdk/fspath): relative to the source's root, starting with "/".
	Path string
	// Flags holds fsbatch.Flag* bits.
	Flags   uint32
	Size    uint64
	MtimeNs int64
	// Index is the event time in ms from the source's corrected clock (or, for a log, the
	// entry's index).
	Index uint64
	// ParentMtimeNs is the parent directory's mtime; only audit walks fill it.
	ParentMtimeNs int64
}

// IsDir reports whether the event is about a directory.
func (e *Event) IsDir() bool { return e.Flags&fsbatch.FlagDir != 0 }

// IsDelete reports whether the event is a delete.
func (e *Event) IsDelete() bool { return e.Flags&fsbatch.FlagDelete != 0 }

// SentinelItem is what the sentinel saw at one path.
type SentinelItem struct {
	Path    string
	Exists  bool
	Size    uint64
	MtimeNs int64
}

// Snapshotter is what every source is: it can walk a subtree.
type Snapshotter interface {
	// Snapshot walks the subtree at rel ("/" for the whole source) and calls emit with
	// batches of events of the given origin (OriginSnapshot, OriginAudit or
	// OriginOnDemand), parents before children. emit is never called concurrently; it owns
	// the slice it is given and may block, which holds the walk back. An emit error stops
	// the walk and is returned, as is a cancelled ctx.
	Snapshot(ctx context.Context, rel string, origin Origin, emit func([]Event) error) (WalkStats, error)
}

// Auditor is a source that audits the whole tree (DESIGN.md §4.3), skipping what the cache
// says is unchanged as far as opts allow. The cache is updated as the walk goes.
type Auditor interface {
	Audit(ctx context.Context, cache *AuditCache, opts AuditOptions, emit func([]Event) error) (WalkStats, error)
}

// Sentineler is a source that answers the sentinel: what is at each suspect path now. A path
// that cannot be checked is left out, never reported missing.
type Sentineler interface {
	Sentinel(paths []string) []SentinelItem
}

// Counters is a source with counters, by stable name (heartbeat progress, metrics). Keys
// starting with "skipped_" count entries left out for a problem.
type Counters interface {
	Counters() map[string]uint64
}

// Watcher is a realtime source whose events go through the shared bus (DESIGN.md §4.2): Watch
// emits them (from one goroutine) until ctx is done or the watcher fails. It cannot resume:
// what changed while it was not watching is lost ("position lost" → snapshot).
type Watcher interface {
	Watch(ctx context.Context, emit func(Event)) error
}

// OverflowNotifier is a Watcher that knows when realtime cannot carry what happened — it
// lost events (an inotify queue overflow), or it found deletes no event witnessed (an object
// store's listing diff): f is called then, so the pipes on it schedule an audit, whose listing
// lets Fusion remove what is gone as blind-spot deletions.
type OverflowNotifier interface {
	SetOnOverflow(f func())
}

// RealtimeReporter is a Watcher whose watching can run and yet see nothing for a while (an
// object store's listings failing): Realtime reports whether it works right now, and the
// pipes on it report can_realtime accordingly. Optional; without it a running Watch counts.
type RealtimeReporter interface {
	Realtime() bool
}

// Resumer is a realtime source that can continue from a committed index (a replayable log),
// unlike inotify, whose position is lost on restart. Its realtime bypasses the bus.
type Resumer interface {
	// Follow emits, as OriginRealtime events in batches of at most batch, every entry with
	// an index above from, then what is appended, until ctx is done.
	Follow(ctx context.Context, from uint64, batch int, emit func([]Event) error) error
	// LastIndex is the index of the last entry (0 for an empty log): where a session with
	// nothing committed starts following, its snapshot covering what came before.
	LastIndex() (uint64, error)
}

// Capabilities is what a source can do, as a session declares it to Fusion.
type Capabilities struct {
	// Realtime: the source produces realtime events at all (Watcher or Resumer). Whether a
	// watcher runs right now is the agent's to say, per heartbeat.
	Realtime bool
	// Resume: realtime can continue from a committed index (Resumer), so a reconnecting
	// session needs no snapshot.
	Resume bool
	// Audit, Sentinel: the optional leader duties the source supports.
	Audit, Sentinel bool
}

// Describe returns what src can do, from the interfaces it implements.
func Describe(src Snapshotter) Capabilities {
	_, watch := src.(Watcher)
	_, resume := src.(Resumer)
	_, audit := src.(Auditor)
	_, sentinel := src.(Sentineler)
	return Capabilities{Realtime: watch || resume, Resume: resume, Audit: audit, Sentinel: sentinel}
}
