package app

import (
	"context"
	"math"
	"time"

	"go.uber.org/zap"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// logProgress logs, every period, how far each leader's running snapshot or audit has come,
// from the progress its last heartbeat reported (DESIGN.md §4.1), so an operator following the
// log sees a walk of millions of files move and when it should end. It returns nil on cancel.
func (f *Fusion) logProgress(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		f.logWalks()
	}
}

// logWalks logs one line per tree (view, or forest member) whose leader reports a walk.
func (f *Fusion) logWalks() {
	for _, s := range f.sessions.List() {
		w := s.Progress().GetWalk()
		if w == nil || !s.IsLeader() {
			continue
		}
		for _, key := range s.Pipe.Views {
			if f.sessions.Leader(key) != s.ID {
				continue // the session follows in this one
			}
			m, ok := f.views.ByKey(key)
			if !ok {
				continue
			}
			// The tree's size is a total only when it is a complete one: during a first
			// snapshot it grows with the walk and would read as done throughout.
			var nodes uint64
			if m.State().SnapshotComplete {
				nodes = uint64(m.Len())
			}
			fields := append([]zap.Field{zap.String("view", m.View), zap.String("member", m.Name), zap.String("session", s.ID),
				zap.String("agent", s.Info.AgentID)}, walkFields(w, nodes)...)
			f.log.Info("walk progress", fields...)
		}
	}
}

// walkFields are a walk's log fields: counts, rate, elapsed, and, when a total is known (the
// agent's estimate from its last walk, else the tree's nodes), the percentage and the ETA.
func walkFields(w *fustorv1.WalkProgress, nodes uint64) []zap.Field {
	done := w.GetDirs() + w.GetFiles()
	fields := []zap.Field{zap.String("kind", w.GetKind()), zap.Uint64("dirs", w.GetDirs()), zap.Uint64("files", w.GetFiles()),
		zap.Float64("entries_per_second", math.Round(w.GetEntriesPerSecond())), zap.Duration("elapsed", w.GetElapsed().AsDuration())}
	total, from := w.GetEstimatedTotal(), "last_walk"
	if total == 0 {
		total, from = nodes, "view_nodes"
	}
	if total == 0 {
		return fields
	}
	// Floored and capped, as fustorctl status shows it: 100 only once the total is reached.
	pct := math.Min(100, math.Floor(float64(done)*100/float64(total)))
	fields = append(fields, zap.Uint64("total", total), zap.String("total_from", from), zap.Float64("percent", pct))
	// No ETA before the walk has a rate (its first rows can take a while: hot files go last).
	switch left := float64(total) - float64(done); {
	case left <= 0:
		fields = append(fields, zap.Duration("eta", 0))
	case w.GetEntriesPerSecond() > 0:
		fields = append(fields, zap.Duration("eta", time.Duration(left/w.GetEntriesPerSecond()*float64(time.Second)).Round(time.Second)))
	}
	return fields
}
