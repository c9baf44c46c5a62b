package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// errObsoleted ends a stream whose session ended while it was open.
var errObsoleted = errors.New("session obsoleted")

// stream is the state of one push stream. Three goroutines share it: the receiver (Recv only),
// the sender (Send only) and the handler (decode and queue). Every queued message holds a slot
// until its Ack is sent, which bounds what one stream can have in flight and guarantees the
// pipe loop never blocks when it reports a result (acks has room for every slot).
type stream struct {
	r     *Receiver
	s     *session.Session
	pi    PipeInfo
	dec   *fsbatch.Decoder
	acks  chan *fustorv1.PushResponse
	slots chan struct{}
	// rows holds the row slices of applied batches for the next batches to decode into: a
	// snapshot's batches would otherwise each allocate (and the GC sweep) a fresh slice of
	// rows, memory Fusion faults in for every batch (fustor-bench's p1_fusion_faults;
	// docs/benchmarks.md, "End to end with fustor-bench", stop 13). A decoded batch is
	// applied before the next few are decoded, so a handful of slices (pooledBatches, each
	// of at most maxPooledRows rows) is enough.
	rows chan []fsbatch.Row
}

const (
	pooledBatches = 4
	maxPooledRows = 1 << 14
)

// Push serves one session's event stream; the protocol is documented in push.proto.
func (r *Receiver) Push(ps fustorv1.PushService_PushServer) error {
	ctx, cancel := context.WithCancel(ps.Context())
	defer cancel()
	first, err := ps.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	s, pi, err := r.sessionOf(ctx, first.GetSessionId())
	if err != nil {
		return err
	}
	st := &stream{r: r, s: s, pi: pi, dec: fsbatch.NewDecoder(0),
		acks: make(chan *fustorv1.PushResponse, r.maxInflight), slots: make(chan struct{}, r.maxInflight),
		rows: make(chan []fsbatch.Row, pooledBatches)}
	s.Count("streams", 1)
	r.sessions.Touch(s)

	msgs := make(chan *fustorv1.PushRequest)
	recvErr := make(chan error, 1)
	go st.recvLoop(ctx, ps, msgs, recvErr)
	sendErr := make(chan error, 1)
	go st.sendLoop(ctx, ps, sendErr)

	if first.GetPayload() != nil {
		err = st.handle(ctx, first)
	}
	for err == nil {
		select {
		case m := <-msgs:
			err = st.handle(ctx, m)
		case rerr := <-recvErr:
			if !errors.Is(rerr, io.EOF) {
				return rerr
			}
			// The agent closed its side: answer what is in flight, then end cleanly.
			return st.drain(ctx, sendErr)
		case serr := <-sendErr:
			return serr
		case <-s.Done():
			// Give the sender the chance to tell the agent why.
			select {
			case serr := <-sendErr:
				return serr
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
	return err
}

func (st *stream) drain(ctx context.Context, sendErr <-chan error) error {
	for range cap(st.slots) {
		select {
		case st.slots <- struct{}{}:
		case err := <-sendErr:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func (st *stream) recvLoop(ctx context.Context, ps fustorv1.PushService_PushServer, msgs chan<- *fustorv1.PushRequest, errc chan<- error) {
	for {
		m, err := ps.Recv()
		if err != nil {
			errc <- err
			return
		}
		// Liveness is refreshed on receipt, before any queueing: a slow pipe never expires
		// a session that is sending (DESIGN.md §9.2).
		st.r.sessions.Touch(st.s)
		select {
		case msgs <- m:
		case <-ctx.Done():
			return
		}
	}
}

func (st *stream) sendLoop(ctx context.Context, ps fustorv1.PushService_PushServer, errc chan<- error) {
	defer func() {
		if p := recover(); p != nil {
			st.r.log.Error("push sender panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			errc <- fmt.Errorf("push sender: %v", p)
		}
	}()
	for {
		var m *fustorv1.PushResponse
		release := false
		select {
		case <-ctx.Done():
			return
		case m = <-st.acks:
			release = true
		case m = <-st.s.Out:
		case <-st.s.Done():
			_ = ps.Send(&fustorv1.PushResponse{Payload: &fustorv1.PushResponse_SessionObsoleted{
				SessionObsoleted: &fustorv1.SessionObsoleted{Reason: st.s.EndReason()}}})
			errc <- fmt.Errorf("%w: session %s %s; create a new session", errObsoleted, st.s.ID, st.s.EndReason())
			return
		}
		if err := ps.Send(m); err != nil {
			errc <- err
			return
		}
		if release {
			<-st.slots
		}
	}
}

// acquire takes an in-flight slot; it waits while the stream has too much unacknowledged work.
func (st *stream) acquire(ctx context.Context) error {
	select {
	case st.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (st *stream) ack(a *fustorv1.Ack) {
	st.acks <- &fustorv1.PushResponse{Payload: &fustorv1.PushResponse_Ack{Ack: a}}
}

// handle processes one message. A returned error ends the stream; row-level problems are
// reported in the Ack instead.
func (st *stream) handle(ctx context.Context, m *fustorv1.PushRequest) error {
	if id := m.GetSessionId(); id != "" && id != st.s.ID {
		return fmt.Errorf("%w: message seq %d names session %q on the stream of %q", errs.ErrInvalidArgument, m.GetSeq(), id, st.s.ID)
	}
	if err := st.acquire(ctx); err != nil {
		return nil
	}
	seq := m.GetSeq()
	switch p := m.GetPayload().(type) {
	case *fustorv1.PushRequest_Batch:
		return st.batch(ctx, seq, p.Batch)
	case *fustorv1.PushRequest_SnapshotStart:
		return st.control(ctx, seq, &pipe.Item{Kind: pipe.KindSnapshotStart}, "snapshot")
	case *fustorv1.PushRequest_SnapshotEnd:
		st.s.Count("snapshots", 1)
		return st.control(ctx, seq, &pipe.Item{Kind: pipe.KindSnapshotEnd, Failed: p.SnapshotEnd.GetFailed()}, "snapshot")
	case *fustorv1.PushRequest_AuditStart:
		return st.control(ctx, seq, &pipe.Item{Kind: pipe.KindAuditStart}, "audit")
	case *fustorv1.PushRequest_AuditEnd:
		st.s.Count("audits", 1)
		return st.control(ctx, seq, &pipe.Item{Kind: pipe.KindAuditEnd, Failed: p.AuditEnd.GetFailed()}, "audit")
	case *fustorv1.PushRequest_SentinelFeedback:
		st.s.Count("sentinel_feedback", 1)
		items := make([]view.SentinelItem, 0, len(p.SentinelFeedback.GetItems()))
		for _, it := range p.SentinelFeedback.GetItems() {
			items = append(items, view.SentinelItem{Path: it.GetPath(), Exists: it.GetExists(), Size: it.GetSize(), MtimeNs: it.GetMtimeNs()})
		}
		return st.submit(ctx, &pipe.Item{Session: st.s, Kind: pipe.KindSentinel, Sentinel: items}, seq, 0, "")
	case *fustorv1.PushRequest_CommandResult:
		st.s.Count("command_results", 1)
		r := p.CommandResult
		return st.submit(ctx, &pipe.Item{Session: st.s, Kind: pipe.KindCommandResult, CommandID: r.GetCommandId(),
			Result: command.Result{OK: r.GetOk(), Error: r.GetError()}}, seq, 0, "")
	default:
		<-st.slots
		return fmt.Errorf("%w: message seq %d has no payload", errs.ErrInvalidArgument, seq)
	}
}

func (st *stream) control(ctx context.Context, seq uint64, it *pipe.Item, what string) error {
	if !st.s.IsLeader() {
		st.s.Count("rejected_follower_"+what, 1)
		st.ack(&fustorv1.Ack{Seq: seq, CommittedIndex: st.pi.Pipe.Committed(),
			Error: fmt.Sprintf("rejected: session %s is a follower; only the leader runs %ss", st.s.ID, what)})
		return nil
	}
	it.Session = st.s
	return st.submit(ctx, it, seq, 0, "")
}

func (st *stream) batch(ctx context.Context, seq uint64, b *fustorv1.EventBatch) error {
	origin, err := originOf(b.GetSource())
	if err != nil {
		<-st.slots
		return fmt.Errorf("%w: batch seq %d: %w", errs.ErrInvalidArgument, seq, err)
	}
	reject := func(n int, why string) error {
		st.s.Count("rows_rejected", uint64(n))
		st.pi.Pipe.CountRejected(n)
		st.ack(&fustorv1.Ack{Seq: seq, CommittedIndex: st.pi.Pipe.Committed(), RowsRejected: uint32(n), Error: why})
		return nil
	}
	if !st.pi.Pipe.Accepts(b.GetSchemaName()) {
		// No view of the pipe accepts the batch: dropped, counted against every view.
		st.s.Count("batches_dropped_schema", 1)
		return reject(rowCount(b), st.pi.Pipe.DropSchema(b.GetSchemaName()))
	}
	fsb := b.GetFs()
	if fsb == nil {
		return reject(rowCount(b), "rejected: fs schema batches carry rows in the fs field")
	}
	if (origin == view.OriginSnapshot || origin == view.OriginAudit) && !st.s.IsLeader() {
		st.s.Count("rejected_follower_rows", uint64(len(fsb.GetNames())))
		return reject(len(fsb.GetNames()), fmt.Sprintf("rejected: session %s is a follower; snapshot and audit rows come from the leader", st.s.ID))
	}
	var buf []fsbatch.Row
	select {
	case buf = <-st.rows:
	default:
	}
	rows, rejected, rowErrs, err := st.dec.Decode(fsb, b.GetIndex(), buf)
	if err != nil {
		<-st.slots
		st.s.Count("malformed_batches", 1)
		return fmt.Errorf("batch seq %d: %w", seq, err)
	}
	var firstErr string
	if len(rowErrs) > 0 {
		firstErr = rowErrs[0].Error()
		st.r.log.Warn("rejected rows", zap.String("session", st.s.ID), zap.Uint64("seq", seq), zap.Int("rejected", rejected), zap.String("first", firstErr))
	}
	var maxIndex uint64
	for i := range rows {
		maxIndex = max(maxIndex, rows[i].Index)
	}
	st.s.Count("batches", 1)
	st.s.Count("rows", uint64(len(rows)))
	st.s.Count("rows_rejected", uint64(rejected))
	st.pi.Pipe.CountRejected(rejected)
	it := &pipe.Item{Session: st.s, Kind: pipe.KindBatch, Origin: origin, Schema: b.GetSchemaName(), Rows: rows, MaxIndex: maxIndex}
	if cid := b.GetCommandId(); cid != "" && origin == view.OriginOnDemand && st.pi.Pipe.Commands != nil {
		// Rows answering a command: a verify walk's are compared, never applied; a scan's
		// carry when it was asked for, which decides against realtime evidence.
		if started, verify, ok := st.pi.Pipe.Commands.Lookup(cid); verify != "" {
			it.Kind, it.View, it.CommandID, it.MaxIndex = pipe.KindVerify, verify, cid, 0
		} else if ok {
			it.ScanStartNs = started.UnixNano()
		}
	}
	return st.submit(ctx, it, seq, rejected, firstErr)
}

func (st *stream) submit(ctx context.Context, it *pipe.Item, seq uint64, rejected int, firstErr string) error {
	it.Done = func(res pipe.Result) {
		a := &fustorv1.Ack{Seq: seq, CommittedIndex: res.Committed, RowsApplied: uint32(res.Applied),
			RowsRejected: uint32(res.Rejected + rejected), Error: firstErr}
		if res.Err != nil && a.Error == "" {
			a.Error = res.Err.Error()
		}
		st.ack(a)
		st.recycle(it.Rows)
	}
	if err := st.pi.Pipe.Submit(ctx, it); err != nil {
		<-st.slots
		return nil // the stream is ending
	}
	return nil
}

// recycle keeps an applied batch's rows for a later batch of the stream. Done runs after
// every view of the pipe applied them, and views keep no reference to a batch's rows.
func (st *stream) recycle(rows []fsbatch.Row) {
	if rows == nil || cap(rows) > maxPooledRows {
		return
	}
	clear(rows) // drop the strings, so a pooled slice keeps no names alive
	select {
	case st.rows <- rows[:0]:
	default:
	}
}

func originOf(s fustorv1.MessageSource) (view.Origin, error) {
	switch s {
	case fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME:
		return view.OriginRealtime, nil
	case fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT:
		return view.OriginSnapshot, nil
	case fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT:
		return view.OriginAudit, nil
	case fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND:
		return view.OriginOnDemand, nil
	}
	return 0, fmt.Errorf("unknown message source %v", s)
}

func rowCount(b *fustorv1.EventBatch) int {
	if f := b.GetFs(); f != nil {
		return len(f.GetNames())
	}
	return len(b.GetGeneric().GetRows())
}
