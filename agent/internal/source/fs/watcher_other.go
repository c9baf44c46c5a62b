//go:build !linux || fustor_fsnotify

package fs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs/internal/dirio"
	"github.com/fustor/fustor/sdk/fspath"
)

// Watch watches the whole tree with fsnotify until ctx is done (it then returns nil) or
// watching fails for good. This is the portable fallback: fsnotify exposes neither
// close-write nor rename cookies, so writes are plain upserts (never FlagPartialWrite) and a
// rename is a delete of the old path plus a create of the new one.
func (s *Source) Watch(ctx context.Context, emit func(source.Event)) (err error) {
	defer s.recoverWatch(&err)
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("fsnotify init: %w", err)
	}
	defer fw.Close()
	w := &fsWatcher{realtime: newRealtime(s, emit), fw: fw, dirs: map[string]struct{}{}, gone: map[string]struct{}{}}
	w.plain = true
	defer func() { s.c.watches.Add(-int64(len(w.dirs))) }()
	if err := fw.Add(s.root); err != nil {
		return fmt.Errorf("watch root %s: %w", s.root, err)
	}
	w.dirs[fspath.Root] = struct{}{}
	s.c.watches.Add(1)
	w.watchInitial(ctx)
	if ctx.Err() != nil {
		return nil
	}
	s.log.Info("watching", zap.String("root", s.root), zap.Int("watches", len(w.dirs)), zap.String("backend", "fsnotify"))
	if s.testHookReady != nil {
		s.testHookReady()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if d, ok := w.thr.next(); ok {
			timer.Reset(time.Until(d))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("fsnotify events closed")
			}
			w.handle(ev, time.Now())
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("fsnotify errors closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				s.overflow()
			} else {
				s.c.watchErrors.Add(1)
				s.log.Warn("fsnotify error", zap.Error(err))
			}
		case <-timer.C:
		}
		w.flushDue(time.Now())
	}
}

type fsWatcher struct {
	*realtime
	fw   *fsnotify.Watcher
	dirs map[string]struct{} // watched directories
	// gone holds directories whose delete went out: fsnotify reports a watched directory's
	// removal or move twice, from its parent's watch and from its own.
	gone map[string]struct{}
}

// maxGone bounds gone; losing an entry only costs a duplicate delete.
const maxGone = 4096

func (w *fsWatcher) handle(ev fsnotify.Event, now time.Time) {
	rel, ok := w.rel(ev.Name)
	if !ok || rel == fspath.Root {
		return
	}
	_, name := fspath.Split(rel)
	if !validName(name) {
		w.s.skip(skipInvalidName, rel, nil)
		return
	}
	if w.s.excluded(rel) {
		w.s.skip(skipExcluded, rel, nil)
		return
	}
	switch {
	case ev.Has(fsnotify.Create):
		delete(w.gone, rel)
		st, err := dirio.Lstat(w.s.abs(rel), false)
		if err != nil {
			w.s.skip(classify(err), rel, err)
			return
		}
		if st.Type == dirio.TypeDir {
			w.scanTree(rel, w.watchDir)
			return
		}
		w.upsertStat(rel, st, false)
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		_, isDir := w.dirs[rel]
		if _, dup := w.gone[rel]; dup && !isDir {
			delete(w.gone, rel)
			return
		}
		if isDir {
			w.dropTree(rel)
			if len(w.gone) >= maxGone {
				clear(w.gone)
			}
			w.gone[rel] = struct{}{}
		}
		w.remove(rel, isDir)
	case ev.Has(fsnotify.Write):
		w.modified(rel, now)
	case ev.Has(fsnotify.Chmod):
		w.thr.cancel(rel)
		w.upsert(rel, false)
	}
}

// rel maps an fsnotify name to a normalised path; names outside the root are refused.
func (w *fsWatcher) rel(name string) (string, bool) {
	r, err := filepath.Rel(w.s.root, name)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	if r == "." {
		return fspath.Root, true
	}
	return "/" + filepath.ToSlash(r), true
}

func (w *fsWatcher) watchInitial(ctx context.Context) {
	stack := []string{fspath.Root}
	for len(stack) > 0 && ctx.Err() == nil {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if dir != fspath.Root {
			w.watchDir(dir)
		}
		abs := w.s.abs(dir)
		d, err := dirio.Open(abs, dir == fspath.Root)
		if err != nil {
			w.s.skip(classify(err), dir, err)
			continue
		}
		for {
			ents, err := d.Entries(readChunk)
			for _, e := range ents {
				rel := fspath.Join(dir, e.Name())
				if !e.IsDir() || !validName(e.Name()) || w.s.excluded(rel) {
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
}

func (w *fsWatcher) watchDir(rel string) {
	if _, ok := w.dirs[rel]; ok {
		return
	}
	if err := w.fw.Add(w.s.abs(rel)); err != nil {
		r := classify(err)
		if r == skipError {
			w.s.c.watchErrors.Add(1)
		}
		w.s.skip(r, rel, err)
		return
	}
	w.dirs[rel] = struct{}{}
	w.s.c.watches.Add(1)
}

func (w *fsWatcher) dropTree(rel string) {
	for p := range w.dirs {
		if fspath.IsWithin(p, rel) {
			_ = w.fw.Remove(w.s.abs(p))
			delete(w.dirs, p)
			w.s.c.watches.Add(-1)
		}
	}
}
