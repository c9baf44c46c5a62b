package s3

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
)

// Watch is the source's realtime: a listing of the whole source every list_interval, compared
// with the last one. Objects added or changed (ETag, size or LastModified) are emitted as
// realtime upserts; deletes cannot be (nothing witnessed them), so finding any asks the pipes
// for an audit, whose full listing lets Fusion remove them as blind-spot deletions.
//
// A failed listing is retried after a wait doubling from list_interval to backoff_max; the
// last listing is kept, so the first listing that succeeds again reports everything that
// changed meanwhile. Watch returns only when ctx is done.
//
// What the comparison starts from: a listing whose changes since reached Fusion. The first
// listing is only that baseline; a snapshot or audit of the whole source that started earlier
// replaces it (adopt), since Fusion got that one as it was and the baseline's differences from
// it were never sent.
func (s *Source) Watch(ctx context.Context, emit func(source.Event)) error {
	wait := time.Duration(0)
	failures := 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := s.cycle(ctx, emit)
		if ctx.Err() != nil {
			return nil
		}
		s.failing.Store(err != nil)
		if err != nil {
			failures++
			s.c.listFailures.Add(1)
			wait = min(s.cfg.ListInterval<<min(failures, 20), s.cfg.BackoffMax)
			s.log.Warn("s3 listing failed; retrying", zap.Int("failures", failures), zap.Duration("retry_in", wait), zap.Error(err))
		} else {
			if failures > 0 {
				s.log.Info("s3 listing recovered", zap.Int("failures", failures))
			}
			failures, wait = 0, s.cfg.ListInterval
		}
		t.Reset(wait)
	}
}

// cycle lists the whole source once and emits what changed since the last listing.
func (s *Source) cycle(ctx context.Context, emit func(source.Event)) error {
	cur := &listing{start: time.Now()}
	s.mu.Lock()
	if s.last != nil {
		cur.objs = make(map[string]obj, len(s.last.objs))
	} else {
		cur.objs = map[string]obj{}
	}
	s.mu.Unlock()
	err := s.list(ctx, "/", func(items []item) error {
		for _, it := range items {
			if !it.dir {
				cur.objs[it.path] = it.o
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.c.listings.Add(1)
	cur.done, cur.watched = time.Now(), true
	s.log.Debug("s3 listing done", zap.Int("objects", len(cur.objs)), zap.Duration("took", cur.done.Sub(cur.start)))
	s.mu.Lock()
	prev := s.last
	if prev != nil && prev.start.After(cur.start) {
		// A walk that started after this listing was adopted meanwhile: it is newer, and
		// Fusion has it; this listing's differences from it would be older values.
		s.mu.Unlock()
		return nil
	}
	s.last = cur
	s.mu.Unlock()
	if prev == nil {
		s.log.Info("s3 baseline listing", zap.Int("objects", len(cur.objs)))
		return nil
	}
	var changed uint64
	for _, p := range sortedPaths(cur.objs) {
		o := cur.objs[p]
		if old, ok := prev.objs[p]; ok && old == o {
			continue
		}
		changed++
		emit(source.Event{Origin: source.OriginRealtime, Path: p, Size: o.size, MtimeNs: o.mtime, Index: s.clock.Index()})
	}
	var deleted uint64
	for p := range prev.objs {
		if _, ok := cur.objs[p]; !ok {
			deleted++
		}
	}
	s.c.changesFound.Add(changed)
	if deleted > 0 {
		s.c.deletesFound.Add(deleted)
		s.log.Info("s3 listing found deletes; asking for an audit", zap.Uint64("deleted", deleted), zap.Uint64("changed", changed))
		if f := s.onOverflow.Load(); f != nil {
			(*f)()
		}
	}
	return nil
}

// adopt makes a complete listing that Fusion received (a snapshot or audit of the whole
// source) the watcher's starting point, if it started before the one held (or none is held):
// comparing with it sends every change since it, some perhaps twice, none missed.
func (s *Source) adopt(l *listing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || l.start.Before(s.last.start) {
		s.last = l
	}
}
