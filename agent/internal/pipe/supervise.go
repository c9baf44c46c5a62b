package pipe

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// progressed records that a walk handed rows on; the supervisor reads it.
func (s *session) progressed() { s.p.walkProgress.Store(s.p.now().UnixNano()) }

// supervise runs a walk (snapshot or audit) and restarts it when it makes no progress for
// StuckAfter — a scan hung on a dead mount, say (DESIGN.md §4.1 step 7). A walk that does not
// return within StuckAfter of being cancelled is abandoned (counted), never waited on forever.
func (s *session) supervise(ctx context.Context, name string, task func(context.Context)) {
	limit := s.p.cfg.StuckAfter
	for ctx.Err() == nil {
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		s.progressed()
		go func() {
			defer close(done)
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
			return
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
