// Package pipe implements the FusionPipe (DESIGN.md §5.2): one bounded queue and one apply loop
// per pipe, so views fed by different pipes never share a queue. A full queue blocks Submit,
// which stops the push stream from reading (gRPC flow control); nothing is dropped.
//
// The loop drives each view through view.Driver (Ingest for batches, snapshot and audit
// boundaries, sentinel feedback and ticks; Verifier for a verify walk's rows), one call per
// item, never per row; which driver a view has is view.NewRegistry's business.
package pipe

import (
	"context"
	"fmt"
	"runtime/debug"
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
	Rows    []fsbatch.Row
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
	return &Pipe{ID: id, Views: views, log: log.With(zap.String("pipe", id)), q: make(chan *Item, queueSize)}
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

// ResetCommitted forgets the resume point: the views it described were reset, so a source
// resuming from it would leave them incomplete.
func (p *Pipe) ResetCommitted() { p.committed.Store(0) }

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
	for _, v := range p.Views {
		v.Driver.Tick()
	}
}

// apply never lets a panic escape: a bad item is reported, the loop goes on.
func (p *Pipe) apply(it *Item) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			p.panics.Add(1)
			p.log.Error("apply panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			res = Result{Rejected: len(it.Rows), Err: fmt.Errorf("internal error applying batch: %v", r), Committed: p.committed.Load()}
		}
	}()
	switch it.Kind {
	case KindBatch:
		for _, v := range p.Views {
			a, r, err := v.Driver.Apply(it.Origin, it.ScanStartNs, it.Rows)
			// Views see the same rows; report the first view's figures, and any error.
			if res.Err == nil && err != nil {
				res.Err = err
			}
			if v == p.Views[0] {
				res.Applied, res.Rejected = a, r
			}
		}
		p.batches.Add(1)
		p.rowsApplied.Add(uint64(res.Applied))
		p.rowsRejected.Add(uint64(res.Rejected))
		if it.MaxIndex > p.committed.Load() {
			p.committed.Store(it.MaxIndex)
		}
	case KindSnapshotEnd:
		// A complete snapshot reconciles: what it did not report is gone (DESIGN.md §5.1).
		for _, v := range p.Views {
			if gone := v.Driver.SnapshotEnd(it.Session.ID, it.Failed); len(gone) > 0 {
				p.log.Info("snapshot found missing paths", zap.String("view", v.Name), zap.Int("deleted", len(gone)))
			}
			v.SnapshotEnded(it.Session.ID)
		}
	case KindSnapshotStart:
		for _, v := range p.Views {
			v.Driver.SnapshotStart(it.Session.ID)
		}
	case KindVerify:
		for _, v := range p.Views {
			if v.Name == it.View {
				res.Applied, res.Rejected, res.Err = v.Driver.VerifyRows(it.CommandID, it.Rows)
			}
		}
		p.batches.Add(1)
	case KindAuditStart:
		for _, v := range p.Views {
			v.Driver.AuditStart()
		}
	case KindAuditEnd:
		// Every row queued before this item is applied: the queue is the drain signal, so
		// nothing waits or polls (DESIGN.md §5.2, §9.11).
		for _, v := range p.Views {
			if gone := v.Driver.AuditEnd(it.Failed); len(gone) > 0 {
				p.log.Info("audit found missing paths", zap.String("view", v.Name), zap.Int("deleted", len(gone)))
			}
		}
	case KindSentinel:
		for _, v := range p.Views {
			v.Driver.SentinelFeedback(it.Sentinel)
		}
	case KindCommandResult:
		if p.Commands != nil {
			p.Commands.Done(it.CommandID, it.Result)
		}
	}
	res.Committed = p.committed.Load()
	return res
}
