package pipe

import (
	"errors"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/state"
)

// MsgAuditStateRefused is logged when a saved audit state cannot be trusted; keep it stable.
const MsgAuditStateRefused = "audit state refused: moved aside, the first audit lists every directory"

// auditState is what the pipe keeps of its audit cache across restarts (agent/internal/state):
// the cache of its last completed audit, saved to its file in the agent's state directory,
// and read back once, when the pipe starts.
type auditState struct {
	once sync.Once
	mu   sync.Mutex
	// restored is the saved cache read at start, until the first leadership takes it.
	restored *state.State
	// pending is the last completed audit's cache, not saved yet (a save interval holds it).
	pending  *state.State
	lastSave time.Time
}

// stateFile is the pipe's state file, "" when it keeps none: no state directory, saving off
// (a negative AuditStateSaveInterval), or a source that resumes from its own log, whose
// position is Fusion's committed index (returned by CreateSession, so nothing to keep here)
// and whose audit uses no cache.
func (p *Pipe) stateFile() string {
	if p.cfg.StateDir == "" || p.cfg.AuditStateSaveInterval < 0 || p.caps.Resume {
		return ""
	}
	return state.File(p.cfg.StateDir, p.cfg.ID)
}

// loadState reads the saved state once per pipe. A missing file is a first start. A file that
// cannot be trusted is refused whole: logged, moved aside (never deleted) and counted, and the
// pipe starts with an empty cache, as without one. A cache of another source (its root or
// driver changed) is ignored: its paths are relative to another tree.
func (p *Pipe) loadState() {
	p.st.once.Do(func() {
		path := p.stateFile()
		if path == "" {
			return
		}
		log := p.log.With(zap.String("path", path))
		st, err := state.Read(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return
		case err != nil:
			p.stateRefused.Add(1)
			aside, merr := state.Refuse(path, p.now())
			if merr != nil {
				aside = "(not moved: " + merr.Error() + ")"
			}
			log.Warn(MsgAuditStateRefused, zap.String("moved_to", aside), zap.Error(err))
			return
		case st.Source != p.cfg.SourceURI:
			log.Info("audit state is of another source: ignored, the first audit lists every directory",
				zap.String("state_source", st.Source), zap.String("source", p.cfg.SourceURI))
			return
		}
		// The audit count goes on, so the rolling verification's cursor does not go back to its
		// first bucket at every restart (a restart per audit would never roll the others).
		for {
			cur := p.auditCycle.Load()
			if cur >= st.Cycle || p.auditCycle.CompareAndSwap(cur, st.Cycle) {
				break
			}
		}
		p.st.mu.Lock()
		p.st.restored = &st
		p.st.mu.Unlock()
		log.Info("audit state read", zap.Int("dirs", len(st.Dirs)), zap.Uint64("cycle", st.Cycle), zap.Time("written_at", st.WrittenAt))
	})
}

// leadershipCache returns the audit cache a leadership starts with. The first one of the pipe
// takes the saved cache if its snapshot, started at snapStart, completed after the cache was
// written: the cache says only "unchanged since that audit listed it", which lets an audit skip
// a directory only if Fusion got its content no earlier — from the snapshot. (A cache written
// after the snapshot started, by another agent sharing the state_dir say, could hide a change
// made in between.) Any other leadership starts empty (DESIGN.md §4.1 step 6: the first audit
// after a promotion is full).
func (s *session) leadershipCache(snapshotted bool, snapStart time.Time) *source.AuditCache {
	p := s.p
	p.st.mu.Lock()
	st := p.st.restored
	p.st.restored = nil
	p.st.mu.Unlock()
	if st == nil {
		return source.NewAuditCache()
	}
	if !snapshotted {
		p.log.Info("saved audit cache not used: this leadership's snapshot did not complete")
		return source.NewAuditCache()
	}
	if !st.WrittenAt.Before(snapStart) {
		p.log.Warn("saved audit cache not used: written after this leadership's snapshot started",
			zap.Time("written_at", st.WrittenAt), zap.Time("snapshot_started", snapStart))
		return source.NewAuditCache()
	}
	p.stateRestores.Add(1)
	p.log.Info("audit cache restored", zap.Int("dirs", len(st.Dirs)), zap.Time("written_at", st.WrittenAt))
	return source.NewAuditCacheFrom(st.Dirs)
}

// auditCompleted keeps what a completed audit left in the cache and saves it, now or, with a
// save interval, once the last save is that old (and at a graceful stop, flushState). A failed
// audit never gets here: its half-updated cache is never saved as if complete.
func (p *Pipe) auditCompleted(cache *source.AuditCache, ws source.WalkStats) {
	dirs := cache.Completed()
	p.mu.Lock()
	p.lastAudit = ws
	p.mu.Unlock()
	if p.stateFile() == "" {
		return
	}
	st := &state.State{Source: p.cfg.SourceURI, Cycle: p.auditCycle.Load(), Dirs: dirs}
	p.st.mu.Lock()
	p.st.pending = st
	due := p.cfg.AuditStateSaveInterval == 0 || p.now().Sub(p.st.lastSave) >= p.cfg.AuditStateSaveInterval
	p.st.mu.Unlock()
	if due {
		p.flushState()
	}
}

// flushState saves the pending state, if any. A failed save is logged and counted; the
// previous file stays (the write is atomic) and the pending state is kept for the next try.
func (p *Pipe) flushState() {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	st := p.st.pending
	if st == nil {
		return
	}
	path := p.stateFile()
	st.WrittenAt = p.now()
	start := time.Now()
	if err := state.Write(path, *st); err != nil {
		p.stateSaveFailures.Add(1)
		p.log.Warn("audit state not saved", zap.String("path", path), zap.Error(err))
		return
	}
	p.st.pending, p.st.lastSave = nil, p.now()
	p.stateSaves.Add(1)
	p.log.Debug("audit state saved", zap.String("path", path), zap.Int("dirs", len(st.Dirs)), zap.Duration("took", time.Since(start)))
}
