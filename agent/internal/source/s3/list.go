package s3

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// obj is what the source keeps of an object: enough to tell a change (DESIGN.md §4: ETag for
// content, size and LastModified for what Fusion shows).
type obj struct {
	etag  string
	size  uint64
	mtime int64
}

// listing is one complete listing of the source: its objects by path, when it started and
// ended, and whether the watcher made it (else a walk did).
type listing struct {
	objs        map[string]obj
	start, done time.Time
	watched     bool
}

// item is one entry of a listing page: an object, or a directory (common prefix, folder marker).
type item struct {
	path string
	dir  bool
	o    obj
}

// keyOf is the key prefix of the subtree at rel (a clean path).
func (s *Source) keyOf(rel string) string {
	if rel == fspath.Root {
		return s.prefix
	}
	return s.prefix + rel[1:] + "/"
}

// toItem maps a listed key to an item; ok is false for the source's own prefix (the root) and
// for keys that cannot be paths (counted).
func (s *Source) toItem(key string, size int64, etag string, mtime time.Time) (item, bool) {
	rel, found := strings.CutPrefix(key, s.prefix)
	if !found {
		return item{}, false
	}
	dir := strings.HasSuffix(rel, "/")
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" {
		return item{}, false
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if fspath.ValidName(seg) != nil {
			s.c.invalidName.Add(1)
			return item{}, false
		}
	}
	if s.excluded(rel) {
		s.c.excluded.Add(1)
		return item{}, false
	}
	it := item{path: "/" + rel, dir: dir}
	if !dir {
		it.o = obj{etag: etag, size: uint64(max(size, 0)), mtime: mtime.UnixNano()}
	}
	return it, true
}

// list lists the subtree at rel and calls fn with pages of items, never concurrently. The top
// level is listed with the "/" delimiter; each of its prefixes is then listed flat, one
// request per page of keys, by at most cfg.Workers at once.
func (s *Source) list(ctx context.Context, rel string, fn func([]item) error) error {
	var mu sync.Mutex
	call := func(items []item) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(items)
	}
	noOwner := false
	top := s.keyOf(rel)
	var subs []string
	page := make([]item, 0, s.cfg.PageSize)
	for o := range s.cl.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: top, MaxKeys: s.cfg.PageSize, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return fmt.Errorf("list s3 prefix %q: %w", top, o.Err)
		}
		if o.LastModified.IsZero() && strings.HasSuffix(o.Key, "/") {
			// A common prefix. Some servers repeat one on the next page; list it once.
			if slices.Contains(subs, o.Key) {
				continue
			}
			if rel, ok := strings.CutPrefix(o.Key, s.prefix); ok && s.excluded(strings.TrimSuffix(rel, "/")) {
				s.c.excluded.Add(1)
				continue // an excluded directory is not listed at all
			}
			subs = append(subs, o.Key)
		}
		if it, ok := s.toItem(o.Key, o.Size, o.ETag, o.LastModified); ok {
			page = append(page, it)
		}
		if len(page) == cap(page) {
			if err := call(page); err != nil {
				return err
			}
			page = make([]item, 0, s.cfg.PageSize)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(page) > 0 {
		if err := call(page); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Workers)
	for _, sub := range subs {
		g.Go(func() error { return s.listFlat(gctx, sub, call) })
	}
	return g.Wait()
}

// listFlat lists every key under prefix without a delimiter, in pages.
func (s *Source) listFlat(ctx context.Context, prefix string, call func([]item) error) error {
	noOwner := false
	page := make([]item, 0, s.cfg.PageSize)
	for o := range s.cl.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, MaxKeys: s.cfg.PageSize, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return fmt.Errorf("list s3 prefix %q: %w", prefix, o.Err)
		}
		if it, ok := s.toItem(o.Key, o.Size, o.ETag, o.LastModified); ok {
			page = append(page, it)
		}
		if len(page) == cap(page) {
			if err := call(page); err != nil {
				return err
			}
			page = make([]item, 0, s.cfg.PageSize)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(page) > 0 {
		return call(page)
	}
	return nil
}

// rows turns listed items into the events of one walk: every directory once, before what it
// holds (the walk's own directory first).
type rows struct {
	origin source.Origin
	rel    string
	dirs   map[string]bool
	st     *source.WalkStats
	idx    uint64
	evs    []source.Event
}

func (r *rows) dir(p string) {
	if r.dirs[p] {
		return
	}
	if p != r.rel {
		r.dir(parent(p))
	}
	r.dirs[p] = true
	r.st.Dirs++
	r.evs = append(r.evs, source.Event{Origin: r.origin, Path: p, Flags: fsbatch.FlagDir, Index: r.idx})
}

// add appends the rows of it (and of its directories not sent yet), if it lies below rel.
func (r *rows) add(it item) bool {
	if it.path == r.rel || !fspath.IsWithin(it.path, r.rel) {
		return false
	}
	if it.dir {
		r.dir(it.path)
		return false
	}
	r.dir(parent(it.path))
	r.evs = append(r.evs, source.Event{Origin: r.origin, Path: it.path, Size: it.o.size, MtimeNs: it.o.mtime, Index: r.idx})
	r.st.Files++
	return true
}

// take returns the events gathered since the last take.
func (r *rows) take() []source.Event {
	evs := r.evs
	r.evs = nil
	return evs
}

// walk lists the subtree at rel and emits it as events of origin, every directory before what
// it holds. A complete listing of the whole source is offered to the watcher (adopt).
func (s *Source) walk(ctx context.Context, rel string, origin source.Origin, emit func([]source.Event) error) (source.WalkStats, error) {
	var st source.WalkStats
	rel, err := fspath.Clean(rel)
	if err != nil {
		return st, fmt.Errorf("walk s3 source: %w", err)
	}
	var whole *listing
	if rel == fspath.Root {
		whole = &listing{objs: map[string]obj{}, start: time.Now()}
	}
	r := &rows{origin: origin, rel: rel, dirs: map[string]bool{}, st: &st}
	err = s.list(ctx, rel, func(items []item) error {
		r.idx = s.clock.Index()
		for _, it := range items {
			if r.add(it) {
				s.c.objects.Add(1)
				if whole != nil {
					whole.objs[it.path] = it.o
				}
			}
		}
		if evs := r.take(); len(evs) > 0 {
			return emit(evs)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if len(r.dirs) == 0 {
		// Nothing under rel: the root is still a directory; another path may be one object.
		if rel == fspath.Root {
			r.idx = s.clock.Index()
			r.dir(rel)
			err = emit(r.take())
		} else {
			err = s.stat(ctx, rel, origin, emit, &st)
		}
	}
	if err == nil && whole != nil {
		whole.done = time.Now()
		s.adopt(whole)
	}
	return st, err
}

// auditFromListing emits, as an audit, the watcher's last listing if it is its own and no
// older than one list_interval, and reports whether it did. The audit a listing's deletes ask
// for then costs no second listing.
//
// Why it is safe: every realtime event sent before the audit's start marker came from that
// listing or an earlier one (the watcher records a listing before sending what it found), so
// a path the listing lacks and no later event confirmed is gone; what the watcher sends after
// the marker is newer than the audit in Fusion's eyes, and protected.
func (s *Source) auditFromListing(emit func([]source.Event) error) (source.WalkStats, bool, error) {
	var st source.WalkStats
	s.mu.Lock()
	l := s.last
	s.mu.Unlock()
	if l == nil || !l.watched || time.Since(l.done) > s.cfg.ListInterval {
		return st, false, nil
	}
	r := &rows{origin: source.OriginAudit, rel: fspath.Root, dirs: map[string]bool{}, st: &st, idx: s.clock.Index()}
	r.dir(fspath.Root)
	for _, p := range sortedPaths(l.objs) {
		r.add(item{path: p, o: l.objs[p]})
		if len(r.evs) >= s.cfg.PageSize {
			if err := emit(r.take()); err != nil {
				return st, true, err
			}
			r.idx = s.clock.Index()
		}
	}
	if evs := r.take(); len(evs) > 0 {
		if err := emit(evs); err != nil {
			return st, true, err
		}
	}
	s.c.auditsFromListing.Add(1)
	return st, true, nil
}

// stat emits the object at path rel, if there is one. It lists rather than HEADs the key:
// one request either way, and listings are what every S3 flavour answers alike.
func (s *Source) stat(ctx context.Context, rel string, origin source.Origin, emit func([]source.Event) error, st *source.WalkStats) error {
	key := s.prefix + rel[1:]
	noOwner := false
	for o := range s.cl.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: key, MaxKeys: 1, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return fmt.Errorf("stat s3 object %q: %w", key, o.Err)
		}
		if o.Key != key {
			break
		}
		it, ok := s.toItem(o.Key, o.Size, o.ETag, o.LastModified)
		if !ok || it.dir {
			break
		}
		st.Files++
		return emit([]source.Event{{Origin: origin, Path: rel, Size: it.o.size, MtimeNs: it.o.mtime, Index: s.clock.Index()}})
	}
	return ctx.Err()
}

// sortedPaths returns the keys of m, sorted.
func sortedPaths(m map[string]obj) []string {
	ps := make([]string, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// parent is the directory holding p.
func parent(p string) string {
	d, _ := fspath.Split(p)
	return d
}

// excluded reports whether rel (a key relative to the prefix, no leading "/") or a directory
// above it matches an exclude pattern, by basename or by path.
func (s *Source) excluded(rel string) bool {
	if len(s.cfg.Excludes) == 0 {
		return false
	}
	for end := 0; end < len(rel); {
		next := strings.IndexByte(rel[end+1:], '/')
		if next < 0 {
			end = len(rel)
		} else {
			end += 1 + next
		}
		p := rel[:end]
		base := p[strings.LastIndexByte(p, '/')+1:]
		for _, pat := range s.cfg.Excludes {
			if ok, _ := path.Match(pat, base); ok {
				return true
			}
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
		}
	}
	return false
}
