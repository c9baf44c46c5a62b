// Package journal is a replayable source: a file of fs events, one JSON object per line, with
// strictly increasing indexes — the shape of a storage system's change log. Unlike inotify it
// can continue from a committed index, so an agent restarting on it resumes without a
// snapshot (DESIGN.md §4.1 step 4).
//
// Line format: {"index":7,"path":"/a/b.dat","size":10,"mtime_ns":1700000000000000000}
// plus "dir":true for directories and "delete":true for deletes.
//
// It implements the agent's source contract (agent/internal/source) as a source.Resumer: its
// realtime is its own log, followed per session from the committed index, so it needs no bus
// and no watcher; walks and audits replay the log into the current tree.
package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// Entry is one journal line.
type Entry struct {
	Index   uint64 `json:"index"`
	Path    string `json:"path"`
	Dir     bool   `json:"dir,omitempty"`
	Delete  bool   `json:"delete,omitempty"`
	Size    uint64 `json:"size,omitempty"`
	MtimeNs int64  `json:"mtime_ns,omitempty"`
}

// The source contract this driver implements: realtime from its own log (Resumer, so no bus
// and no snapshot on a resumed session), walks of its replayed tree, audits, the sentinel.
var (
	_ source.Snapshotter = (*Source)(nil)
	_ source.Resumer     = (*Source)(nil)
	_ source.Auditor     = (*Source)(nil)
	_ source.Sentineler  = (*Source)(nil)
	_ source.Counters    = (*Source)(nil)
)

// pollEvery is how often Follow looks for appended lines at the end of the file.
const pollEvery = 50 * time.Millisecond

// Source reads one journal file.
type Source struct {
	log  *zap.Logger
	path string

	lines, rejected, replays atomic.Uint64
}

// New returns a source for the journal at path, which must exist.
func New(log *zap.Logger, path string) (*Source, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return &Source{log: log, path: path}, nil
}

// Counters returns the source's counters.
func (s *Source) Counters() map[string]uint64 {
	return map[string]uint64{"journal_lines": s.lines.Load(), "skipped_invalid": s.rejected.Load(), "journal_replays": s.replays.Load()}
}

// reader yields valid entries in order; a bad line or an index that does not increase is
// skipped and counted, never fatal.
type reader struct {
	s    *Source
	r    *bufio.Reader
	last uint64
	part []byte
}

func (rd *reader) next() (Entry, error) {
	for {
		line, err := rd.r.ReadBytes('\n')
		if err != nil {
			rd.part = append(rd.part, line...) // keep a line still being written
			return Entry{}, err
		}
		if len(rd.part) > 0 {
			line = append(rd.part, line...)
			rd.part = nil
		}
		var e Entry
		if jerr := json.Unmarshal(line, &e); jerr != nil || e.Index <= rd.last {
			rd.s.rejected.Add(1)
			continue
		}
		p, cerr := fspath.Clean(e.Path)
		if cerr != nil {
			rd.s.rejected.Add(1)
			continue
		}
		e.Path = p
		rd.last = e.Index
		rd.s.lines.Add(1)
		return e, nil
	}
}

func event(origin source.Origin, e Entry) source.Event {
	ev := source.Event{Origin: origin, Path: e.Path, Size: e.Size, MtimeNs: e.MtimeNs, Index: e.Index}
	if e.Dir {
		ev.Flags |= fsbatch.FlagDir
	}
	if e.Delete {
		ev.Flags |= fsbatch.FlagDelete
	}
	return ev
}

// Follow emits every entry with an index above from as realtime events, in batches of at most
// batch, then keeps following appended lines until ctx is done.
func (s *Source) Follow(ctx context.Context, from uint64, batch int, emit func([]source.Event) error) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	s.replays.Add(1)
	rd := &reader{s: s, r: bufio.NewReader(f)}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var out []source.Event
	for {
		e, err := rd.next()
		if err == nil {
			if e.Index > from {
				out = append(out, event(source.OriginRealtime, e))
			}
			if len(out) < batch {
				continue
			}
		} else if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read journal: %w", err)
		}
		if len(out) > 0 {
			if err := emit(out); err != nil {
				return err
			}
			out = nil
		}
		if err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// LastIndex returns the index of the last valid entry (0 for an empty journal).
func (s *Source) LastIndex() (uint64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return 0, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	rd := &reader{s: s, r: bufio.NewReader(f)}
	for {
		if _, err := rd.next(); err != nil {
			return rd.last, nil
		}
	}
}

// state replays the journal into the current tree.
func (s *Source) state() (map[string]Entry, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	rd := &reader{s: s, r: bufio.NewReader(f)}
	st := map[string]Entry{}
	for {
		e, err := rd.next()
		if err != nil {
			return st, nil
		}
		if e.Delete {
			for p := range st {
				if fspath.IsWithin(p, e.Path) {
					delete(st, p)
				}
			}
			continue
		}
		st[e.Path] = e
	}
}

// Snapshot emits the journal's current tree below rel, parents before children.
func (s *Source) Snapshot(ctx context.Context, rel string, origin source.Origin, emit func([]source.Event) error) (source.WalkStats, error) {
	var ws source.WalkStats
	st, err := s.state()
	if err != nil {
		return ws, err
	}
	paths := make([]string, 0, len(st))
	for p := range st {
		if fspath.IsWithin(p, rel) {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []source.Event
	for _, p := range paths {
		if ctx.Err() != nil {
			return ws, ctx.Err()
		}
		e := st[p]
		if e.Dir {
			ws.Dirs++
		} else {
			ws.Files++
		}
		out = append(out, event(origin, e))
		if len(out) == 1000 {
			if err := emit(out); err != nil {
				return ws, err
			}
			out = nil
		}
	}
	if len(out) > 0 {
		return ws, emit(out)
	}
	return ws, nil
}

// Audit is a full snapshot with audit rows: a journal has no directory mtimes to skip by, so
// every audit is deep whatever the options say.
func (s *Source) Audit(ctx context.Context, _ *source.AuditCache, _ source.AuditOptions, emit func([]source.Event) error) (source.WalkStats, error) {
	return s.Snapshot(ctx, fspath.Root, source.OriginAudit, emit)
}

// Sentinel answers from the journal's current tree.
func (s *Source) Sentinel(paths []string) []source.SentinelItem {
	st, err := s.state()
	if err != nil {
		return nil
	}
	out := make([]source.SentinelItem, 0, len(paths))
	for _, p := range paths {
		e, ok := st[p]
		out = append(out, source.SentinelItem{Path: p, Exists: ok, Size: e.Size, MtimeNs: e.MtimeNs})
	}
	return out
}
