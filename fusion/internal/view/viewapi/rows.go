package viewapi

// The rows driver's contract types (a keyed row store for schemas other than fs: a database
// table's rows after the pipe's fields_mapping). They are the wire's GenericRow, decoded.

// Row is one ingested row of a non-fs schema: Key identifies it within the schema, Delete says
// it was removed, Fields are its columns, Index its event time (ms).
type Row struct {
	Key    string
	Delete bool
	Fields map[string]string
	Index  uint64
}

// StoredRow is a row a rows view holds: its fields, the index of the event that wrote it, the
// origin of that event and when it was applied (Fusion physical time, ns).
type StoredRow struct {
	Key       string
	Fields    map[string]string
	Index     uint64
	Origin    Origin
	UpdatedNs int64
}

// RowFilter keeps the rows whose field Field equals Value (no Field: every row).
type RowFilter struct {
	Field, Value string
}

// Match reports whether r passes the filter.
func (f RowFilter) Match(r *StoredRow) bool {
	if f.Field == "" {
		return true
	}
	v, ok := r.Fields[f.Field]
	return ok && v == f.Value
}

// RowPage is one page of a listing, sorted by key: Next is the key to continue after ("" on
// the last page).
type RowPage struct {
	Rows []StoredRow
	Next string
}

// RowStats are a rows view's figures.
type RowStats struct {
	// Rows and Tombstones held; LastIndex is the highest index applied.
	Rows, Tombstones int
	LastIndex        uint64
	// Applied counts rows written or deleted, Stale rows arbitration dropped (an older event
	// than what the view holds), Rejected invalid rows and rows over the view's bounds.
	Applied, Stale, Rejected uint64
	// BlindSpotDeletions counts rows removed at a snapshot's or audit's end because the walk
	// did not report them and no event had deleted them (deletes no agent witnessed).
	BlindSpotDeletions uint64
	// LastChangeNs is when the last change was applied (Fusion ns; 0 = none).
	LastChangeNs int64
	// SnapshotRunning and AuditRunning say a walk is open.
	SnapshotRunning, AuditRunning bool
}

// RowBytes is what an answer spends on a stored row: its key, fields and a fixed overhead
// (tags, lengths, the index, origin and timestamp).
func RowBytes(r *StoredRow) int {
	n := len(r.Key) + EntryOverhead
	for k, v := range r.Fields {
		n += len(k) + len(v) + 8
	}
	return n
}
