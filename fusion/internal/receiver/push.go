package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// errObsoleted ends a stream whose session ended while it was open. It is a session not
// found, so the status the stream ends with tells the agent what SessionObsoleted told it.
var errObsoleted = errs.New(errs.ErrSessionNotFound, "session obsoleted")

// stream is the state of one push stream. Three goroutines share it: the receiver (Recv only),
// the sender (Send only) and the handler (decode and queue). Every message holds a slot until
// its Ack is sent (see slot), which bounds what one stream can have in flight and guarantees
// the pipe loop never blocks when it reports a result (acks has room for every slot).
type stream struct {
	r     *Receiver
	s     *session.Session
	pi    PipeInfo
	dec   *fsbatch.Decoder
	acks  chan answer
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

func (r *Receiver) newStream(s *session.Session, pi PipeInfo) *stream {
	return &stream{r: r, s: s, pi: pi, dec: r.decoder(),
		acks: make(chan answer, r.maxInflight), slots: make(chan struct{}, r.maxInflight),
		rows: make(chan []fsbatch.Row, pooledBatches)}
}

// Push serves one session's event stream; the protocol is documented in push.proto.
//
// Push returns only after its sender has stopped, so nothing calls Send once the handler has
// returned (gRPC forbids it: the stream's status is being written). The receiving goroutine
// is joined too whenever the agent's side has ended (EOF, cancel, a broken stream). When
// Fusion ends the stream itself (a bad message, the session obsoleted) the receiver may be
// blocked in Recv, which gRPC unblocks only once the handler has returned (grpc-go #465):
// then it ends right after Push returns, touching nothing shared once ctx is cancelled.
func (r *Receiver) Push(ps fustorv1.PushService_PushServer) error {
	ctx, cancel := context.WithCancel(ps.Context())
	defer cancel()
	release, err := r.admitStream(ctx)
	if err != nil {
		return err
	}
	defer release()
	first, err := r.firstMessage(ctx, ps)
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
	r.sessions.StreamOpened(s)
	defer r.sessions.StreamClosed(s)
	st := r.newStream(s, pi)
	s.Count("streams", 1)
	r.sessions.Touch(s)

	msgs := make(chan *fustorv1.PushRequest)
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	r.recvLoops.Add(1)
	go func() {
		// Counted down before the close that Push waits on, so a count Push's caller reads is final.
		defer close(recvDone)
		defer r.recvLoops.Add(-1)
		st.recvLoop(ctx, ps, msgs, recvErr)
	}()
	sendErr := make(chan error, 1)
	sendDone := make(chan struct{})
	r.sendLoops.Add(1)
	go func() {
		defer close(sendDone)
		defer r.sendLoops.Add(-1)
		st.sendLoop(ctx, ps, sendErr)
	}()

	agentEnded, err := st.serve(ctx, first, msgs, recvErr, sendErr)
	cancel()
	<-sendDone
	if agentEnded || ps.Context().Err() != nil {
		<-recvDone
	}
	if clientFault(err) {
		r.badMessages.Add(1)
		s.Count("streams_ended_bad_message", 1)
		r.log.Warn("push stream ended: bad message", zap.String("session", s.ID), zap.String("pipe", s.Pipe.ID), zap.Error(err))
	}
	return err
}

// clientFault reports whether a stream's end is due to what its client sent (a bad message,
// a bound passed): what is counted and logged as such.
func clientFault(err error) bool {
	return errors.Is(err, errs.ErrInvalidArgument) || errors.Is(err, fsbatch.ErrMalformed) ||
		errors.Is(err, errs.ErrPrecondition) || errors.Is(err, errs.ErrFull)
}

// decoder returns a stream's row decoder, bounded by the limits.
func (r *Receiver) decoder() *fsbatch.Decoder {
	d := fsbatch.NewDecoder(0)
	d.SetLimits(r.limits().Rows)
	return d
}

// admitStream counts a push stream against its key's bound.
func (r *Receiver) admitStream(ctx context.Context) (release func(), err error) {
	p := server.PrincipalFrom(ctx)
	if p == nil || p.Kind != server.KindIngest {
		return nil, fmt.Errorf("%w: an ingest API key is required", errs.ErrPermission)
	}
	r.openMu.Lock()
	defer r.openMu.Unlock()
	if n := r.open[p.KeyID]; n >= r.limits().StreamsPerKey {
		return nil, fmt.Errorf("%w: this key has %d push streams open (server.max_push_streams_per_key); close one or use another key", errs.ErrFull, n)
	}
	r.open[p.KeyID]++
	return func() {
		r.openMu.Lock()
		defer r.openMu.Unlock()
		if r.open[p.KeyID]--; r.open[p.KeyID] <= 0 {
			delete(r.open, p.KeyID)
		}
	}, nil
}

// firstMessage reads the stream's first message, which must come within Limits.FirstMessage:
// a stream that never names its session is not held open. The read goes on in its own
// goroutine, which ends with the stream when the handler gives up on it.
func (r *Receiver) firstMessage(ctx context.Context, ps fustorv1.PushService_PushServer) (*fustorv1.PushRequest, error) {
	type recv struct {
		m   *fustorv1.PushRequest
		err error
	}
	got := make(chan recv, 1)
	go func() {
		m, err := ps.Recv()
		got <- recv{m, err}
	}()
	wait := r.limits().FirstMessage
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case g := <-got:
		if g.err == nil {
			if err := undecodable(g.m); err != nil {
				r.badMessages.Add(1)
				r.log.Warn("push stream ended: undecodable first message", zap.Error(err))
				return nil, err
			}
		}
		return g.m, g.err
	case <-t.C:
		return nil, fmt.Errorf("%w: no first message within %v (server.push_first_message_timeout): a push stream opens by naming its session", errs.ErrInvalidArgument, wait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serve runs the handler's loop until the stream ends; agentEnded reports that the receiving
// goroutine has seen the end of the agent's side, so it is ending without further Recv.
func (st *stream) serve(ctx context.Context, first *fustorv1.PushRequest, msgs <-chan *fustorv1.PushRequest,
	recvErr, sendErr <-chan error) (agentEnded bool, err error) {
	if first.GetPayload() != nil {
		err = st.handle(ctx, first)
	}
	for err == nil {
		select {
		case m := <-msgs:
			err = st.handle(ctx, m)
		case rerr := <-recvErr:
			if !errors.Is(rerr, io.EOF) {
				return true, rerr
			}
			// The agent closed its side: answer what is in flight, then end cleanly.
			return true, st.drain(ctx, sendErr)
		case serr := <-sendErr:
			return false, serr
		case <-st.s.Done():
			// Give the sender the chance to tell the agent why.
			select {
			case serr := <-sendErr:
				return false, serr
			case <-ctx.Done():
				return false, nil
			}
		case <-ctx.Done():
			return false, nil
		}
	}
	// A message ends the stream (malformed, out of turn): what came before it is answered
	// first, so its sender knows exactly which message was refused.
	if derr := st.drain(ctx, sendErr); derr != nil {
		return false, derr
	}
	return false, err
}

// drain waits until every in-flight message is answered: it takes the whole window. A session
// that ends meanwhile (its pipe stopped by a reload, say) ends the wait.
func (st *stream) drain(ctx context.Context, sendErr <-chan error) error {
	for range cap(st.slots) {
		select {
		case st.slots <- struct{}{}:
		case err := <-sendErr:
			return err
		case <-st.s.Done():
			// The sender tells the agent why, as serve lets it.
			select {
			case err := <-sendErr:
				return err
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func (st *stream) recvLoop(ctx context.Context, ps fustorv1.PushService_PushServer, msgs chan<- *fustorv1.PushRequest, errc chan<- error) {
	defer func() {
		if p := recover(); p != nil {
			st.r.log.Error("push receiver panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			select {
			case errc <- fmt.Errorf("push receiver: %v", p):
			default: // an error is already reported
			}
		}
	}()
	for {
		m, err := ps.Recv()
		if err != nil {
			errc <- err
			return
		}
		if ctx.Err() != nil {
			// The handler is done with the stream (see Push): the message is not for us.
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
		var err error
		select {
		case <-ctx.Done():
			return
		case a := <-st.acks:
			err = st.sendAnswer(ps, a)
		case m := <-st.s.Out:
			err = ps.Send(m)
		case <-st.s.Done():
			_ = ps.Send(&fustorv1.PushResponse{Payload: &fustorv1.PushResponse_SessionObsoleted{
				SessionObsoleted: &fustorv1.SessionObsoleted{Reason: st.s.EndReason()}}})
			errc <- fmt.Errorf("%w: session %s %s; create a new session", errObsoleted, st.s.ID, st.s.EndReason())
			return
		}
		if err != nil {
			errc <- err
			return
		}
	}
}

// sendAnswer writes an Ack and gives its message's slot back, whether or not the write worked.
func (st *stream) sendAnswer(ps fustorv1.PushService_PushServer, a answer) error {
	defer a.slot.release()
	return ps.Send(a.resp)
}

// acquire takes an in-flight slot; it waits while the stream has too much unacknowledged work.
func (st *stream) acquire(ctx context.Context) (*slot, error) {
	select {
	case st.slots <- struct{}{}:
		return &slot{st: st}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// queue hands an Ack to the sender with the slot of the message it answers; the slot must
// already have been passed on by handle.
func (st *stream) queue(sl *slot, a *fustorv1.Ack) {
	st.acks <- answer{resp: &fustorv1.PushResponse{Payload: &fustorv1.PushResponse_Ack{Ack: a}}, slot: sl}
}

// reply answers a message straight from handle, without the pipe.
func (st *stream) reply(sl *slot, a *fustorv1.Ack) { st.queue(sl.pass(), a) }

// handle processes one message. A returned error ends the stream; row-level problems are
// reported in the Ack instead.
func (st *stream) handle(ctx context.Context, m *fustorv1.PushRequest) error {
	if err := undecodable(m); err != nil {
		return err
	}
	if id := m.GetSessionId(); id != "" && id != st.s.ID {
		return fmt.Errorf("%w: message seq %d names session %q on the stream of %q", errs.ErrInvalidArgument, m.GetSeq(), id, st.s.ID)
	}
	sl, err := st.acquire(ctx)
	if err != nil {
		return nil
	}
	// The one release of a message that is not answered; an answered one's slot is passed
	// on with its answer.
	defer sl.drop()
	seq := m.GetSeq()
	switch p := m.GetPayload().(type) {
	case *fustorv1.PushRequest_Batch:
		return st.batch(ctx, sl, seq, p.Batch)
	case *fustorv1.PushRequest_SnapshotStart:
		return st.control(ctx, sl, seq, &pipe.Item{Kind: pipe.KindSnapshotStart}, "snapshot")
	case *fustorv1.PushRequest_SnapshotEnd:
		st.s.Count("snapshots", 1)
		return st.control(ctx, sl, seq, &pipe.Item{Kind: pipe.KindSnapshotEnd, Failed: p.SnapshotEnd.GetFailed()}, "snapshot")
	case *fustorv1.PushRequest_AuditStart:
		return st.control(ctx, sl, seq, &pipe.Item{Kind: pipe.KindAuditStart}, "audit")
	case *fustorv1.PushRequest_AuditEnd:
		st.s.Count("audits", 1)
		return st.control(ctx, sl, seq, &pipe.Item{Kind: pipe.KindAuditEnd, Failed: p.AuditEnd.GetFailed()}, "audit")
	case *fustorv1.PushRequest_SentinelFeedback:
		st.s.Count("sentinel_feedback", 1)
		items, rejected, firstErr := sentinelItems(p.SentinelFeedback.GetItems())
		st.s.Count("rows_rejected", uint64(rejected))
		return st.submit(ctx, sl, &pipe.Item{Session: st.s, Kind: pipe.KindSentinel, Sentinel: items}, seq, rejected, firstErr)
	case *fustorv1.PushRequest_CommandResult:
		st.s.Count("command_results", 1)
		r := p.CommandResult
		return st.submit(ctx, sl, &pipe.Item{Session: st.s, Kind: pipe.KindCommandResult, CommandID: r.GetCommandId(),
			Result: command.Result{OK: r.GetOk(), Error: r.GetError()}}, seq, 0, "")
	default:
		return fmt.Errorf("%w: message seq %d has no payload", errs.ErrInvalidArgument, seq)
	}
}

func (st *stream) control(ctx context.Context, sl *slot, seq uint64, it *pipe.Item, what string) error {
	if !st.s.IsLeader() {
		st.s.Count("rejected_follower_"+what, 1)
		st.reply(sl, &fustorv1.Ack{Seq: seq, CommittedIndex: st.pi.Pipe.Committed(),
			Error: fmt.Sprintf("rejected: session %s is a follower; only the leader runs %ss", st.s.ID, what)})
		return nil
	}
	phase, name := session.PhaseSnapshot, "Snapshot"
	if what == "audit" {
		phase, name = session.PhaseAudit, "Audit"
	}
	switch it.Kind {
	case pipe.KindSnapshotStart, pipe.KindAuditStart:
		st.s.Begin(phase)
	case pipe.KindSnapshotEnd, pipe.KindAuditEnd:
		if !st.s.End(phase) {
			// Applied, it would end nothing, yet an end marks a view's snapshot complete.
			st.s.Count("ends_without_start", 1)
			return fmt.Errorf("%w: message seq %d (%sEnd) ends no open %s: send %sStart first", errs.ErrPrecondition, seq, name, what, name)
		}
	}
	it.Session = st.s
	return st.submit(ctx, sl, it, seq, 0, "")
}

// sentinelItems converts sentinel feedback, leaving out the items no row could carry (a size
// over 2^63-1, an mtime out of range): it returns how many and why the first was.
func sentinelItems(in []*fustorv1.SentinelItem) (items []view.SentinelItem, rejected int, firstErr string) {
	items = make([]view.SentinelItem, 0, len(in))
	for i, it := range in {
		var err error
		switch {
		case !it.GetExists():
		case it.GetSize() > math.MaxInt64:
			err = fmt.Errorf("size %d is over 2^63-1", it.GetSize())
		default:
			err = fsbatch.CheckMtime(it.GetMtimeNs())
		}
		if err != nil {
			if rejected++; firstErr == "" {
				firstErr = fmt.Sprintf("sentinel item %d: %v", i, err)
			}
			continue
		}
		items = append(items, view.SentinelItem{Path: it.GetPath(), Exists: it.GetExists(), Size: it.GetSize(), MtimeNs: it.GetMtimeNs()})
	}
	return items, rejected, firstErr
}

func (st *stream) batch(ctx context.Context, sl *slot, seq uint64, b *fustorv1.EventBatch) error {
	origin, err := originOf(b.GetSource())
	if err != nil {
		return fmt.Errorf("%w: batch seq %d: %w", errs.ErrInvalidArgument, seq, err)
	}
	reject := func(n int, why string) error {
		st.s.Count("rows_rejected", uint64(n))
		st.pi.Pipe.CountRejected(n)
		st.reply(sl, &fustorv1.Ack{Seq: seq, CommittedIndex: st.pi.Pipe.Committed(), RowsRejected: uint32(n), Error: why})
		return nil
	}
	if !st.pi.Pipe.Accepts(b.GetSchemaName()) {
		// No view of the pipe accepts the batch: dropped, counted against every view.
		st.s.Count("batches_dropped_schema", 1)
		return reject(rowCount(b), st.pi.Pipe.DropSchema(b.GetSchemaName()))
	}
	if b.GetSchemaName() != "fs" {
		return st.genericBatch(ctx, sl, seq, b, origin, reject)
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
	if errors.Is(err, fsbatch.ErrDirTable) {
		st.s.Count("dir_table_full", 1)
		return fmt.Errorf("%w: batch seq %d: %w (server.max_push_dirs %d, max_push_dir_bytes %d)", errs.ErrFull, seq, err,
			st.dec.MaxDirs(), st.dec.MaxDirBytes())
	}
	if err != nil {
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
	return st.submit(ctx, sl, it, seq, rejected, firstErr)
}

// genericBatch queues a batch of a non-fs schema for the pipe's rows views. A row's index is
// its own, or the batch's when it has none. Invalid rows (an empty key, over the bounds) are
// refused by the driver, each counted, the first one's reason in the Ack.
func (st *stream) genericBatch(ctx context.Context, sl *slot, seq uint64, b *fustorv1.EventBatch, origin view.Origin,
	reject func(int, string) error) error {
	g := b.GetGeneric()
	if g == nil {
		return reject(rowCount(b), fmt.Sprintf("rejected: schema %q batches carry rows in the generic field", b.GetSchemaName()))
	}
	in := g.GetRows()
	if (origin == view.OriginSnapshot || origin == view.OriginAudit) && !st.s.IsLeader() {
		st.s.Count("rejected_follower_rows", uint64(len(in)))
		return reject(len(in), fmt.Sprintf("rejected: session %s is a follower; snapshot and audit rows come from the leader", st.s.ID))
	}
	rows := make([]view.Row, len(in))
	var maxIndex uint64
	for i, r := range in {
		idx := r.GetIndex()
		if idx == 0 {
			idx = b.GetIndex()
		}
		rows[i] = view.Row{Key: r.GetKey(), Delete: r.GetDelete(), Fields: r.GetFields(), Index: idx}
		maxIndex = max(maxIndex, idx)
	}
	st.s.Count("batches", 1)
	st.s.Count("rows", uint64(len(rows)))
	it := &pipe.Item{Session: st.s, Kind: pipe.KindBatch, Origin: origin, Schema: b.GetSchemaName(), Generic: rows, MaxIndex: maxIndex}
	return st.submit(ctx, sl, it, seq, 0, "")
}

// submit queues an item on the pipe; its slot goes with it, and its Done hands the slot on
// to the Ack.
func (st *stream) submit(ctx context.Context, sl *slot, it *pipe.Item, seq uint64, rejected int, firstErr string) error {
	it.Done = func(res pipe.Result) {
		a := &fustorv1.Ack{Seq: seq, CommittedIndex: res.Committed, RowsApplied: uint32(res.Applied),
			RowsRejected: uint32(res.Rejected + rejected), Error: firstErr}
		if res.Err != nil && a.Error == "" {
			a.Error = res.Err.Error()
		}
		st.queue(sl, a)
		st.recycle(it.Rows)
	}
	// Passed before Submit: the pipe loop may call Done before Submit has returned.
	sl.pass()
	if err := st.pi.Pipe.Submit(ctx, it); err != nil {
		sl.reclaim()
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
