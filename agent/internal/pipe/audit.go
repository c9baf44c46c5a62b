package pipe

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// RequestAudit tells the pipe that realtime events were lost (an inotify queue overflow):
// the leader owes a deep recovery audit (DESIGN.md §4.3). Requests coalesce — at most one is
// owed — but none is ever dropped: one made inside OverflowAuditDelay of the last recovery
// audit waits for the rest of it, one made while an audit runs waits for that audit to end,
// and a follower keeps it for when it leads. Safe to call from any goroutine, never blocks.
func (p *Pipe) RequestAudit() {
	select {
	case p.auditReq <- struct{}{}:
	default: // one is owed already: it will cover this loss too, as it has not started yet
	}
}

// takeAuditRequest consumes an owed request, if any.
func (p *Pipe) takeAuditRequest() bool {
	select {
	case <-p.auditReq:
		return true
	default:
		return false
	}
}

// failedRecoveryRetry is the least wait before a failed recovery audit is tried again.
const failedRecoveryRetry = time.Second

func (p *Pipe) after(d time.Duration) <-chan time.Time {
	if p.cfg.After != nil {
		return p.cfg.After(d)
	}
	return time.After(d)
}

// duties runs the snapshot (once per session) and then audits until cancelled: periodic ones,
// and a deep recovery audit for every known loss of realtime events. Each leadership starts
// with an empty audit cache, so its first audit is a full scan — except the pipe's first, which
// takes the cache an earlier run saved once its snapshot completed (leadershipCache).
func (s *session) duties(sessCtx, ctx context.Context, snapshot bool) {
	// owed: a recovery audit was requested and has not started yet. holdUntil: no recovery
	// audit starts before it (zero: none ran in this leadership). wake: the timer of an owed
	// audit held back until then.
	var (
		owed      bool
		holdUntil time.Time
		wake      <-chan time.Time
	)
	defer func() {
		if owed {
			// Cancelled (demotion, session end) before it ran: the pipe owes it still.
			s.p.RequestAudit()
		}
	}()
	if snapshot && s.positioned != nil {
		// The snapshot covers what came before realtime's start, so that start comes first.
		select {
		case <-s.positioned:
		case <-ctx.Done():
			return
		}
	}
	snapOK, snapStart := false, s.p.now()
	if snapshot {
		// A loss before the snapshot starts is repaired by it (every entry listed and
		// stat'ed), unless the walk fails; one during the snapshot stays owed.
		before := s.p.takeAuditRequest()
		var ok atomic.Bool
		s.supervise(ctx, "snapshot", func(ctx context.Context) { ok.Store(s.snapshot(ctx)) })
		owed = before && !ok.Load()
		snapOK = ok.Load()
	}
	if !s.p.caps.Audit {
		// The snapshot is all a leader can do on a source that cannot audit; a request for a
		// recovery audit can never be met there, so it is not kept owed.
		owed = false
		return
	}
	// snapOK: this leadership's snapshot completed, which a saved cache needs to be used.
	cache := s.leadershipCache(snapshot && snapOK, snapStart)
	var tick <-chan time.Time
	if s.p.cfg.AuditInterval > 0 {
		t := time.NewTicker(s.p.cfg.AuditInterval)
		defer t.Stop()
		tick = t.C
	}
	for ctx.Err() == nil {
		run := false
		if owed {
			// Spaced from the last one's end, so an overflowing watcher cannot loop the walk.
			wait := time.Duration(0)
			if !holdUntil.IsZero() {
				wait = holdUntil.Sub(s.p.now())
			}
			switch {
			case wait <= 0:
				run = true
			case wake == nil:
				wake = s.p.after(wait)
				s.p.log.Info("realtime events were lost; deep audit held back", zap.Duration("recovery_in", wait),
					zap.Duration("overflow_audit_delay", s.p.cfg.OverflowAuditDelay))
			}
		}
		if !run {
			select {
			case <-ctx.Done():
				return
			case <-tick:
				run = true // deep if a recovery is owed: it satisfies the request early
			case <-s.p.auditReq:
				owed = true
				continue
			case <-wake:
				wake = nil
				continue // a stale timer (its audit ran at a tick) finds nothing owed
			}
		}
		opts := s.p.nextAudit()
		recovery := owed
		if recovery {
			owed, opts.Deep = false, true
			s.p.log.Warn("realtime events were lost; deep audit now", zap.Uint64("cycle", opts.Cycle))
		}
		var ok atomic.Bool
		s.supervise(ctx, "audit", func(ctx context.Context) { ok.Store(s.audit(sessCtx, ctx, cache, opts, recovery)) })
		if recovery {
			// A failed recovery repaired nothing for sure: owed again, after the delay but
			// never at once, so a walk that fails at its start (root gone) cannot spin.
			owed = !ok.Load()
			hold := s.p.cfg.OverflowAuditDelay
			if owed {
				hold = max(hold, failedRecoveryRetry)
			}
			holdUntil = s.p.now().Add(hold)
		}
	}
}

// nextAudit numbers the next audit and says how deep it looks: the cycle moves the rolling
// verification's cursor, and every AuditDeepEvery-th audit is deep. The count is the pipe's,
// not the leadership's, so short leaderships still reach the deep one (each starts with an
// empty cache, a full audit anyway).
func (p *Pipe) nextAudit() source.AuditOptions {
	n := p.auditCycle.Add(1)
	every := uint64(max(p.cfg.AuditDeepEvery, 0))
	return source.AuditOptions{Cycle: n, Share: p.cfg.AuditRollingShare, Deep: every > 0 && n%every == 0}
}

// audit sends one audit between explicit start and end markers; the end is sent on every way
// out, failure and cancellation included, on the session's context (DESIGN.md §9.6). It
// reports whether the walk completed. recovery marks the audit answering RequestAudit.
func (s *session) audit(sessCtx, ctx context.Context, cache *source.AuditCache, opts source.AuditOptions, recovery bool) (ok bool) {
	if !s.p.caps.Audit {
		return false
	}
	s.p.auditRunning.Store(true)
	defer s.p.auditRunning.Store(false)
	if err := s.emit(ctx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_AuditStart{
		AuditStart: &fustorv1.AuditStart{}}}}); err != nil {
		return false
	}
	end := &fustorv1.AuditEnd{}
	defer func() {
		if r := recover(); r != nil {
			ok, end.Failed, end.Error = false, true, fmt.Sprintf("audit panicked: %v", r)
			s.p.log.Error("audit panicked", zap.Any("panic", r), zap.Stack("stack"))
		}
		_ = s.emit(sessCtx, outItem{control: &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_AuditEnd{AuditEnd: end}}})
	}()
	start := time.Now()
	cache.Begin()
	st, err := s.p.auditWalk(ctx, cache, opts, func(it outItem) error {
		s.progressed()
		it.origin = fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT
		return s.emit(ctx, it)
	})
	if err != nil {
		end.Failed, end.Error = true, err.Error()
		s.p.log.Warn("audit failed", zap.Bool("recovery", recovery), zap.Error(err))
		return false
	}
	s.p.auditCompleted(cache, st)
	s.p.audits.Add(1)
	if recovery {
		s.p.recoveryAudits.Add(1)
	}
	s.p.log.Info("audit sent", zap.Uint64("cycle", opts.Cycle), zap.Bool("deep", opts.Deep), zap.Bool("recovery", recovery),
		zap.Uint64("dirs", st.Dirs), zap.Uint64("silent_dirs", st.Silent), zap.Uint64("rolled_dirs", st.Rolled), zap.Uint64("files", st.Files),
		zap.Uint64("skipped", st.Skipped), zap.Float64("duration_ms", msSince(start)))
	return true
}
