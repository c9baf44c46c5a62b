package pipe

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
)

// MsgWalkPanicked is the message of the error logged when a walk panics. It is exported so
// the agent can count these panics in a metric from the pipe's logger (zap.Hooks) without a
// field of the pipe's own; keep it stable.
const MsgWalkPanicked = "walk panicked; restarting it"

// progressed records that a walk handed rows on; the supervisor reads it.
func (s *session) progressed() { s.p.walkProgress.Store(s.p.now().UnixNano()) }

// walkPanic is a panic recovered from a walk, with the stack where it happened.
type walkPanic struct {
	value any
	stack []byte
}

// supervise runs a walk (snapshot or audit) and restarts it when it makes no progress for
// StuckAfter — a scan hung on a dead mount, say (DESIGN.md §4.1 step 7). A walk that does not
// return within StuckAfter of being cancelled is abandoned (counted), never waited on forever.
//
// A walk that panics is recovered here, logged with its stack and restarted after a backoff
// (BackoffMin doubling up to BackoffMax): the walk runs on a goroutine of its own, so without
// this recover one bad entry or driver bug would kill the whole agent, heartbeats included
// (DESIGN.md §8). The backoff keeps a walk that panics every time from spinning.
func (s *session) supervise(ctx context.Context, name string, task func(context.Context)) {
	limit := s.p.cfg.StuckAfter
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		// Buffered: the walk's goroutine never blocks on it, even once abandoned.
		panicked := make(chan walkPanic, 1)
		s.progressed()
		go func() {
			defer close(done)
			defer func() {
				if r := recover(); r != nil {
					panicked <- walkPanic{value: r, stack: debug.Stack()}
				}
			}()
			task(tctx)
		}()
		stuck := false
		if limit > 0 {
			t := time.NewTicker(max(limit/4, time.Millisecond))
		watch:
			for {
				select {
				case <-done:
					break watch
				case <-t.C:
					if s.p.now().UnixNano()-s.p.walkProgress.Load() > int64(limit) {
						stuck = true
						break watch
					}
				}
			}
			t.Stop()
		} else {
			<-done
		}
		cancel()
		if !stuck {
			select {
			case wp := <-panicked:
				backoff = s.panicBackoff(backoff)
				s.p.log.Error(MsgWalkPanicked, zap.String("task", name), zap.String("panic", fmt.Sprint(wp.value)),
					zap.ByteString("stack", wp.stack), zap.Duration("retry_in", backoff))
				select {
				case <-ctx.Done():
					return
				case <-s.p.after(backoff):
				}
				continue
			default:
				return
			}
		}
		s.p.stuckRestarts.Add(1)
		s.p.log.Warn("task made no progress; restarting it", zap.String("task", name), zap.Duration("stuck_after", limit))
		select {
		case <-done:
		case <-time.After(limit):
			s.p.log.Error("stuck task ignores cancellation; abandoning it", zap.String("task", name))
		}
	}
}

// panicBackoff is the wait before restarting a walk that panicked after waiting prev before
// this run: BackoffMin first, then doubling up to BackoffMax (at least a millisecond, so a
// pipe configured without a backoff cannot spin).
func (s *session) panicBackoff(prev time.Duration) time.Duration {
	lo, hi := max(s.p.cfg.BackoffMin, time.Millisecond), max(s.p.cfg.BackoffMax, s.p.cfg.BackoffMin, time.Millisecond)
	if prev == 0 {
		return lo
	}
	return min(prev*2, hi)
}
