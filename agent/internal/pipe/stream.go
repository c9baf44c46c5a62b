package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/sender"
	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// send owns the stream's Send side and the fs encoder: directory declarations are per stream,
// so exactly one goroutine may number them.
func (s *session) send(ctx context.Context, stream fustorv1.PushService_PushClient) error {
	enc := fsbatch.NewEncoder(0)
	var seq uint64
	put := func(m *fustorv1.PushRequest) error {
		seq++
		m.Seq = seq
		if seq == 1 {
			m.SessionId = s.id
		}
		if err := stream.Send(m); err != nil {
			return fmt.Errorf("send seq %d: %w", seq, err)
		}
		return nil
	}
	// An empty first message binds the stream to the session at once, so Fusion can send role
	// changes and commands before the agent has anything to say.
	if err := put(&fustorv1.PushRequest{}); err != nil {
		return err
	}
	for {
		var it outItem
		select {
		case <-ctx.Done():
			_ = stream.CloseSend()
			return nil
		case it = <-s.out:
		}
		if it.control != nil {
			if err := put(it.control); err != nil {
				return err
			}
			if e := it.control.GetSnapshotEnd(); e != nil && !e.GetFailed() {
				s.snapEnd.Store(seq) // its Ack says the snapshot is applied
			}
			continue
		}
		if it.rows != nil {
			if err := s.sendRows(it, put); err != nil {
				return err
			}
			continue
		}
		for start := 0; start < len(it.events); start += s.p.cfg.BatchSize {
			chunk := it.events[start:min(start+s.p.cfg.BatchSize, len(it.events))]
			for i := range chunk {
				e := &chunk[i]
				enc.Add(e.Path, e.Flags, e.Size, e.MtimeNs, e.Index, e.ParentMtimeNs)
			}
			b, index := enc.Flush()
			if b == nil {
				continue
			}
			err := put(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
				Source: it.origin, SchemaName: "fs", Index: index, CommandId: it.commandID, Rows: &fustorv1.EventBatch_Fs{Fs: b}}}})
			if err != nil {
				return err
			}
			// Send has marshalled b; grpc-go keeps a message past Send only for stats
			// handlers and tracing, and this connection has none (sender/grpc). Its
			// columns become the next batch's.
			enc.Recycle(b)
			s.p.eventsSent.Add(uint64(len(chunk)))
		}
	}
}

// recv owns the stream's Recv side: acks, role changes and obsolescence.
func (s *session) recv(stream fustorv1.PushService_PushClient) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("push stream closed by fusion")
			}
			if sender.IsSessionGone(err) {
				return fmt.Errorf("%w: push stream: %v", errObsoleted, err)
			}
			if status.Code(err) == codes.Canceled {
				return nil
			}
			return fmt.Errorf("receive from push stream: %w", err)
		}
		switch p := m.GetPayload().(type) {
		case *fustorv1.PushResponse_Ack:
			s.p.committed.Store(max(s.p.committed.Load(), p.Ack.GetCommittedIndex()))
			s.p.advanceAnchor(p.Ack.GetCommittedIndex())
			if seq := s.snapEnd.Load(); seq != 0 && p.Ack.GetSeq() == seq && p.Ack.GetError() == "" {
				s.p.anchorCovered() // Fusion applied this session's snapshot
			}
			if p.Ack.GetError() != "" {
				s.p.log.Warn("fusion rejected rows", zap.Uint64("seq", p.Ack.GetSeq()),
					zap.Uint32("rejected", p.Ack.GetRowsRejected()), zap.String("error", p.Ack.GetError()))
			}
		case *fustorv1.PushResponse_RoleChange:
			s.setRole(p.RoleChange.GetRole())
		case *fustorv1.PushResponse_SessionObsoleted:
			return fmt.Errorf("%w: %s", errObsoleted, p.SessionObsoleted.GetReason())
		case *fustorv1.PushResponse_Command:
			select {
			case s.cmds <- p.Command:
			default:
				// The runner is saturated: answer at once rather than block acks.
				s.p.log.Warn("command dropped: too many pending", zap.String("id", p.Command.GetId()))
			}
		}
	}
}

// emit hands it to the sender. The walk meter sees it first: a walk's markers and rows are
// what its heartbeat progress counts (progress.go).
func (s *session) emit(ctx context.Context, it outItem) error {
	s.p.walks.observe(it, s.p.now())
	select {
	case s.out <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// realtime forwards bus events as they come, without waiting to fill a batch. A lost position
// (the bus overwrote unread events) is repaired by a snapshot when leader.
func (s *session) realtime(ctx context.Context, sub *bus.Subscriber[source.Event]) error {
	for {
		evs, err := sub.Next(ctx, s.p.cfg.BatchSize, nil)
		if errors.Is(err, bus.ErrPositionLost) {
			s.p.log.Warn("realtime events lost in the bus; a snapshot will repair the view")
			s.needSnapshot()
			continue
		}
		if err != nil {
			return nil
		}
		if err := s.emit(ctx, outItem{origin: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, events: evs}); err != nil {
			return nil
		}
	}
}

// needSnapshot asks lead for another snapshot in this session.
func (s *session) needSnapshot() {
	s.resnap.Store(true)
	s.roleChanged()
}

// lead starts the leader's duties on promotion and cancels them on demotion (DESIGN.md §4.1
// step 6). Heartbeat and realtime run elsewhere and never stop for this.
func (s *session) lead(ctx context.Context) error {
	var (
		cancel  context.CancelFunc = func() {}
		running chan struct{}
		snapped = s.resumed // a resumed session has nothing to re-snapshot
	)
	defer func() {
		cancel()
		if running != nil {
			<-running
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-running:
			running = nil
			continue
		case <-s.roleCh:
		}
		leader := s.p.role.Load() == int32(fustorv1.Role_ROLE_LEADER)
		if s.resnap.Swap(false) && snapped {
			snapped = false
			if running != nil { // restart the duties with a snapshot first
				cancel()
				<-running
				running = nil
			}
		}
		switch {
		case !leader && running != nil:
			s.p.log.Info("demoted: cancelling snapshot and audits")
			cancel()
		case leader && running == nil:
			cancel, running = s.startDuties(ctx, !snapped)
			snapped = true
		}
	}
}

func (s *session) startDuties(ctx context.Context, snapshot bool) (context.CancelFunc, chan struct{}) {
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		defer func() {
			if r := recover(); r != nil {
				s.p.log.Error("leader duties panicked", zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		s.duties(ctx, dctx, snapshot)
	}()
	return cancel, done
}

// msSince is the wall time since start in ms, logged so benchmarks can read walk times.
func msSince(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1e3 }

// snapshot walks the whole source and sends it between snapshot start and end markers. It
// never fails the session: a failed walk is reported in the end marker. It reports whether the
// walk completed.
func (s *session) snapshot(ctx context.Context) bool {
	s.p.snapshotRunning.Store(true)
	defer s.p.snapshotRunning.Store(false)
	// A cancelled snapshot sends no end marker: its progress ends here (a no-op after the end).
	defer s.p.walks.end(false)
	s.p.snapshots.Add(1)
	if err := s.emit(ctx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{
		SnapshotStart: &fustorv1.SnapshotStart{}}}}); err != nil {
		return false
	}
	var rows uint64
	start := time.Now()
	st, err := s.p.walk(ctx, fspath.Root, source.OriginSnapshot, func(it outItem) error {
		s.progressed()
		rows += uint64(it.len())
		it.origin = fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT
		return s.emit(ctx, it)
	})
	if ctx.Err() != nil {
		return false
	}
	end := &fustorv1.SnapshotEnd{Rows: rows, Skipped: st.Skipped}
	if err != nil {
		end.Failed, end.Error = true, err.Error()
		s.p.log.Error("snapshot failed", zap.Error(err))
	} else {
		s.p.log.Info("snapshot sent", zap.Uint64("rows", rows), zap.Uint64("dirs", st.Dirs), zap.Uint64("files", st.Files), zap.Uint64("skipped", st.Skipped),
			zap.Uint64("being_written", st.Writing), zap.Float64("duration_ms", msSince(start)))
	}
	_ = s.emit(ctx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: end}}})
	return err == nil
}

// commands runs Fusion's commands one at a time, in any state — leader or follower, with or
// without realtime — bypassing the bus (DESIGN.md §4.1 step 8).
func (s *session) commands(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-s.cmds:
			s.runCommand(ctx, c)
		}
	}
}

func (s *session) runCommand(ctx context.Context, c *fustorv1.Command) {
	switch k := c.GetKind().(type) {
	case *fustorv1.Command_Scan:
		res := &fustorv1.CommandResult{CommandId: c.GetId(), Ok: true}
		_, err := s.p.walk(ctx, k.Scan.GetPath(), source.OriginOnDemand, func(it outItem) error {
			it.origin, it.commandID = fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND, c.GetId()
			return s.emit(ctx, it)
		})
		if err != nil {
			res.Ok, res.Error = false, err.Error()
		}
		_ = s.emit(ctx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_CommandResult{CommandResult: res}}})
	case *fustorv1.Command_Sentinel:
		var seen []source.SentinelItem // a source without a sentinel sees nothing, so judges nothing
		if sn, ok := s.p.src.(source.Sentineler); ok {
			seen = sn.Sentinel(k.Sentinel.GetPaths())
		}
		fb := &fustorv1.SentinelFeedback{CommandId: c.GetId(), Items: make([]*fustorv1.SentinelItem, len(seen))}
		for i, it := range seen {
			fb.Items[i] = &fustorv1.SentinelItem{Path: it.Path, Exists: it.Exists, Size: it.Size, MtimeNs: it.MtimeNs}
		}
		_ = s.emit(ctx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SentinelFeedback{SentinelFeedback: fb}}})
	default:
		_ = s.emit(ctx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_CommandResult{CommandResult: &fustorv1.CommandResult{
			CommandId: c.GetId(), Error: "unknown command kind"}}}})
	}
}
