// Package pipe implements the FusionPipe (DESIGN.md §5.2): one bounded queue and one apply loop
// per pipe, so views fed by different pipes never share a queue. A full queue blocks Submit,
// which stops the push stream from reading (gRPC flow control); nothing is dropped.
//
// The loop drives the member of each view the pipe feeds (an fs view's only member, or the
// pipe's own member of a forest) through view.Driver (Ingest for batches, snapshot and audit
// boundaries, sentinel feedback and ticks; Verifier for a verify walk's rows), or a rows
// view's member through view.RowsDriver (generic rows, snapshot and audit boundaries, ticks),
// one call per item, never per row; which driver a member has is view.NewRegistry's business.
// A batch goes only to the views that accept its schema; the others drop it and count it.
package pipe

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// Kind is what an item asks the loop to do.
type Kind int

// Item kinds. Control items ride the same queue as batches so they apply in stream order:
// a snapshot end is seen only after every snapshot row before it was applied.
const (
	KindBatch Kind = iota + 1
	KindSnapshotStart
	KindSnapshotEnd
	KindAuditStart
	KindAuditEnd
	KindSentinel
	KindCommandResult
	// KindVerify carries rows of a verify walk: compared with one view, not applied.
	KindVerify
)

// Item is one unit of work for the loop.
type Item struct {
	Session *session.Session
	Kind    Kind
	Origin  view.Origin
	// Schema is the batch's schema name ("" = the pipe's views' own).
	Schema string
	Rows   []fsbatch.Row
	// Generic holds the rows of a non-fs schema's batch, for rows views (Rows is empty then).
	Generic []view.Row
	// MaxIndex is the highest event index of the rows (0 for control items).
	MaxIndex uint64
	// ScanStartNs is when the on-demand scan that produced the rows was asked for (Fusion
	// physical time; 0 = unknown): realtime evidence newer than it wins (DESIGN.md §5.4).
	ScanStartNs int64
	// View names the view a verify walk is compared with (KindVerify).
	View string
	// Failed marks an audit end whose walk stopped early: nothing is judged missing.
	Failed bool
	// Sentinel holds sentinel feedback items (KindSentinel).
	Sentinel []view.SentinelItem
	// CommandID and Result answer a command (KindCommandResult); queued behind the command's
	// rows, so a waiter sees the rows applied.
	CommandID string
	Result    command.Result
	// Done is called by the loop once the item is applied. It must not block.
	Done func(Result)
}

// Result reports an applied item.
type Result struct {
	Applied, Rejected int
	Err               error
	Committed         uint64
}

// Stats are a pipe's counters.
type Stats struct {
	QueueLen, QueueCap                         int
	Batches, RowsApplied, RowsRejected, Panics uint64
	Committed                                  uint64
}

// Pipe is one FusionPipe.
type Pipe struct {
	ID    string
	Views []*view.View
	// Members are the members the pipe feeds, Members[i] of Views[i].
	Members []*view.Member
	// dropped counts, per view (Views[i]), batches of a schema the view does not accept.
	dropped []atomic.Uint64
	// Commands, if set, receives command results once everything before them is applied.
	Commands *command.Tracker
	log      *zap.Logger
	q        chan *Item

	committed                                  atomic.Uint64
	batches, rowsApplied, rowsRejected, panics atomic.Uint64
}

// New returns a pipe feeding views through a queue of queueSize items.
func New(log *zap.Logger, id string, views []*view.View, queueSize int) *Pipe {
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pipe{ID: id, log: log.With(zap.String("pipe", id)), q: make(chan *Item, queueSize)}
	for _, v := range views {
		m := v.MemberOf(id)
		if m == nil {
			p.log.Error("pipe is not a member of the forest view; not fed", zap.String("view", v.Name))
			continue
		}
		p.Views, p.Members = append(p.Views, v), append(p.Members, m)
	}
	p.dropped = make([]atomic.Uint64, len(p.Views))
	return p
}

// Accepts reports whether a view of the pipe accepts schema.
func (p *Pipe) Accepts(schema string) bool {
	for _, v := range p.Views {
		if v.Cfg.Schema == schema {
			return true
		}
	}
	return false
}

// DropSchema counts a batch of schema that no view of the pipe accepts, against every view,
// and returns why it was dropped (for the Ack).
func (p *Pipe) DropSchema(schema string) string {
	for i := range p.Views {
		p.dropped[i].Add(1)
	}
	return p.dropReason(schema)
}

func (p *Pipe) dropReason(schema string) string {
	names := make([]string, len(p.Views))
	for i, v := range p.Views {
		names[i] = fmt.Sprintf("%s (%s)", v.Name, v.Cfg.Schema)
	}
	return fmt.Sprintf("dropped: schema %q is accepted by no view of pipe %s: %s", schema, p.ID, strings.Join(names, ", "))
}

// Dropped returns, per view name, the batches the view dropped for their schema.
func (p *Pipe) Dropped() map[string]uint64 {
	out := make(map[string]uint64, len(p.Views))
	for i, v := range p.Views {
		out[v.Name] += p.dropped[i].Load()
	}
	return out
}

// Submit queues an item, waiting while the queue is full (backpressure).
func (p *Pipe) Submit(ctx context.Context, it *Item) error {
	select {
	case p.q <- it:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("submit to pipe %s: %w", p.ID, ctx.Err())
	}
}

// RestoreCommitted sets the resume point read from Fusion's state dir at start (the views it
// describes were restored from their checkpoints).
func (p *Pipe) RestoreCommitted(index uint64) { p.committed.Store(index) }

// Committed returns the highest index applied.
func (p *Pipe) Committed() uint64 { return p.committed.Load() }

// CountRejected adds rows the receiver rejected before they reached the pipe (bad rows, wrong
// schema, a follower's snapshot rows), so the pipe's count holds every row refused on it.
func (p *Pipe) CountRejected(n int) { p.rowsRejected.Add(uint64(n)) }

// Stats returns the pipe's counters.
func (p *Pipe) Stats() Stats {
	return Stats{QueueLen: len(p.q), QueueCap: cap(p.q), Batches: p.batches.Load(),
		RowsApplied: p.rowsApplied.Load(), RowsRejected: p.rowsRejected.Load(),
		Panics: p.panics.Load(), Committed: p.committed.Load()}
}

// TickInterval is how often the loop lets its views expire suspects when no batch arrives.
const TickInterval = time.Second

// Run applies items until ctx is done.
func (p *Pipe) Run(ctx context.Context) error {
	t := time.NewTicker(TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.tick()
		case it := <-p.q:
			res := p.apply(it)
			if it.Done != nil {
				it.Done(res)
			}
		}
	}
}

func (p *Pipe) tick() {
	defer func() {
		if r := recover(); r != nil {
			p.panics.Add(1)
			p.log.Error("tick panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
	}()
	for _, m := range p.Members {
		m.Tick()
	}
}

// apply never lets a panic escape: a bad item is reported, the loop goes on.
func (p *Pipe) apply(it *Item) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			p.panics.Add(1)
			p.log.Error("apply panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			res = Result{Rejected: it.rowCount(), Err: fmt.Errorf("internal error applying batch: %v", r), Committed: p.committed.Load()}
		}
	}()
	switch it.Kind {
	case KindBatch:
		first, leaderOnly := true, it.Origin == view.OriginSnapshot || it.Origin == view.OriginAudit
		for i, m := range p.Members {
			if it.Schema != "" && p.Views[i].Cfg.Schema != it.Schema {
				p.dropped[i].Add(1)
				continue
			}
			if leaderOnly && !leads(it, m) {
				continue
			}
			var a, r int
			var err error
			if m.Rows != nil {
				a, r, err = m.Rows.Apply(it.Origin, it.Generic)
			} else {
				a, r, err = m.Driver.Apply(it.Origin, it.ScanStartNs, it.Rows)
			}
			// Views see the same rows; report the first view's figures, and any error.
			if res.Err == nil && err != nil {
				res.Err = err
			}
			if first {
				res.Applied, res.Rejected, first = a, r, false
			}
		}
		switch {
		case first && leaderOnly && p.Accepts(it.Schema):
			res.Rejected = it.rowCount()
			res.Err = fmt.Errorf("rejected: session %s leads no view of pipe %s; snapshot and audit rows come from the leader", it.Session.ID, p.ID)
		case first:
			res.Rejected = it.rowCount()
			res.Err = errors.New(p.dropReason(it.Schema))
		}
		p.batches.Add(1)
		p.rowsApplied.Add(uint64(res.Applied))
		p.rowsRejected.Add(uint64(res.Rejected))
		// A generic source resumes its realtime from the committed index (DESIGN.md §4.1);
		// its walks' rows carry their own cursors, which can run ahead of what realtime has
		// sent (a row updated during the snapshot), so only realtime rows commit there.
		if it.MaxIndex > p.committed.Load() && (it.Generic == nil || it.Origin == view.OriginRealtime) {
			p.committed.Store(it.MaxIndex)
		}
	case KindSnapshotEnd:
		// A complete snapshot reconciles: what it did not report is gone (DESIGN.md §5.1).
		for _, m := range p.Members {
			if !leads(it, m) {
				continue
			}
			if m.Rows != nil {
				if n := m.Rows.SnapshotEnd(it.Session.ID, it.Failed); n > 0 {
					p.log.Info("snapshot found missing rows", zap.String("view", m.View), zap.Int("deleted", n))
				}
			} else if gone := m.Driver.SnapshotEnd(it.Session.ID, it.Failed); len(gone) > 0 {
				p.log.Info("snapshot found missing paths", zap.String("view", m.View), zap.String("member", m.Name), zap.Int("deleted", len(gone)))
			}
			m.SnapshotEnded(it.Session.ID)
		}
	case KindSnapshotStart:
		for _, m := range p.Members {
			switch {
			case !leads(it, m):
			case m.Rows != nil:
				m.Rows.SnapshotStart(it.Session.ID)
			default:
				m.Driver.SnapshotStart(it.Session.ID)
			}
		}
	case KindVerify:
		for _, m := range p.Members {
			if m.View == it.View && m.Driver != nil {
				res.Applied, res.Rejected, res.Err = m.Driver.VerifyRows(it.CommandID, it.Rows)
			}
		}
		p.batches.Add(1)
	case KindAuditStart:
		for _, m := range p.Members {
			switch {
			case !leads(it, m):
			case m.Rows != nil:
				m.Rows.AuditStart()
			default:
				m.Driver.AuditStart()
			}
		}
	case KindAuditEnd:
		// Every row queued before this item is applied: the queue is the drain signal, so
		// nothing waits or polls (DESIGN.md §5.2, §9.11).
		for _, m := range p.Members {
			if !leads(it, m) {
				continue
			}
			if m.Rows != nil {
				if n := m.Rows.AuditEnd(it.Failed); n > 0 {
					p.log.Info("audit found missing rows", zap.String("view", m.View), zap.Int("deleted", n))
				}
			} else if gone := m.Driver.AuditEnd(it.Failed); len(gone) > 0 {
				p.log.Info("audit found missing paths", zap.String("view", m.View), zap.String("member", m.Name), zap.Int("deleted", len(gone)))
			}
		}
	case KindSentinel:
		for _, m := range p.Members {
			if leads(it, m) && m.Driver != nil {
				m.Driver.SentinelFeedback(it.Sentinel)
			}
		}
	case KindCommandResult:
		if p.Commands != nil {
			p.Commands.Done(it.CommandID, it.Result)
		}
	}
	res.Committed = p.committed.Load()
	return res
}

// rowCount returns the rows the item carries, fs or generic.
func (it *Item) rowCount() int { return len(it.Rows) + len(it.Generic) }

// leads reports whether the item's session leads member m. Snapshot, audit and sentinel items
// apply only there: a session may lead an fs view and follow in a forest member fed by the
// same pipe, or the reverse (DESIGN.md §5.1, §6). Realtime and on-demand rows apply to all.
func leads(it *Item, m *view.Member) bool { return m.State().Leader == it.Session.ID }
