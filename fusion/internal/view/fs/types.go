package fs

import "github.com/fustor/fustor/fusion/internal/view/viewapi"

// The fs view speaks the driver contract's types (package viewapi); the aliases keep this
// package's code and tests in its own terms without a second set of types to convert.
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
