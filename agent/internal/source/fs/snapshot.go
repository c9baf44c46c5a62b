package fs

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs/internal/dirio"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// queueCap bounds the shared work queue; a worker keeps what does not fit on its own stack.
const queueCap = 1024

// readChunk is how many names one getdents round asks for: large enough to amortise the
// syscall, small enough that a directory of millions of entries is never held whole.
const readChunk = 1024

// Snapshot walks the subtree at rel ("/" for the whole root) in parallel and calls emit with
// batches of at most BatchSize events of the given origin (source.OriginSnapshot, source.OriginAudit or
// source.OriginOnDemand). The subtree's top is emitted too (FlagDir for a directory).
//
// emit is never called concurrently and always from the calling goroutine; it owns the slice
// it is given. It may block, which holds the walk back. An emit error stops the walk and is
// returned; so is a cancelled ctx. A directory's row is always in the same batch as its
// children's rows or an earlier one. Audit rows carry their parent's mtime.
func (s *Source) Snapshot(ctx context.Context, rel string, origin source.Origin, emit func([]source.Event) error) (source.WalkStats, error) {
	return s.walk(ctx, rel, origin, nil, source.AuditOptions{}, emit)
}

func (s *Source) walk(ctx context.Context, rel string, origin source.Origin, cache *source.AuditCache, opts source.AuditOptions, emit func([]source.Event) error) (source.WalkStats, error) {
	var ws source.WalkStats
	if !origin.IsWalk() {
		return ws, fmt.Errorf("snapshot: %v is not a walk origin", origin)
	}
	rel, err := fspath.Clean(rel)
	if err != nil {
		return ws, fmt.Errorf("snapshot: %w", err)
	}
	if s.excluded(rel) {
		ws.Excluded++
		return ws, nil
	}
	follow := rel == fspath.Root
	abs := s.abs(rel)
	st, err := dirio.Lstat(abs, follow)
	if err != nil {
		return ws, fmt.Errorf("snapshot %s: %w", rel, err)
	}
	top := s.event(origin, rel, st, s.index())
	if origin == source.OriginAudit && rel != fspath.Root {
		if pst, err := dirio.Lstat(s.abs(parentOf(rel)), parentOf(rel) == fspath.Root); err == nil {
			top.ParentMtimeNs = pst.MtimeNs
		}
	}
	w := &walker{s: s, origin: origin, batch: s.cfg.BatchSize, cache: cache, deep: opts.Deep}
	if k := opts.RollBuckets(); k > 0 && !opts.Deep {
		w.rollK, w.rollBucket = k, opts.Cycle%k
	}
	if origin == source.OriginSnapshot && s.cfg.HotThreshold > 0 {
		w.hotAfter = s.cfg.Clock.Now().Add(-s.cfg.HotThreshold).UnixNano()
	}
	if st.Type != dirio.TypeDir {
		if st.Type == dirio.TypeSymlink {
			s.c.symlinks.Add(1)
		}
		ws.Files = 1
		return ws, w.emit(emit, []source.Event{top})
	}

	workers := max(s.cfg.Workers, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.cancel = cancel
	w.out = make(chan []source.Event, 2*workers)
	w.free = make(chan []source.Event, 2*workers+2)
	w.q.init(queueCap)
	w.q.put([]dirItem{{rel: rel, abs: abs, row: top, follow: follow, nlink: st.Nlink, dev: st.Dev}})
	stopQueue := context.AfterFunc(wctx, w.q.stop)
	defer stopQueue()

	stats := make([]source.WalkStats, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { stats[i] = w.work(wctx) })
	}
	go func() {
		wg.Wait()
		close(w.out)
	}()
	w.collect(wctx, emit)
	for _, st := range stats {
		ws.Add(st)
	}
	w.errMu.Lock()
	err = w.err
	w.errMu.Unlock()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && len(w.deferred) > 0 {
		err = w.sendDeferred(ctx, &ws, emit)
	}
	return ws, err
}

// sendDeferred re-checks the hot files the walk held back and sends them after the cold ones;
// one that is being written by now is sent flagged as such, one that vanished is skipped.
func (w *walker) sendDeferred(ctx context.Context, ws *source.WalkStats, emit func([]source.Event) error) error {
	slices.Sort(w.deferred)
	idx := w.s.index()
	var out []source.Event
	for _, rel := range w.deferred {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st, err := dirio.Lstat(w.s.abs(rel), false)
		if err != nil {
			w.s.skip(classify(err), rel, err)
			ws.Skipped++
			continue
		}
		ws.Files++
		ws.Deferred++
		ev := w.s.event(w.origin, rel, st, idx)
		if w.s.beingWritten(rel) {
			ev.Flags |= fsbatch.FlagPartialWrite
			ws.Writing++
		}
		if out = append(out, ev); len(out) == w.batch {
			if err := w.emit(emit, out); err != nil {
				return err
			}
			out = nil
		}
	}
	if len(out) > 0 {
		return w.emit(emit, out)
	}
	return nil
}

func parentOf(rel string) string {
	dir, _ := fspath.Split(rel)
	return dir
}

type dirItem struct {
	rel, abs string
	row      source.Event // the directory's own row, from its parent's listing
	follow   bool
	// nlink of the directory: on POSIX file systems 2 + its number of subdirectories, which
	// lets a silent audit skip listing leaves (< 2 = unknown, e.g. btrfs).
	nlink uint64
	dev   uint64 // its st_dev, from the same lstat
}

type walker struct {
	s      *Source
	origin source.Origin
	cache  *source.AuditCache // audits only; nil = list every directory
	// deep lists every directory of an audit anyway; else the silent ones whose path hashes
	// to rollBucket modulo rollK (0 = none) are (source.AuditOptions).
	deep              bool
	rollK, rollBucket uint64
	// hotAfter: snapshot files with an mtime after it are deferred (0 = none).
	hotAfter int64
	deferMu  sync.Mutex
	deferred []string
	batch    int
	q        workQueue
	out      chan []source.Event
	// free returns chunks collect has copied to the workers: each would otherwise grow its
	// own slice, by doubling, for every directory (the walk's allocation, measured by
	// BenchmarkSnapshotDir with -benchmem).
	free   chan []source.Event
	cancel context.CancelFunc
	errMu  sync.Mutex
	err    error
}

func (w *walker) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
	w.cancel()
}

// collect regroups the workers' chunks into batches of exactly BatchSize (the last one may be
// shorter) in arrival order. Arrival order is what keeps parents first: a worker sends the
// chunk holding a directory's row before it queues the directory's subdirectories.
func (w *walker) collect(ctx context.Context, emit func([]source.Event) error) {
	batch := make([]source.Event, 0, w.batch)
	failed := false
	for whole := range w.out {
		chunk := whole
		for !failed && len(chunk) > 0 {
			n := min(w.batch-len(batch), len(chunk))
			batch = append(batch, chunk[:n]...)
			chunk = chunk[n:]
			if len(batch) < w.batch {
				continue
			}
			if ctx.Err() != nil {
				// Cancelled or failed elsewhere: drain without emitting.
				failed = true
				break
			}
			if err := w.emit(emit, batch); err != nil {
				w.fail(err)
				failed = true
			}
			batch = make([]source.Event, 0, w.batch)
		}
		w.recycle(whole)
	}
	if !failed && len(batch) > 0 && ctx.Err() == nil {
		if err := w.emit(emit, batch); err != nil {
			w.fail(err)
		}
	}
}

// recycle hands a copied chunk back for a worker's next directory.
func (w *walker) recycle(chunk []source.Event) {
	if cap(chunk) < minChunk {
		return
	}
	clear(chunk) // no path stays alive through a pooled chunk
	select {
	case w.free <- chunk[:0]:
	default:
	}
}

// newChunk returns an empty chunk, a recycled one when there is one.
func (w *walker) newChunk() []source.Event {
	select {
	case c := <-w.free:
		return c
	default:
		return make([]source.Event, 0, minChunk)
	}
}

const minChunk = 64

func (w *walker) emit(emit func([]source.Event) error, b []source.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.s.c.panics.Add(1)
			err = fmt.Errorf("snapshot emit panicked: %v", r)
		}
	}()
	w.s.c.snapshotRows.Add(uint64(len(b)))
	return emit(b)
}

func (w *walker) send(ctx context.Context, chunk []source.Event) bool {
	select {
	case w.out <- chunk:
		return true
	case <-ctx.Done():
		return false
	}
}

// work processes directories until the walk is done: its own stack first (depth first keeps
// memory near depth × fan-out), then the shared queue. When others wait for work it gives
// away the shallow half of its stack, where the big subtrees are.
func (w *walker) work(ctx context.Context) (ws source.WalkStats) {
	defer func() {
		if r := recover(); r != nil {
			w.s.c.panics.Add(1)
			w.s.log.Error("snapshot worker panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			w.fail(fmt.Errorf("snapshot worker panicked: %v", r))
		}
	}()
	var local []dirItem
	for ctx.Err() == nil {
		var it dirItem
		if n := len(local); n > 0 {
			if n > 1 && w.q.hungry() {
				kept := local[n/2:]
				local = append(slices.Clone(w.q.offer(local[:n/2])), kept...)
				n = len(local)
			}
			it, local = local[n-1], local[:n-1]
		} else if next, ok := w.q.get(); ok {
			it = next
		} else {
			return ws
		}
		subs := w.dir(ctx, it, &ws)
		local = append(local, w.q.put(subs)...)
		w.q.done()
	}
	return ws
}

// dir sends one directory's row and its files' rows and returns its subdirectories, whose
// rows their own worker sends.
func (w *walker) dir(ctx context.Context, it dirItem, ws *source.WalkStats) []dirItem {
	s := w.s
	silent, rolled := w.silence(it)
	if silent && it.nlink == 2 {
		// A silent leaf: nothing below it to walk, not even a listing to read.
		ws.Dirs++
		ws.Silent++
		it.row.Flags |= fsbatch.FlagAuditSkipped
		if w.send(ctx, []source.Event{it.row}) {
			w.cache.Set(it.rel, it.row.MtimeNs)
		}
		return nil
	}
	d, err := dirio.Open(it.abs, it.follow)
	if err != nil {
		r := classify(err)
		s.skip(r, it.rel, err)
		ws.Skipped++
		if r == skipPermission || r == skipError {
			// The directory exists; only its content is unknown. It goes as not listed
			// (audit_skipped), in every walk, so Fusion judges none of its children missing:
			// a snapshot's or audit's missing detection, or a verify, would otherwise take
			// what it could not read for deleted.
			ws.Dirs++
			it.row.Flags |= fsbatch.FlagAuditSkipped
			w.send(ctx, []source.Event{it.row})
		}
		return nil
	}
	defer d.Close()
	s.devs.Mark(it.dev, d)
	ws.Dirs++
	if rolled {
		ws.Rolled++
	}
	if silent {
		it.row.Flags |= fsbatch.FlagAuditSkipped
		ws.Silent++
	}
	chunk := append(w.newChunk(), it.row)
	var subs []dirItem
	idx := s.index()
	var parentMtime int64
	if w.origin == source.OriginAudit {
		parentMtime = it.row.MtimeNs
	}
	if silent {
		// True silence: only subdirectories matter, and the entry types from getdents find
		// them without an lstat per file.
		var want uint64
		if it.nlink > 2 {
			want = it.nlink - 2
		}
		subs = w.subdirs(d, it, ws, idx, parentMtime, want)
	} else {
		s.listDir(d, it.abs, it.rel, ws, func(_, rel string, st dirio.Stat) bool {
			if st.Type != dirio.TypeDir && w.hotAfter != 0 && st.MtimeNs > w.hotAfter {
				// Deferred past the walk: its own string, not a share of the listing's block.
				rel = strings.Clone(rel)
			}
			ev := s.event(w.origin, rel, st, idx)
			ev.ParentMtimeNs = parentMtime
			if st.Type == dirio.TypeDir {
				subs = append(subs, dirItem{rel: rel, abs: s.abs(rel), row: ev, nlink: st.Nlink, dev: st.Dev})
				return true
			}
			if silent {
				return true // Fusion keeps this directory's files; only subdirectories matter
			}
			if w.origin == source.OriginSnapshot {
				if s.beingWritten(rel) {
					// Sent now, flagged: deferring cannot make it any less in progress, and
					// leaving it to its close-write loses it if that never comes.
					ev.Flags |= fsbatch.FlagPartialWrite
					ws.Writing++
				} else if w.hotAfter != 0 && st.MtimeNs > w.hotAfter {
					w.deferMu.Lock()
					w.deferred = append(w.deferred, rel)
					w.deferMu.Unlock()
					return true
				}
			}
			ws.Files++
			chunk = append(chunk, ev)
			if len(chunk) < w.batch {
				return true
			}
			ok := w.send(ctx, chunk)
			chunk = w.newChunk()
			return ok
		})
	}
	if len(chunk) > 0 {
		w.send(ctx, chunk)
	}
	if ctx.Err() != nil {
		return nil
	}
	if w.cache != nil {
		w.cache.Set(it.rel, it.row.MtimeNs)
	}
	return subs
}

// subdirs lists only the subdirectories of a silent directory.
func (w *walker) subdirs(d *dirio.Dir, it dirItem, ws *source.WalkStats, idx uint64, parentMtime int64, want uint64) []dirItem {
	s := w.s
	var subs []dirItem
	for {
		ents, err := d.Entries(readChunk)
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			name := e.Name()
			rel := fspath.Join(it.rel, name)
			if !validName(name) {
				s.skip(skipInvalidName, rel, nil)
				ws.Skipped++
				continue
			}
			if s.excluded(rel) {
				ws.Excluded++
				continue
			}
			st, err := d.Lstat(name)
			if err != nil {
				s.skip(classify(err), rel, err)
				ws.Skipped++
				continue
			}
			if st.Type != dirio.TypeDir {
				continue // swapped since getdents
			}
			ev := s.event(w.origin, rel, st, idx)
			ev.ParentMtimeNs = parentMtime
			subs = append(subs, dirItem{rel: rel, abs: s.abs(rel), row: ev, nlink: st.Nlink, dev: st.Dev})
			if want > 0 && uint64(len(subs)) == want {
				return subs // every subdirectory found: the rest are files
			}
		}
		if err != nil {
			if err != io.EOF {
				s.skip(classify(err), it.rel, err)
				ws.Skipped++
			}
			return subs
		}
	}
}

// listDir calls fn with the lstat of every entry of d that the wire can carry and no exclude
// hides; the rest is counted and skipped. fn returns false to stop early.
func (s *Source) listDir(d *dirio.Dir, abs, rel string, ws *source.WalkStats, fn func(name, rel string, st dirio.Stat) bool) {
	sc := dirio.GetScratch()
	defer sc.Release() // deferred: a panic further on (a hook, fn) still clears the scratch
	for {
		names, paths, err := sc.Read(d, rel, readChunk)
		if len(names) > 0 && s.testHookListed != nil {
			s.testHookListed(abs)
		}
		for i, e := range names {
			crel := paths[i]
			name := crel[len(crel)-len(e.Name):]
			e.Name = name
			if !validName(name) {
				s.skip(skipInvalidName, crel, nil)
				ws.Skipped++
				continue
			}
			if s.excluded(crel) {
				s.skip(skipExcluded, crel, nil)
				ws.Excluded++
				continue
			}
			st, err := d.LstatEntry(e)
			if err != nil {
				s.skip(classify(err), crel, err)
				ws.Skipped++
				continue
			}
			if st.Type == dirio.TypeSymlink {
				s.c.symlinks.Add(1)
			}
			if st.Type == dirio.TypeDir {
				// A directory's path outlives the listing (work queue, watches, audit cache):
				// its own string, so it does not keep the listing's block alive.
				crel = strings.Clone(crel)
				name = crel[len(crel)-len(name):]
			}
			if !fn(name, crel, st) {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				// The rest of this directory is unknown; what was listed stands.
				s.skip(classify(err), rel, err)
				ws.Skipped++
			}
			return
		}
	}
}

// workQueue is the walk's shared, bounded LIFO of directories. pending counts every directory
// not finished yet, including those on workers' own stacks, so the walk ends exactly when the
// last one is done.
type workQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []dirItem
	cap     int
	pending int
	closed  bool
	waiting atomic.Int32
}

func (q *workQueue) init(capacity int) {
	q.cond.L = &q.mu
	q.cap = capacity
}

// put registers items as pending and queues those that fit; it returns the rest, which the
// caller keeps.
func (q *workQueue) put(items []dirItem) []dirItem {
	if len(items) == 0 {
		return nil
	}
	q.mu.Lock()
	q.pending += len(items)
	q.mu.Unlock()
	return q.offer(items)
}

// offer queues already-pending items while there is room and returns the rest.
func (q *workQueue) offer(items []dirItem) []dirItem {
	q.mu.Lock()
	n := 0
	if !q.closed {
		n = min(len(items), q.cap-len(q.items))
		q.items = append(q.items, items[:n]...)
	}
	q.mu.Unlock()
	switch {
	case n == 1:
		q.cond.Signal()
	case n > 1:
		q.cond.Broadcast()
	}
	return items[n:]
}

func (q *workQueue) get() (dirItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.waiting.Add(1)
		q.cond.Wait()
		q.waiting.Add(-1)
	}
	if q.closed {
		return dirItem{}, false
	}
	n := len(q.items) - 1
	it := q.items[n]
	q.items[n] = dirItem{}
	q.items = q.items[:n]
	return it, true
}

func (q *workQueue) hungry() bool { return q.waiting.Load() > 0 }

func (q *workQueue) done() {
	q.mu.Lock()
	q.pending--
	if q.pending == 0 {
		q.closed = true
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

func (q *workQueue) stop() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}
