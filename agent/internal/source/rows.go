package source

import "context"

// Row is one row of a generic schema (DESIGN.md §2, §3): a keyed record of text fields, such as
// a database table's row. Unlike Event it is not typed: what its fields mean is the schema's,
// and the pipe's fields_mapping may project, rename and cast them before they are sent
// (fustor.v1.GenericRow on the wire).
type Row struct {
	// Key identifies the row within its schema (its primary key as text).
	Key string
	// Delete is true when the row was removed.
	Delete bool
	// Fields are the row's columns as text; a NULL column is left out.
	Fields map[string]string
	// Index is the row's version: the source's cursor (ms for a time, else the integer).
	Index uint64
}

// Schema is a generic schema's name and version, as a session declares them to Fusion.
type Schema struct {
	Name    string
	Version uint32
}

// RowSnapshotter is what a generic-schema source is, instead of a Snapshotter: it lists its
// rows. The pipe sends them as GenericBatch rows of Schema, after its fields_mapping.
//
// A generic source's capabilities mirror the fs ones: RowAuditor (the leader's audit, a full
// listing, so rows gone from the source are found missing by Fusion), RowResumer (realtime
// from the source's own version column); Counters and RealtimeReporter as for any source.
type RowSnapshotter interface {
	// Schema is the schema the rows are declared as.
	Schema() Schema
	// SnapshotRows lists every row and calls emit with batches of them, of the given origin
	// (OriginSnapshot, OriginAudit or OriginOnDemand). emit is never called concurrently; it
	// owns the slice it is given and may block. An emit error stops the listing and is
	// returned, as is a cancelled ctx.
	SnapshotRows(ctx context.Context, origin Origin, emit func([]Row) error) (WalkStats, error)
}

// RowAuditor is a generic source that audits: a complete listing of its rows (origin audit),
// after which Fusion removes the rows the listing lacks.
type RowAuditor interface {
	AuditRows(ctx context.Context, emit func([]Row) error) (WalkStats, error)
}

// RowResumer is a generic source whose realtime continues from an index, as Resumer.
type RowResumer interface {
	// FollowRows emits, as realtime rows in batches of at most batch, every row changed at an
	// index from on, then what changes, until ctx is done.
	FollowRows(ctx context.Context, from uint64, batch int, emit func([]Row) error) error
	// LastIndex is the highest index of the source now (0 when empty). Unlike Resumer's it
	// takes a context: it is a statement to a database that may be down.
	LastIndex(ctx context.Context) (uint64, error)
}

// DescribeRows returns what a generic source can do, from the interfaces it implements.
func DescribeRows(src RowSnapshotter) Capabilities {
	_, resume := src.(RowResumer)
	_, audit := src.(RowAuditor)
	return Capabilities{Realtime: resume, Resume: resume, Audit: audit}
}
