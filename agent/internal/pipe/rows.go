package pipe

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

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

// generic maps a batch of the source's rows through the fields_mapping into wire rows, on the
// goroutine that produced them (a walk or Follow), so that what a walk counts (SnapshotEnd.rows,
// the heartbeat's walk progress) is what is sent: rows drop_row leaves out are not.
func (p *Pipe) generic(rs []source.Row) []*fustorv1.GenericRow {
	out := make([]*fustorv1.GenericRow, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		g := &fustorv1.GenericRow{Key: r.Key, Delete: r.Delete, Fields: r.Fields, Index: r.Index}
		keep, failed := p.mapping.Apply(g)
		if len(failed) > 0 {
			p.castFailed(failed, keep)
		}
		if keep {
			out = append(out, g)
		}
	}
	return out
}

// castFailed logs failed casts, throttled (castWarnEvery); each is counted by the mapping.
func (p *Pipe) castFailed(failed []*mapping.CastError, kept bool) {
	now := p.now().UnixNano()
	last := p.castWarnedAt.Load()
	if last != 0 && now-last < int64(castWarnEvery) || !p.castWarnedAt.CompareAndSwap(last, now) {
		p.log.Debug("fields_mapping cast failed", zap.Error(failed[0]), zap.Bool("row_dropped", !kept))
		return
	}
	st := p.mapping.Stats()
	p.log.Warn("fields_mapping cast failed", zap.Error(failed[0]), zap.Bool("row_dropped", !kept),
		zap.Uint64("cast_failures", st.CastFailures), zap.Uint64("rows_dropped", st.RowsDropped))
}

// sendRows sends the item's rows as GenericBatch batches of the pipe's schema, each of at most
// BatchSize rows.
func (s *session) sendRows(it outItem, put func(*fustorv1.PushRequest) error) error {
	size := max(s.p.cfg.BatchSize, 1)
	for start := 0; start < len(it.rows); start += size {
		chunk := it.rows[start:min(start+size, len(it.rows))]
		err := put(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: it.origin, SchemaName: s.p.cfg.Schema, Index: chunk[0].GetIndex(), CommandId: it.commandID,
			Rows: &fustorv1.EventBatch_Generic{Generic: &fustorv1.GenericBatch{Rows: chunk}}}}})
		if err != nil {
			return err
		}
		s.p.eventsSent.Add(uint64(len(chunk)))
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
}
