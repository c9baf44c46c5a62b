package fs

import (
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs/internal/dirio"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// realtime is the state both watcher back ends share: the emit side, the modify throttle and
// the set of files with a write in progress. It is owned by the watcher's single goroutine.
type realtime struct {
	s    *Source
	emit func(source.Event)
	thr  throttle
	// writing holds the files whose last write was not followed by a close yet: their
	// upserts keep FlagPartialWrite.
	writing map[string]struct{}
	// plain is set when the back end reports no close-write: nothing would ever clear a
	// partial flag, so none is set.
	plain bool
}

func newRealtime(s *Source, emit func(source.Event)) *realtime {
	r := &realtime{s: s, emit: emit, thr: throttle{window: s.cfg.ModifyThrottle, ents: map[string]*thrEnt{}},
		writing: map[string]struct{}{}}
	s.writingMu.Lock()
	s.writing = r.writing
	s.writingChanged()
	s.writingMu.Unlock()
	return r
}

// setWriting adds or removes rel from the write-in-progress set; the lock lets snapshots read
// the set while the watcher changes it.
func (r *realtime) setWriting(rel string, on bool) {
	r.s.writingMu.Lock()
	if on {
		r.writing[rel] = struct{}{}
	} else {
		delete(r.writing, rel)
	}
	r.s.writingChanged()
	r.s.writingMu.Unlock()
}

func (r *realtime) send(ev source.Event) {
	r.s.c.events.Add(1)
	r.emit(ev)
}

// upsert emits the current lstat of rel. A vanished entry is skipped: its delete follows.
func (r *realtime) upsert(rel string, partial bool) {
	st, err := dirio.Lstat(r.s.abs(rel), rel == fspath.Root)
	if err != nil {
		r.s.skip(classify(err), rel, err)
		return
	}
	r.upsertStat(rel, st, partial)
}

func (r *realtime) upsertStat(rel string, st dirio.Stat, partial bool) {
	ev := r.s.event(source.OriginRealtime, rel, st, r.s.index())
	if partial && st.Type == dirio.TypeRegular {
		ev.Flags |= fsbatch.FlagPartialWrite
	}
	r.send(ev)
}

func (r *realtime) remove(rel string, isDir bool) {
	r.forget(rel, isDir)
	ev := source.Event{Origin: source.OriginRealtime, Path: rel, Flags: fsbatch.FlagDelete, Index: r.s.index()}
	if isDir {
		ev.Flags |= fsbatch.FlagDir
	}
	r.send(ev)
}

// forget drops the write state of rel (and of everything below it for a directory).
func (r *realtime) forget(rel string, isDir bool) {
	r.thr.cancel(rel)
	r.s.writingMu.Lock()
	delete(r.writing, rel)
	if isDir {
		for p := range r.writing {
			if fspath.IsWithin(p, rel) {
				delete(r.writing, p)
			}
		}
	}
	r.s.writingChanged()
	r.s.writingMu.Unlock()
	if isDir {
		r.thr.cancelWithin(rel)
	}
}

// moveWriting carries the write state of a renamed entry (a whole subtree for a directory).
func (r *realtime) moveWriting(from, to string, isDir bool) {
	moved := map[string]struct{}{}
	r.s.writingMu.Lock()
	for p := range r.writing {
		if p == from || (isDir && fspath.IsWithin(p, from)) {
			delete(r.writing, p)
			moved[to+p[len(from):]] = struct{}{}
		}
	}
	for p := range moved {
		r.writing[p] = struct{}{}
	}
	r.s.writingChanged()
	r.s.writingMu.Unlock()
	r.thr.cancel(from)
	if isDir {
		r.thr.cancelWithin(from)
	}
}

func (r *realtime) isWriting(rel string) bool {
	_, ok := r.writing[rel]
	return ok
}

// modified handles a write: the first one in a throttle window goes out at once, the rest are
// folded into one trailing upsert (flushDue) so the last state is never lost.
func (r *realtime) modified(rel string, now time.Time) {
	if !r.plain {
		r.setWriting(rel, true)
	}
	if r.thr.modify(rel, now) {
		r.upsert(rel, !r.plain)
		return
	}
	r.s.c.modifyCoalesced.Add(1)
}

func (r *realtime) flushDue(now time.Time) {
	for _, p := range r.thr.due(now) {
		r.upsert(p, r.isWriting(p))
	}
}

// scanTree emits upserts for rel and, if it is a directory, everything below it. onDir runs
// for each directory before it is listed: the watcher adds its watch there, so nothing
// created in the directory afterwards can be missed. A directory whose watch failed is still
// listed, as its content must be reported anyway. Used for directories that appear while
// watching: created, moved in, renamed.
func (r *realtime) scanTree(rel string, onDir func(rel string)) {
	st, err := dirio.Lstat(r.s.abs(rel), false)
	if err != nil {
		r.s.skip(classify(err), rel, err)
		return
	}
	r.upsertStat(rel, st, r.isWriting(rel))
	if st.Type != dirio.TypeDir {
		return
	}
	var ws source.WalkStats
	stack := []string{rel}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		onDir(dir)
		abs := r.s.abs(dir)
		d, err := dirio.Open(abs, false)
		if err != nil {
			r.s.skip(classify(err), dir, err)
			continue
		}
		r.s.listDir(d, abs, dir, &ws, func(_, crel string, st dirio.Stat) bool {
			r.upsertStat(crel, st, r.isWriting(crel))
			if st.Type == dirio.TypeDir {
				stack = append(stack, crel)
			}
			return true
		})
		d.Close()
	}
}

// recoverWatch turns a panic of the watcher's goroutine into its error.
func (s *Source) recoverWatch(err *error) {
	if r := recover(); r != nil {
		s.c.panics.Add(1)
		s.log.Error("watcher panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		*err = fmt.Errorf("watcher panicked: %v", r)
	}
}

// throttle coalesces modifies per path. An entry lives for one window after the upsert that
// opened it; modifies inside the window only mark it pending. Every entry's due time is its
// creation (or last flush) plus the same window, so a FIFO is already in due order.
type throttle struct {
	window time.Duration
	ents   map[string]*thrEnt
	fifo   []*thrEnt
}

type thrEnt struct {
	path    string
	due     time.Time
	pending bool
	dead    bool
}

// modify reports whether the caller should emit now.
func (t *throttle) modify(path string, now time.Time) bool {
	if e, ok := t.ents[path]; ok {
		e.pending = true
		return false
	}
	e := &thrEnt{path: path, due: now.Add(t.window)}
	t.ents[path] = e
	t.fifo = append(t.fifo, e)
	return true
}

// due returns the paths whose trailing upsert is due and re-arms their window.
func (t *throttle) due(now time.Time) []string {
	var out []string
	for len(t.fifo) > 0 && !t.fifo[0].due.After(now) {
		e := t.fifo[0]
		t.fifo[0] = nil
		t.fifo = t.fifo[1:]
		switch {
		case e.dead:
		case e.pending:
			out = append(out, e.path)
			e.pending = false
			e.due = now.Add(t.window)
			t.fifo = append(t.fifo, e)
		default:
			delete(t.ents, e.path)
		}
	}
	return out
}

// next returns when due has work, if ever.
func (t *throttle) next() (time.Time, bool) {
	for len(t.fifo) > 0 && t.fifo[0].dead {
		t.fifo[0] = nil
		t.fifo = t.fifo[1:]
	}
	if len(t.fifo) == 0 {
		return time.Time{}, false
	}
	return t.fifo[0].due, true
}

func (t *throttle) cancel(path string) {
	if e, ok := t.ents[path]; ok {
		e.dead = true
		delete(t.ents, path)
	}
}

func (t *throttle) cancelWithin(dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p, e := range t.ents {
		if strings.HasPrefix(p, prefix) {
			e.dead = true
			delete(t.ents, p)
		}
	}
}
