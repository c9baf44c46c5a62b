//go:build linux && !fustor_fsnotify

package fs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs/internal/dirio"
	"github.com/fustor/fustor/sdk/fspath"
)

const (
	// IN_ONLYDIR|IN_DONT_FOLLOW: a directory swapped for a symlink is refused, never followed.
	watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_DELETE |
		unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_EXCL_UNLINK |
		unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW
	// The root may itself be a symlink (to a mount), so it is followed; only its own move tells
	// that the whole source went away.
	rootMask = (watchMask | unix.IN_MOVE_SELF) &^ unix.IN_DONT_FOLLOW
	// readBufSize holds several hundred events per read(2).
	readBufSize = 128 << 10
)

// Watch watches the whole tree with inotify until ctx is done (it then returns nil) or
// watching fails for good: inotify cannot start, the root cannot be watched, or the root is
// removed, moved or unmounted. emit is called from Watch's goroutine and may block; while it
// does the kernel queues events, and a queue overflow is reported through OnOverflow.
//
// Nothing is emitted for what exists when Watch starts (that is the snapshot's job); a
// directory that appears later is watched first and scanned second, so files written into it
// before its watch existed are emitted too.
func (s *Source) Watch(ctx context.Context, emit func(source.Event)) (err error) {
	defer s.recoverWatch(&err)
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify init: %w", err)
	}
	// A non-blocking descriptor in an os.File goes through the runtime poller, so a read
	// deadline both wakes the loop for its timers and interrupts it on cancel.
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	w := &inotify{realtime: newRealtime(s, emit), fd: fd, wds: map[int]string{}, paths: map[string]int{}, rootWd: -1,
		addWatch: unix.InotifyAddWatch, budget: s.cfg.MaxWatches}
	w.lru.init()
	s.c.watchBudget.Store(int64(w.budget))
	defer func() { s.c.watches.Add(-int64(len(w.wds))) }()
	if err := w.watchInitial(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	s.log.Info("watching", zap.String("root", s.root), zap.Int("watches", len(w.wds)))
	if s.testHookReady != nil {
		s.testHookReady()
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	return w.loop(ctx, f)
}

type inotify struct {
	*realtime
	fd       int
	wds      map[int]string // watch descriptor → relative directory
	paths    map[string]int
	rootWd   int
	moves    []pendingMove // IN_MOVED_FROM waiting for its IN_MOVED_TO, oldest first
	rootGone error
	// budget is the most watches held at once, the root's included (0 = no limit of ours);
	// ENOSPC lowers it. lru orders the other watched directories by activity (budget_linux.go).
	budget int
	lru    watchLRU
	// rewatch is set by an overflow: directories created in the lost events have no watch.
	rewatch bool
	// addWatch is unix.InotifyAddWatch; tests replace it to hit the watch limit.
	addWatch func(fd int, path string, mask uint32) (int, error)
}

type pendingMove struct {
	cookie uint32
	rel    string
	isDir  bool
	at     time.Time
}

func (w *inotify) loop(ctx context.Context, f *os.File) error {
	buf := make([]byte, readBufSize)
	for {
		// The deadline is set before ctx is checked: if ctx is cancelled after the check,
		// the cancel hook's deadline comes later and wins.
		if err := f.SetReadDeadline(w.nextDeadline()); err != nil {
			return fmt.Errorf("set inotify deadline: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		n, err := f.Read(buf)
		now := time.Now()
		switch {
		case err == nil:
			w.handleBuf(buf[:n], now)
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read inotify: %w", err)
		}
		if w.rootGone != nil {
			return w.rootGone
		}
		if w.rewatch {
			// Content is the audit's job (OnOverflow); keeping realtime alive is ours.
			w.rewatch = false
			before := len(w.wds)
			w.rebalance(w.watchTree(ctx), false)
			w.s.log.Info("watches refreshed after overflow", zap.Int("watches", len(w.wds)), zap.Int("added", len(w.wds)-before))
		}
		w.expireMoves(now, false)
		w.flushDue(now)
	}
}

func (w *inotify) nextDeadline() time.Time {
	d, ok := w.thr.next()
	if len(w.moves) > 0 {
		if md := w.moves[0].at.Add(moveWindow); !ok || md.Before(d) {
			return md
		}
	}
	return d // zero when nothing is due: no deadline
}

func (w *inotify) handleBuf(buf []byte, now time.Time) {
	const hdr = unix.SizeofInotifyEvent
	for off := 0; off+hdr <= len(buf); {
		wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		cookie := binary.NativeEndian.Uint32(buf[off+8:])
		end := off + hdr + int(binary.NativeEndian.Uint32(buf[off+12:]))
		if end > len(buf) {
			w.s.log.Error("truncated inotify event", zap.Int("offset", off), zap.Int("len", len(buf)))
			return
		}
		name := buf[off+hdr : end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i] // the kernel pads names with NULs
		}
		w.handle(wd, mask, cookie, string(name), now)
		off = end
	}
}

// handle maps one inotify event.
func (w *inotify) handle(wd int, mask, cookie uint32, name string, now time.Time) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		w.expireMoves(now, true)
		w.rewatch = true
		w.s.overflow()
		return
	}
	isTo := mask&unix.IN_MOVED_TO != 0
	if !isTo || !w.hasMove(cookie) {
		// The kernel queues a rename's two halves back to back, so anything else in between
		// means the pending ones left the tree; their deletes must precede what follows.
		w.expireMoves(now, true)
	}
	if mask&unix.IN_IGNORED != 0 {
		if wd == w.rootWd {
			w.rootGone = fmt.Errorf("watch on root %s was removed", w.s.root)
		}
		w.unbind(wd, false)
		return
	}
	dir, ok := w.wds[wd]
	if !ok {
		// Events queued before the watch was removed.
		w.s.c.unknownWd.Add(1)
		return
	}
	w.lru.touch(wd, now.UnixNano())
	if name == "" {
		// Events about a watched directory itself also reach its parent, with a name.
		if wd == w.rootWd && mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0 {
			w.rootGone = fmt.Errorf("root %s was removed, moved or unmounted", w.s.root)
		}
		return
	}
	rel := fspath.Join(dir, name)
	if r, skip := w.hidden(name, rel); skip {
		w.s.skip(r, rel, nil)
		if isTo {
			// Renamed to a hidden name: for the view the entry left the tree.
			if m, ok := w.takeMove(cookie); ok {
				w.movedOut(m)
			}
		}
		return
	}
	isDir := mask&unix.IN_ISDIR != 0
	switch {
	case mask&unix.IN_MOVED_FROM != 0:
		w.moves = append(w.moves, pendingMove{cookie: cookie, rel: rel, isDir: isDir, at: now})
	case isTo:
		if m, ok := w.takeMove(cookie); ok {
			w.renamed(m, rel, isDir)
		} else {
			w.s.c.movesUnpaired.Add(1)
			w.created(rel, isDir, true)
		}
	case mask&unix.IN_CREATE != 0:
		w.created(rel, isDir, false)
	case mask&unix.IN_DELETE != 0:
		if isDir {
			if dwd, ok := w.paths[rel]; ok {
				w.unbind(dwd, false)
			}
		}
		w.remove(rel, isDir)
	case mask&unix.IN_CLOSE_WRITE != 0:
		w.thr.cancel(rel)
		w.setWriting(rel, false)
		w.upsert(rel, false)
	case mask&unix.IN_MODIFY != 0:
		w.modified(rel, now)
	case mask&unix.IN_ATTRIB != 0:
		// The upsert carries the latest state, so a pending trailing modify is redundant.
		w.thr.cancel(rel)
		w.upsert(rel, w.isWriting(rel))
	}
}

func (w *inotify) hidden(name, rel string) (skipReason, bool) {
	if !validName(name) {
		return skipInvalidName, true
	}
	if w.s.excluded(rel) {
		return skipExcluded, true
	}
	return 0, false
}

// created handles a new entry. A regular file just created is being written (its close
// follows); one moved in, or a hard link (nlink > 1), is complete.
func (w *inotify) created(rel string, isDir, movedIn bool) {
	if isDir {
		w.scanTree(rel, w.watchNew)
		return
	}
	st, err := dirio.Lstat(w.s.abs(rel), false)
	if err != nil {
		w.s.skip(classify(err), rel, err)
		return
	}
	if st.Type == dirio.TypeDir {
		// Replaced by a directory since the event.
		w.scanTree(rel, w.watchNew)
		return
	}
	partial := !movedIn && st.Type == dirio.TypeRegular && st.Nlink <= 1
	if partial {
		w.setWriting(rel, true)
	}
	w.upsertStat(rel, st, partial)
}

// renamed handles a rename inside the tree: delete the old path, upsert the new one. A
// directory keeps its watches (they follow the inode), so only their paths change; its whole
// subtree is then upserted under the new path.
func (w *inotify) renamed(m pendingMove, to string, isDir bool) {
	w.s.c.movesPaired.Add(1)
	partial := w.isWriting(m.rel)
	w.moveWriting(m.rel, to, m.isDir)
	w.remove(m.rel, m.isDir)
	if isDir {
		w.rekey(m.rel, to)
		w.scanTree(to, w.watchNew)
		return
	}
	w.upsert(to, partial)
}

// movedOut handles an IN_MOVED_FROM that found no IN_MOVED_TO: the entry left the tree.
func (w *inotify) movedOut(m pendingMove) {
	w.s.c.movesUnpaired.Add(1)
	if m.isDir {
		w.dropTree(m.rel)
	}
	w.remove(m.rel, m.isDir)
}

func (w *inotify) hasMove(cookie uint32) bool {
	for _, m := range w.moves {
		if m.cookie == cookie {
			return true
		}
	}
	return false
}

func (w *inotify) takeMove(cookie uint32) (pendingMove, bool) {
	for i, m := range w.moves {
		if m.cookie == cookie {
			w.moves = append(w.moves[:i], w.moves[i+1:]...)
			return m, true
		}
	}
	return pendingMove{}, false
}

// expireMoves resolves pending moves as moved out: all of them, or those older than the
// window.
func (w *inotify) expireMoves(now time.Time, all bool) {
	for len(w.moves) > 0 && (all || now.Sub(w.moves[0].at) >= moveWindow) {
		m := w.moves[0]
		w.moves = w.moves[1:]
		w.movedOut(m)
	}
}

// watchInitial watches the root and every directory below it, each before it is listed, so a
// directory created meanwhile is either listed or reported by its parent's watch.
func (w *inotify) watchInitial(ctx context.Context) error {
	wd, err := w.addWatch(w.fd, w.s.root, rootMask)
	if err != nil {
		return fmt.Errorf("watch root %s: %w", w.s.root, err)
	}
	w.rootWd = wd
	w.bind(wd, fspath.Root)
	w.rebalance(w.watchTree(ctx), true)
	return nil
}

// watchTree adds the watches missing below the root while the budget lasts, each before its
// directory is listed, and returns every directory it met with its mtime (the pre-scan that
// rebalance ranks and estimates the drift from). It emits nothing.
func (w *inotify) watchTree(ctx context.Context) []dirSeen {
	var seen []dirSeen
	stack := []string{fspath.Root}
	for len(stack) > 0 && ctx.Err() == nil {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		wd, ok := w.paths[dir]
		if !ok {
			wd = -1
			if !w.atBudget() {
				wd = w.addDirWatch(dir, false)
			}
		}
		abs := w.s.abs(dir)
		d, err := dirio.Open(abs, dir == fspath.Root)
		if err != nil {
			w.s.skip(classify(err), dir, err)
			continue
		}
		// A directory's nlink is 2 + its subdirectories on ext4, xfs and NFS: a leaf (nlink 2)
		// is not listed at all, and a listing stops once every subdirectory is found. The
		// leaves hold nearly all the files, so the pre-scan reads few entries. Where nlink
		// means something else (btrfs reports 1) every directory is read whole.
		subdirs := -1
		if st, err := d.Lstat("."); err == nil {
			seen = append(seen, dirSeen{rel: dir, mtimeNs: st.MtimeNs, wd: wd})
			if st.Nlink >= 2 {
				subdirs = int(st.Nlink) - 2
			}
		}
		for found := 0; subdirs != 0; {
			// DirEntry types come from getdents (d_type): no lstat per file here.
			ents, err := d.Entries(readChunk)
			for _, e := range ents {
				if !e.IsDir() {
					continue
				}
				if found++; found == subdirs {
					subdirs = 0 // the last one: this chunk's remaining entries are files
				}
				rel := fspath.Join(dir, e.Name())
				if r, skip := w.hidden(e.Name(), rel); skip {
					w.s.skip(r, rel, nil)
					continue
				}
				stack = append(stack, rel)
			}
			if err != nil {
				break
			}
		}
		d.Close()
	}
	return seen
}

func (w *inotify) watchNew(rel string) {
	if _, ok := w.paths[rel]; ok {
		return
	}
	if w.addDirWatch(rel, true) < 0 && w.atBudget() {
		w.s.c.leftToAudit.Add(1)
	}
}

// watchFailed counts and logs a watch refused for another reason than the kernel's limit.
func (w *inotify) watchFailed(rel string, err error) {
	r := classify(err)
	if r == skipError {
		w.s.c.watchErrors.Add(1)
	}
	w.s.skip(r, rel, err)
}

// bind records that wd watches rel. inotify returns the existing descriptor for an inode it
// already watches, which is how a renamed directory's descriptor gets its new path.
func (w *inotify) bind(wd int, rel string) {
	if old, ok := w.wds[wd]; ok {
		if old == rel {
			return
		}
		if w.paths[old] == wd {
			delete(w.paths, old)
		}
	} else {
		w.s.c.watches.Add(1)
	}
	if owd, ok := w.paths[rel]; ok && owd != wd {
		// rel was another inode, replaced without us seeing it go.
		w.unbind(owd, true)
	}
	w.wds[wd] = rel
	w.paths[rel] = wd
}

func (w *inotify) unbind(wd int, rmWatch bool) {
	rel, ok := w.wds[wd]
	if !ok {
		return
	}
	delete(w.wds, wd)
	if w.paths[rel] == wd {
		delete(w.paths, rel)
	}
	w.lru.remove(wd)
	w.s.c.watches.Add(-1)
	if rmWatch {
		// EINVAL when the kernel already dropped it; either way it is gone.
		_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
	}
}

// dropTree removes the watches of rel and everything below it.
func (w *inotify) dropTree(rel string) {
	var wds []int
	for p, wd := range w.paths {
		if fspath.IsWithin(p, rel) {
			wds = append(wds, wd)
		}
	}
	for _, wd := range wds {
		w.unbind(wd, true)
	}
}

// rekey moves the watch paths of the subtree at from to to.
func (w *inotify) rekey(from, to string) {
	moved := map[int]string{}
	for p, wd := range w.paths {
		if fspath.IsWithin(p, from) {
			moved[wd] = to + p[len(from):]
			delete(w.paths, p)
		}
	}
	for wd, p := range moved {
		if owd, ok := w.paths[p]; ok && owd != wd {
			w.unbind(owd, true)
		}
		w.wds[wd] = p
		w.paths[p] = wd
	}
}
