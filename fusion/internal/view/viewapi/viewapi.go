// Package viewapi holds the types of the contract between Fusion and its view drivers: what a
// row's origin is, and what queries, sentinel feedback and verification exchange with a
// driver. It sits below both sides so a driver (view/fs, the forest view next) can use the
// types without importing package view, and package view re-exports them (view.Entry, ...)
// so that pipe, receiver, query, admin and app import view alone, never a driver.
//
// Only plain data lives here: no behaviour beyond trivial helpers, no imports of Fusion.
package viewapi

import "time"

// Origin is the activity a row came from; it decides the row's authority.
type Origin int

// Origins, highest authority first (DESIGN.md §5.4).
const (
	OriginRealtime Origin = iota + 1
	OriginSnapshot
	OriginAudit
	OriginOnDemand
)

// Entry is one node as queries see it.
type Entry struct {
	Path, Name                          string
	IsDir                               bool
	Size                                uint64
	MtimeNs, LastUpdatedAtNs            int64
	Suspect, KnownByAgent, AuditSkipped bool
	ChildCount                          int
}

// Stats are subtree aggregates. Dirs excludes the subtree root.
type Stats struct {
	Files, Dirs, TotalSize uint64
	LatestMtimeNs          int64
}

// Limit bounds one answer: at most Entries entries and, when Bytes > 0, about Bytes bytes on
// the wire (each entry costs EntryBytes). At least one entry is always answered, so a page
// bounded by bytes still moves a listing on.
type Limit struct {
	Entries, Bytes int
}

// EntryOverhead bounds what an Entry message costs on the wire beyond its path, name and
// member: tags, lengths, the numbers and both timestamps at their largest
// (query.TestEntryBytesBoundsTheWireSize checks it). It also bounds a Change's.
const EntryOverhead = 112

// EntryBytes is what an answer spends on an entry whose path and name are so long.
func EntryBytes(pathLen, nameLen int) int { return pathLen + nameLen + EntryOverhead }

// Fits reports whether an answer holding n entries of used bytes can take one of cost more.
func (l Limit) Fits(n, used, cost int) bool {
	if n >= l.Entries {
		return false
	}
	return l.Bytes <= 0 || n == 0 || used+cost <= l.Bytes
}

// Matcher selects entries by basename: exactly one of Name and Glob (a path.Match pattern).
type Matcher struct {
	Name, Glob          string
	DirsOnly, FilesOnly bool
}

// ConsistencyStats is a view's consistency state for GetStats and ViewMeta.
type ConsistencyStats struct {
	Suspects, Additions, Deletions, Tombstones int
	AuditCycles                                uint64
	LastAuditEndNs                             int64
	AuditRunning                               bool
	WatermarkNs                                int64
}

// HasBlindSpot reports whether audits found changes no agent saw.
func (s ConsistencyStats) HasBlindSpot() bool { return s.Additions+s.Deletions > 0 }

// SuspectEntry is a suspect file and the time left until it is re-checked.
type SuspectEntry struct {
	Entry     Entry
	ExpiresIn time.Duration
}

// BlindSpotList lists blind spots: additions (nodes found by audits only) and deletions
// (paths removed by audit missing-detection or sentinel).
type BlindSpotList struct {
	Additions, Deletions []string
	Truncated            bool
}

// SentinelItem is what an agent saw at a suspect path.
type SentinelItem struct {
	Path    string
	Exists  bool
	Size    uint64
	MtimeNs int64
}

// DiffKind says how a path differs between the view and the storage.
type DiffKind int

// Difference kinds.
const (
	DiffMissing   DiffKind = iota + 1 // on the storage, not in the view
	DiffExtra                         // in the view, not on the storage
	DiffDifferent                     // in both, other type, size or mtime
)

// Attrs are the compared attributes of one side.
type Attrs struct {
	IsDir   bool
	Size    uint64
	MtimeNs int64
}

// Diff is one difference.
type Diff struct {
	Path          string
	Kind          DiffKind
	Storage, View Attrs
}

// VerifyResult is what a verify found.
type VerifyResult struct {
	Root                                       string
	Walked, Missing, Extra, Different, Changed uint64
	Examples                                   []Diff
	Repaired                                   bool
}

// ChangeKind says what a change did to a node.
type ChangeKind uint8

// Change kinds.
const (
	ChangeCreated ChangeKind = iota + 1
	ChangeModified
	ChangeDeleted // a directory's deletion stands for its whole subtree
	ChangeFlags   // suspect or blind-spot flag on or off
)

// Change is one change applied to a view: its sequence number, the node's path and its state
// after the change (only IsDir for a deletion), and the origin it came from (0: Fusion itself,
// e.g. a suspect that expired).
type Change struct {
	Seq    uint64
	Kind   ChangeKind
	Origin Origin
	Entry  Entry
}

// ChangeFilter selects changes: under Root (a deletion of an ancestor of Root too) and, when
// Match is set, whose basename it accepts.
type ChangeFilter struct {
	Root  string
	Match func(name string) bool
}

// ChangePage is what a read of a change log returns: the changes after a sequence number, the
// sequence to go on after (past the changes the filter dropped too), and whether the number
// asked for was older than the log (Lost: the changes in between are unknown).
type ChangePage struct {
	Changes []Change
	Next    uint64
	Lost    bool
	// More is true when the log holds more changes after Next.
	More bool
}

// CheckpointInfo describes a driver's checkpoint (issue 16: durable views).
type CheckpointInfo struct {
	// WrittenAt is when it was taken (Fusion physical time).
	WrittenAt time.Time
	// WatermarkNs is the view's logical clock then.
	WatermarkNs int64
	// Nodes is the number of nodes it holds, Bytes its size.
	Nodes, Bytes int
	// Instance and Seq are the change log's instance and last sequence then.
	Instance, Seq uint64
	// Encode is the longest writing it held the view's lock (an apply waited at most that).
	Encode time.Duration
}
