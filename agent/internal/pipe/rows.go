package pipe

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/agent/internal/mapping"
	"github.com/fustor/fustor/agent/internal/sender"
	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fspath"
)

// A pipe on a generic-schema source (source.RowSnapshotter, NewRows) runs the same control loop
// as one on an fs source: sessions, heartbeats, the leader's snapshot and audits between their
// markers, realtime from the source's own log (source.RowResumer). Only what is handed to the
// sender differs: out items carry wire rows (fustor.v1.GenericRow) instead of events, mapped
// through the pipe's fields_mapping where the source produced them (generic), and the sender
// goroutine sends them as GenericBatch rows of the source's schema. The fs path is untouched:
// its items carry events, encoded as before, and never meet a mapping.

// NewRows returns a pipe on a generic-schema source. cfg.Schema and cfg.SchemaVersion, when
// unset, are the source's; cfg.FieldsMapping is applied to every row sent (Run fails, and is
// restarted by its supervisor, if it does not compile — config validation refuses it first).
func NewRows(log *zap.Logger, cfg Config, src source.RowSnapshotter, snd sender.Sender, canRealtime func() bool) *Pipe {
	if sc := src.Schema(); cfg.Schema == "" {
		cfg.Schema, cfg.SchemaVersion = sc.Name, sc.Version
	}
	p := New(log, cfg, nil, nil, snd, canRealtime)
	p.rows, p.caps = src, source.DescribeRows(src)
	p.mapping, p.mappingErr = mapping.New(cfg.FieldsMapping)
	return p
}

// sourceCounters is the source's Counters, whichever kind it is (nil without).
func (p *Pipe) sourceCounters() source.Counters {
	var c source.Counters
	if p.rows != nil {
		c, _ = p.rows.(source.Counters)
	} else {
		c, _ = p.src.(source.Counters)
	}
	return c
}

// walk runs a listing of the source below rel — a snapshot or an on-demand scan — handing each
// batch on as an out item (origin and command to be set by the caller).
func (p *Pipe) walk(ctx context.Context, rel string, origin source.Origin, emit func(outItem) error) (source.WalkStats, error) {
	if p.rows == nil {
		return p.src.Snapshot(ctx, rel, origin, func(evs []source.Event) error { return emit(outItem{events: evs}) })
	}
	if rel != "" && rel != fspath.Root {
		// A generic schema has no paths: only the whole source can be listed.
		return source.WalkStats{}, fmt.Errorf("scan %q: a %s source lists only all its rows (path %q)", rel, p.cfg.Schema, fspath.Root)
	}
	return p.rows.SnapshotRows(ctx, origin, func(rs []source.Row) error { return emit(outItem{rows: p.generic(rs)}) })
}

// auditWalk runs the source's audit, handing each batch on as an out item.
func (p *Pipe) auditWalk(ctx context.Context, cache *source.AuditCache, opts source.AuditOptions, emit func(outItem) error) (source.WalkStats, error) {
	if p.rows != nil {
		aud, _ := p.rows.(source.RowAuditor)
		return aud.AuditRows(ctx, func(rs []source.Row) error { return emit(outItem{rows: p.generic(rs)}) })
	}
	aud, _ := p.src.(source.Auditor)
	return aud.Audit(ctx, cache, opts, func(evs []source.Event) error { return emit(outItem{events: evs}) })
}

// len is the number of rows or events the item carries.
func (it *outItem) len() int { return len(it.events) + len(it.rows) }

// followRows is the realtime loop of a generic source that resumes from its own log, and
// whether it resumes from committed; an fs pipe's is realtimeFrom's.
//
// With nothing committed, realtime starts at the source's last index, which takes a statement
// to the database: it is read by the loop itself, retried with the pipe's backoff while the
// database is down, and the snapshot waits for it (positioned). So the session — heartbeats,
// commands — never waits on the database, unlike an fs pipe's session, which needs nothing
// from its source to start.
func (s *session) followRows(committed uint64) (func(context.Context) error, bool, error) {
	r, ok := s.p.rows.(source.RowResumer)
	if !ok {
		// No realtime: the source is kept by snapshot and audits only.
		return func(ctx context.Context) error { <-ctx.Done(); return nil }, false, nil
	}
	resumed := committed > 0
	positioned := make(chan struct{})
	s.positioned = positioned
	return func(ctx context.Context) error {
		from := committed
		if !resumed {
			var ok bool
			if from, ok = s.lastIndex(ctx, r); !ok {
				return nil
			}
		}
		close(positioned)
		s.p.log.Info("realtime from the source's log", zap.Uint64("from_index", from), zap.Bool("resumed", resumed))
		err := r.FollowRows(ctx, from, s.p.cfg.BatchSize, func(rs []source.Row) error {
			return s.emit(ctx, outItem{origin: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, rows: s.p.generic(rs)})
		})
		if ctx.Err() != nil {
			return nil
		}
		return err
	}, resumed, nil
}

// lastIndex reads the source's last index, retrying with the pipe's backoff until it succeeds
// (ok false: ctx ended first).
func (s *session) lastIndex(ctx context.Context, r source.RowResumer) (uint64, bool) {
	wait := max(s.p.cfg.BackoffMin, time.Millisecond)
	for {
		last, err := r.LastIndex(ctx)
		if err == nil {
			return last, true
		}
		s.p.log.Warn("cannot read the source's last index; realtime and the snapshot wait", zap.Duration("retry_in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return 0, false
		case <-s.p.after(wait):
		}
		wait = min(wait*2, max(s.p.cfg.BackoffMax, wait))
	}
}

// castWarnEvery bounds the warnings about failed casts: every one is counted, and the first
// one and then at most one per period are logged with the count so far.
const castWarnEvery = time.Minute

// The bounds of one row and of one batch. A row over what Fusion's rows view accepts by default
// (fusion/internal/view/rows: a non-empty UTF-8 key of at most 4096 bytes, at most 256 fields,
// none with an empty name, at most 1 MiB of key, names and values) would be refused there, or
// fail the whole message: it is dealt with here instead (rowBounds). A batch holds at most
// maxBatchBytes of rows, well under the 16 MiB a message may be at either end, so no batch
// of rows within the bounds is ever too large to send (a send that fails rebuilds the same
// batch from the same committed index, so a batch too large would block the pipe for good).
const (
	maxKeyBytes   = 4096
	maxFields     = 256
	maxRowBytes   = 1 << 20
	maxBatchBytes = 4 << 20
)

// rowBounds is what is wrong with a row for Fusion: a key that cannot be sent (bad: the row
// is left out) or a version too large (the row is sent as a delete of its key without
// fields, so the view never keeps an older version of it); "" if nothing.
func rowBounds(g *fustorv1.GenericRow) (why string, bad bool) {
	switch {
	case g.GetKey() == "":
		return "empty key", true
	case len(g.GetKey()) > maxKeyBytes:
		return fmt.Sprintf("key of %d bytes, over %d", len(g.GetKey()), maxKeyBytes), true
	case !utf8.ValidString(g.GetKey()):
		return "key not utf-8", true
	case len(g.GetFields()) > maxFields:
		return fmt.Sprintf("%d fields, over %d", len(g.GetFields()), maxFields), false
	}
	n := len(g.GetKey())
	for k, v := range g.GetFields() {
		if k == "" {
			return "a field with an empty name", false
		}
		n += len(k) + len(v)
	}
	if n > maxRowBytes {
		return fmt.Sprintf("%d bytes of key and fields, over %d", n, maxRowBytes), false
	}
	return "", false
}

// generic maps a batch of the source's rows through the fields_mapping into wire rows, on the
// goroutine that produced them (a walk or Follow), so that what a walk counts (SnapshotEnd.rows,
// the heartbeat's walk progress) is what is sent: a row drop_row drops, or one too large for
// Fusion, is sent as a delete of its key; one whose key cannot be sent is not.
func (p *Pipe) generic(rs []source.Row) []*fustorv1.GenericRow {
	out := make([]*fustorv1.GenericRow, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		g := &fustorv1.GenericRow{Key: r.Key, Delete: r.Delete, Fields: r.Fields, Index: r.Index}
		dropped, failed := p.mapping.Apply(g)
		if len(failed) > 0 {
			p.castFailed(failed, dropped)
		}
		if why, bad := rowBounds(g); why != "" {
			if bad {
				p.rowsBadKey.Add(1)
			} else {
				p.rowsOversize.Add(1)
			}
			p.boundFailed(g, why, bad)
			if bad {
				continue
			}
			g.Delete, g.Fields = true, nil
		}
		out = append(out, g)
	}
	return out
}

// throttled reports whether a warning last logged at *at may be logged now (once per
// castWarnEvery), and takes the slot if so.
func (p *Pipe) throttled(at *atomic.Int64) bool {
	now := p.now().UnixNano()
	last := at.Load()
	return last != 0 && now-last < int64(castWarnEvery) || !at.CompareAndSwap(last, now)
}

// castFailed logs failed casts, throttled (castWarnEvery); each is counted by the mapping.
func (p *Pipe) castFailed(failed []*mapping.CastError, dropped bool) {
	if p.throttled(&p.castWarnedAt) {
		p.log.Debug("fields_mapping cast failed", zap.Error(failed[0]), zap.Bool("row_dropped", dropped))
		return
	}
	st := p.mapping.Stats()
	p.log.Warn("fields_mapping cast failed", zap.Error(failed[0]), zap.Bool("row_dropped", dropped),
		zap.Uint64("cast_failures", st.CastFailures), zap.Uint64("rows_dropped", st.RowsDropped))
}

// boundFailed logs a row over Fusion's bounds, throttled like castFailed; each is counted.
func (p *Pipe) boundFailed(g *fustorv1.GenericRow, why string, bad bool) {
	key := g.GetKey()
	if len(key) > 64 {
		key = key[:64]
	}
	log := p.log.Warn
	if p.throttled(&p.boundWarnedAt) {
		log = p.log.Debug
	}
	sent := "sent as a delete of its key"
	if bad {
		sent = "left out"
	}
	log("row over fusion's bounds", zap.String("key_start", strconv.Quote(key)), zap.String("why", why), zap.String("row", sent),
		zap.Uint64("rows_bad_key", p.rowsBadKey.Load()), zap.Uint64("rows_oversize", p.rowsOversize.Load()))
}

// sendRows sends the item's rows as GenericBatch batches of the pipe's schema, each of at most
// BatchSize rows and maxBatchBytes.
func (s *session) sendRows(it outItem, put func(*fustorv1.PushRequest) error) error {
	size := max(s.p.cfg.BatchSize, 1)
	for start := 0; start < len(it.rows); {
		end, bytes := start, 0
		for end < len(it.rows) && end-start < size {
			// A row's bytes in the batch: itself, and its tag and length.
			n := proto.Size(it.rows[end]) + 8
			if end > start && bytes+n > maxBatchBytes {
				break
			}
			bytes += n
			end++
		}
		chunk := it.rows[start:end]
		err := put(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: it.origin, SchemaName: s.p.cfg.Schema, Index: chunk[0].GetIndex(), CommandId: it.commandID,
			Rows: &fustorv1.EventBatch_Generic{Generic: &fustorv1.GenericBatch{Rows: chunk}}}}})
		if err != nil {
			return err
		}
		s.p.eventsSent.Add(uint64(len(chunk)))
		start = end
	}
	return nil
}

// mappingCounters adds the fields_mapping's counters to a heartbeat's (generic pipes only).
func (p *Pipe) mappingCounters(c map[string]uint64) {
	if p.rows == nil {
		return
	}
	st := p.mapping.Stats()
	c["mapping_rows"], c["mapping_rows_dropped"], c["mapping_cast_failures"] = st.Rows, st.RowsDropped, st.CastFailures
	c["rows_bad_key"], c["rows_oversize"] = p.rowsBadKey.Load(), p.rowsOversize.Load()
}
