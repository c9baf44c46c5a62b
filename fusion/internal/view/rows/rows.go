// Package rows is the rows view driver: a keyed row store for the schemas other than fs (a
// database table's rows after the pipe's fields_mapping, sent as GenericRows). Each key holds
// its fields, the index (event time, ms) of the event that wrote it and that event's origin.
// It mirrors the fs driver's arbitration (DESIGN.md §5) on keys instead of paths:
//
//   - Realtime first, the index decides. A realtime row or delete is applied unless the key's
//     stored row or tombstone has a higher index (a tie goes to the later realtime event). A
//     snapshot, audit or on-demand row is applied unless a realtime row or a tombstone of the
//     key has an index at least as high (on a tie the realtime event wins: the walk may have
//     read the row before it). Over a row a walk wrote, a walk that started later read it
//     later: its read is the freshest evidence and replaces it whatever the direction of the
//     index (DESIGN.md §5.4's audit upsert); a walk that did not start later (the same walk,
//     or one open since before: an audit left open beside a snapshot, an on-demand read)
//     replaces it only with an index at least as high, so two overlapping walks cannot move a
//     row back in time. An on-demand read counts as a walk started at the last walk's start.
//   - A delete that wins removes the row and leaves a tombstone holding its index, so a walk
//     that read the row before the delete cannot bring it back. Tombstones expire after the
//     view's tombstone_ttl and are bounded by max_nodes (the oldest go first).
//   - A row arbitration drops is stale: not applied, counted (RowStats.Stale), and it counts
//     as applied in the Ack, as the fs driver's do: it was not refused, it lost to newer
//     evidence.
//   - SnapshotEnd and AuditEnd that did not fail remove every row the walk did not report and
//     nothing wrote since the walk started (a realtime event, the other walk, an on-demand
//     read: a write the walk may have listed past): the listing diff, deletes no event
//     witnessed, counted as blind-spot deletions (RowStats.BlindSpotDeletions). They leave no
//     tombstone: no event is known to have deleted the row, and what the walks knew of it goes
//     with it (an audit open meanwhile treats a row that comes back as a new one). A failed
//     walk removes nothing.
//   - Bounds: max_nodes rows (a new key beyond is refused, counted), and Options' key and
//     field bounds; an invalid row (empty key, too long, too many or too large fields) is
//     refused with a reason and counted, never applied.
//
// Queries read a key (Get) or list keys in order (List: a prefix, a seek key, an equality
// filter on one field), bounded in rows and bytes and in the keys one page examines, so no
// answer costs the size of the view. The pipe's loop is the only writer; queries read
// concurrently under a read lock.
package rows

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view/viewapi"
)

// Bounds defaults (Options' zero values).
const (
	DefaultMaxRows      = 10_000_000
	DefaultMaxKeyBytes  = 4096
	DefaultMaxFields    = 256
	DefaultMaxRowBytes  = 1 << 20
	DefaultTombstoneTTL = time.Hour
	// MaxScanPerPage bounds the keys one List examines: a filter that matches little answers
	// a short page and a next token instead of walking the whole view.
	MaxScanPerPage = 100_000
)

// ErrNotFound is returned for a key the view does not hold (errs maps it to NOT_FOUND).
var ErrNotFound = errs.New(errs.ErrNotFound, "row not found")

// ErrRow is wrapped by the reason a row was refused.
var ErrRow = errs.New(errs.ErrInvalidArgument, "row refused")

// ErrCheckpoint is returned for a checkpoint that cannot be loaded.
var ErrCheckpoint = errors.New("checkpoint refused")

// Options configure a store.
type Options struct {
	// Name names the view in logs.
	Name string
	// MaxRows bounds the rows (and, apart, the tombstones) held.
	MaxRows int
	// MaxKeyBytes, MaxFields and MaxRowBytes bound one row: its key, its number of fields and
	// the bytes of its key, names and values.
	MaxKeyBytes, MaxFields, MaxRowBytes int
	// TombstoneTTL is how long a delete is remembered against lagging walks.
	TombstoneTTL time.Duration
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

type row struct {
	fields    map[string]string
	index     uint64
	origin    viewapi.Origin
	updatedNs int64
	bytes     int
	// walkEpoch is, for a row a walk wrote, the epoch of that walk's start (0: none open, or
	// written before a restore): a walk that started later replaces it whatever the index.
	walkEpoch uint64
	marks
}

// marks are what the walks know of a key; a tombstone keeps its row's, and a row re-created
// over a tombstone takes them back, so a walk that reported the key (as a row or a delete)
// never removes it at its end.
type marks struct {
	// wrEpoch is the walk epoch of the last write of any origin; seenSnap and seenAudit the
	// epochs of the last snapshot and audit that reported the key.
	wrEpoch, seenSnap, seenAudit uint64
}

type tomb struct {
	index     uint64
	deletedNs int64
	marks
	// seq tells this tombstone from an earlier one of the key in tombFIFO.
	seq uint64
}

type tombRef struct {
	key string
	seq uint64
}

// walk is an open snapshot or audit.
type walk struct {
	open  bool
	owner string
	epoch uint64
}

// Store is a rows view. It is safe for concurrent use.
type Store struct {
	log  *zap.Logger
	name string
	now  func() time.Time

	mu       sync.RWMutex
	opts     Options
	rows     map[string]*row
	keys     index
	tombs    map[string]tomb
	tombFIFO []tombRef // in deletion order; entries whose tombstone changed are skipped
	tombSeq  uint64
	bytes    int // the rows' estimated heap
	tombMem  int // the tombstones' estimated heap (tombCost each)
	epoch    uint64
	snap     walk
	audit    walk
	instance uint64

	lastIndex                              uint64
	lastChange                             int64
	applied, stale, rejected, blindDeletes uint64
}

// instances numbers the stores' lifetimes process-wide, so a reset store never shows the
// instance it had before.
var instances struct {
	sync.Mutex
	n uint64
}

func nextInstance() uint64 {
	instances.Lock()
	defer instances.Unlock()
	instances.n++
	return instances.n
}

// New returns an empty store.
func New(log *zap.Logger, o Options) *Store {
	if log == nil {
		log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{log: log, name: o.Name, now: o.Now, rows: map[string]*row{}, tombs: map[string]tomb{}, instance: nextInstance()}
	s.opts = normalize(o)
	return s
}

func normalize(o Options) Options {
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.MaxKeyBytes <= 0 {
		o.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if o.MaxFields <= 0 {
		o.MaxFields = DefaultMaxFields
	}
	if o.MaxRowBytes <= 0 {
		o.MaxRowBytes = DefaultMaxRowBytes
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = DefaultTombstoneTTL
	}
	return o
}

// Configure takes new bounds in place (a reload), keeping the rows (0 = the defaults). Rows
// beyond a lowered max stay; new keys are refused until the view is below it.
func (s *Store) Configure(maxRows int, tombstoneTTL time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.opts
	o.MaxRows, o.TombstoneTTL = maxRows, tombstoneTTL
	s.opts = normalize(o)
	s.expireLocked()
}

// checkKey returns why key cannot be held, or nil.
func checkKey(o Options, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrRow)
	case len(key) > o.MaxKeyBytes:
		return fmt.Errorf("%w: key of %d bytes is over %d", ErrRow, len(key), o.MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not UTF-8", ErrRow)
	}
	return nil
}

// checkRow returns why r cannot be applied under o, or nil.
func checkRow(o Options, r *viewapi.Row) error {
	if err := checkKey(o, r.Key); err != nil {
		return err
	}
	if len(r.Fields) > o.MaxFields {
		return fmt.Errorf("%w: key %s has %d fields, over %d", ErrRow, quote(r.Key), len(r.Fields), o.MaxFields)
	}
	if n := rowBytes(r.Key, r.Fields); n > o.MaxRowBytes {
		return fmt.Errorf("%w: key %s has %d bytes of key and fields, over %d", ErrRow, quote(r.Key), n, o.MaxRowBytes)
	}
	for k := range r.Fields {
		if k == "" {
			return fmt.Errorf("%w: key %s has a field with an empty name", ErrRow, quote(r.Key))
		}
	}
	return nil
}

// quote quotes a key for a message, at most 64 bytes of it (an Ack quotes no more of a name).
func quote(key string) string {
	const most = 64
	if len(key) <= most {
		return strconv.Quote(key)
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return strconv.Quote(key[:cut]) + "..."
}

func rowBytes(key string, fields map[string]string) int {
	n := len(key)
	for k, v := range fields {
		n += len(k) + len(v)
	}
	return n
}

// rowOverhead is what a row costs the heap beyond its strings (map slots, the struct, the
// index slot): an estimate for MemoryBytes.
const rowOverhead = 160

// tombOverhead is what a tombstone costs beyond its key (the map slot, the struct, its FIFO
// reference): an estimate for MemoryBytes.
const tombOverhead = 96

// tombCost estimates a tombstone's heap: its key counts twice, as a row's strings do, so a
// view of long keys deleted in bulk is not reported small.
func tombCost(key string) int { return 2*len(key) + tombOverhead }

// Apply applies a batch of one origin in order; stale rows count as applied, invalid rows are
// rejected and counted, firstErr says why the first was.
func (s *Store) Apply(origin viewapi.Origin, rows []viewapi.Row) (applied, rejected int, firstErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	for i := range rows {
		r := &rows[i]
		err := checkRow(s.opts, r)
		if err == nil {
			err = s.applyLocked(origin, r, now)
		}
		if err != nil {
			rejected++
			s.rejected++
			if firstErr == nil {
				firstErr = fmt.Errorf("row %d: %w", i, err)
			}
			continue
		}
		applied++
	}
	if applied > 0 {
		s.expireLocked()
	}
	if rejected > 0 {
		s.log.Warn("rejected rows", zap.String("view", s.name), zap.Int("rejected", rejected), zap.Error(firstErr))
	}
	return applied, rejected, firstErr
}

// applyLocked arbitrates one valid row (see the package comment).
func (s *Store) applyLocked(origin viewapi.Origin, r *viewapi.Row, now int64) error {
	realtime := origin == viewapi.OriginRealtime
	cur := s.rows[r.Key]
	t, hasTomb := s.tombs[r.Key]
	// A walk that meets the key, applied or not, has seen it: its end must not remove it.
	var km marks
	var heldIndex, heldWalk uint64
	var heldRealtime, held bool
	switch {
	case cur != nil:
		s.markSeen(origin, &cur.marks)
		km, heldIndex, heldRealtime, held = cur.marks, cur.index, cur.origin == viewapi.OriginRealtime, true
		heldWalk = cur.walkEpoch
	case hasTomb:
		s.markSeen(origin, &t.marks)
		s.tombs[r.Key] = t
		km, heldIndex, heldRealtime, held = t.marks, t.index, true, true
	default:
		s.markSeen(origin, &km)
	}
	walkEpoch := s.walkEpoch(origin)
	if held {
		var stale bool
		switch {
		case realtime:
			stale = heldIndex > r.Index // only a newer event wins over it
		case heldRealtime:
			stale = heldIndex >= r.Index // the walk may have read the row before the event
		default:
			// Two walks' reads: the later walk's wins; else the index decides.
			stale = heldIndex > r.Index && walkEpoch <= heldWalk
		}
		if stale {
			s.stale++
			return nil
		}
	}
	if r.Delete {
		if cur != nil {
			s.removeLocked(r.Key, cur)
		}
		s.tombLocked(r.Key, r.Index, now, km)
		s.applied++
		s.lastChange, s.lastIndex = now, max(s.lastIndex, r.Index)
		return nil
	}
	if cur == nil {
		if len(s.rows) >= s.opts.MaxRows {
			return fmt.Errorf("%w: view %s holds %d rows (max_nodes); key %s not added", ErrRow, s.name, len(s.rows), quote(r.Key))
		}
		cur = &row{marks: km}
		s.rows[r.Key] = cur
		s.keys.insert(r.Key)
		if hasTomb {
			s.dropTombLocked(r.Key)
		}
	}
	fields := make(map[string]string, len(r.Fields))
	for k, v := range r.Fields {
		fields[k] = v
	}
	s.bytes -= cur.bytes
	cur.fields, cur.index, cur.origin, cur.updatedNs = fields, r.Index, origin, now
	cur.bytes = rowBytes(r.Key, fields)*2 + rowOverhead
	s.bytes += cur.bytes
	cur.wrEpoch, cur.walkEpoch = s.epoch, walkEpoch
	s.applied++
	s.lastChange, s.lastIndex = now, max(s.lastIndex, r.Index)
	return nil
}

// walkEpoch returns the start epoch of the walk a row of origin belongs to: the open snapshot
// or audit, the last walk's start for an on-demand read (it reads now, after every start), 0
// for a walk row with its walk not open (the oldest: it moves a row forward only) and for
// realtime.
func (s *Store) walkEpoch(origin viewapi.Origin) uint64 {
	switch {
	case origin == viewapi.OriginSnapshot && s.snap.open:
		return s.snap.epoch
	case origin == viewapi.OriginAudit && s.audit.open:
		return s.audit.epoch
	case origin == viewapi.OriginOnDemand:
		return s.epoch
	}
	return 0
}

func (s *Store) markSeen(origin viewapi.Origin, r *marks) {
	switch {
	case origin == viewapi.OriginSnapshot && s.snap.open:
		r.seenSnap = s.snap.epoch
	case origin == viewapi.OriginAudit && s.audit.open:
		r.seenAudit = s.audit.epoch
	}
}

func (s *Store) removeLocked(key string, r *row) {
	delete(s.rows, key)
	s.keys.remove(key)
	s.bytes -= r.bytes
}

// tombLocked records a delete of key at index.
func (s *Store) tombLocked(key string, index uint64, now int64, km marks) {
	s.tombSeq++
	if _, ok := s.tombs[key]; !ok {
		s.tombMem += tombCost(key)
	}
	s.tombs[key] = tomb{index: index, deletedNs: now, seq: s.tombSeq, marks: km}
	s.tombFIFO = append(s.tombFIFO, tombRef{key: key, seq: s.tombSeq})
}

func (s *Store) dropTombLocked(key string) {
	if _, ok := s.tombs[key]; ok {
		delete(s.tombs, key)
		s.tombMem -= tombCost(key)
	}
}

// expireLocked drops tombstones past their TTL and the oldest beyond MaxRows.
func (s *Store) expireLocked() {
	cut := s.now().UnixNano() - int64(s.opts.TombstoneTTL)
	i := 0
	for ; i < len(s.tombFIFO); i++ {
		ref := s.tombFIFO[i]
		t, ok := s.tombs[ref.key]
		if !ok || t.seq != ref.seq {
			continue // replaced or gone: a stale reference
		}
		if t.deletedNs > cut && len(s.tombs) <= s.opts.MaxRows {
			break
		}
		s.dropTombLocked(ref.key)
	}
	if i > 0 {
		s.tombFIFO = s.tombFIFO[i:]
	}
	// The references of tombstones a write replaced or a row re-created pile up behind a
	// live head; compact once they outnumber the live ones.
	if len(s.tombFIFO) > 1024 && len(s.tombFIFO) > 2*len(s.tombs) {
		live := make([]tombRef, 0, len(s.tombs))
		for _, ref := range s.tombFIFO {
			if t, ok := s.tombs[ref.key]; ok && t.seq == ref.seq {
				live = append(live, ref)
			}
		}
		s.tombFIFO = live
	}
}

// Tick expires tombstones when no batch arrives.
func (s *Store) Tick() {
	s.mu.Lock()
	s.expireLocked()
	s.mu.Unlock()
}

// SnapshotStart opens the snapshot of session owner (one replacing any other open one).
func (s *Store) SnapshotStart(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.snap = walk{open: true, owner: owner, epoch: s.epoch}
}

// SnapshotEnd closes owner's snapshot and, unless it failed, removes the rows it did not
// report (see the package comment); it returns how many.
func (s *Store) SnapshotEnd(owner string, failed bool) (deleted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.snap
	if !w.open || w.owner != owner {
		return 0
	}
	s.snap = walk{}
	if failed {
		return 0
	}
	return s.sweepLocked(w.epoch, func(r *row) uint64 { return r.seenSnap })
}

// AuditStart opens an audit.
func (s *Store) AuditStart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.audit = walk{open: true, epoch: s.epoch}
}

// AuditEnd closes the audit and, unless it failed, removes the rows it did not report.
func (s *Store) AuditEnd(failed bool) (deleted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.audit
	if !w.open {
		return 0
	}
	s.audit = walk{}
	if failed {
		return 0
	}
	return s.sweepLocked(w.epoch, func(r *row) uint64 { return r.seenAudit })
}

// sweepLocked removes the rows a walk of epoch neither saw nor had written since it started
// (by realtime, by another walk open meanwhile, by an on-demand read).
func (s *Store) sweepLocked(epoch uint64, seen func(*row) uint64) int {
	var gone []string
	for k, r := range s.rows {
		if seen(r) != epoch && r.wrEpoch < epoch {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		s.removeLocked(k, s.rows[k])
	}
	if len(gone) > 0 {
		s.blindDeletes += uint64(len(gone))
		s.lastChange = s.now().UnixNano()
	}
	return len(gone)
}

// Reset drops everything (a live view whose last session ended); the store gets a new
// instance.
func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

func (s *Store) resetLocked() {
	s.rows, s.tombs, s.tombFIFO = map[string]*row{}, map[string]tomb{}, nil
	s.keys.reset()
	s.bytes, s.tombMem, s.snap, s.audit = 0, 0, walk{}, walk{}
	s.lastIndex, s.lastChange = 0, s.now().UnixNano()
	s.instance = nextInstance()
}

// Get returns the row of key, or ErrNotFound.
func (s *Store) Get(key string) (viewapi.StoredRow, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.rows[key]
	if !ok {
		return viewapi.StoredRow{}, fmt.Errorf("%w: %s", ErrNotFound, quote(key))
	}
	return stored(key, r), nil
}

// stored copies a row out: the fields map is never mutated in place (a write replaces it),
// so sharing it with an answer is safe.
func stored(key string, r *row) viewapi.StoredRow {
	return viewapi.StoredRow{Key: key, Fields: r.fields, Index: r.index, Origin: r.origin, UpdatedNs: r.updatedNs}
}

// List returns the rows whose key starts with prefix, above after ("" = from the first), that
// pass f, in key order, up to limit (rows and bytes; at least one row). Next is the key to
// continue after when more may remain: the last key examined, which is the last row returned
// unless MaxScanPerPage keys were examined first (a filter that matches little). It stops when
// ctx ends and returns its error.
func (s *Store) List(ctx context.Context, prefix, after string, f viewapi.RowFilter, limit viewapi.Limit) (viewapi.RowPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	from, strict := after, true
	if after < prefix {
		from, strict = prefix, false // the keys of the prefix start at it
	}
	var page viewapi.RowPage
	var err error
	lim, budget := max(1, limit.Entries), limit.Bytes
	examined, last, more := 0, "", false
	s.keys.ascend(from, strict, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false // the prefix's keys are contiguous: past them
		}
		if len(page.Rows) >= lim || examined >= MaxScanPerPage {
			more = true
			return false
		}
		if examined++; examined%1024 == 0 && ctx.Err() != nil {
			err = ctx.Err()
			return false
		}
		sr := stored(k, s.rows[k])
		if f.Match(&sr) {
			n := viewapi.RowBytes(&sr)
			if len(page.Rows) > 0 && n > budget {
				more = true
				return false
			}
			budget -= n
			page.Rows = append(page.Rows, sr)
		}
		last = k
		return true
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return viewapi.RowPage{}, fmt.Errorf("list rows: %w", err)
	}
	if more {
		page.Next = last
	}
	return page, nil
}

// Stats returns the store's figures.
func (s *Store) Stats() viewapi.RowStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return viewapi.RowStats{Rows: len(s.rows), Tombstones: len(s.tombs), LastIndex: s.lastIndex,
		Applied: s.applied, Stale: s.stale, Rejected: s.rejected, BlindSpotDeletions: s.blindDeletes,
		LastChangeNs: s.lastChange, SnapshotRunning: s.snap.open, AuditRunning: s.audit.open}
}

// Len returns the rows held.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.rows)
}

// MemoryBytes estimates the heap the rows and tombstones take.
func (s *Store) MemoryBytes() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(s.bytes + s.tombMem)
}

// Instance numbers the store's state since it was built or last reset (a checkpoint taken
// across a reset must not replace the last one).
func (s *Store) Instance() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.instance
}
