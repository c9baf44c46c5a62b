package fs

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"path"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fustor/fustor/sdk/fspath"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
)

// The change log (DESIGN.md §5.6): every change applied to the view — a node created,
// modified or deleted, a suspect or blind-spot flag turned on or off — gets the view's next
// sequence number and a record in a bounded ring, read by Watch and ListChanges from a
// cursor. A record is a few bytes plus the part of its path that differs from the record
// before it (records of one directory share its path), in chunks of changeChunk records that
// each start with a full path, so a read decodes at most one chunk's worth before its cursor.
// The oldest chunks go when the ring holds more than its bounds.

// changeChunk is the number of records per chunk.
const changeChunk = 64

// Default bounds of a view's change log: at least 1M changes of typical paths in 64 MiB
// (BenchmarkChangeLogMemory).
const (
	DefaultChangeLogEntries = 1 << 20
	DefaultChangeLogBytes   = 64 << 20
)

type changeLog struct {
	instance             uint64
	first                uint64 // sequence of chunks[0]'s first record
	next                 uint64 // sequence the next change gets
	chunks               [][]byte
	bytes                int
	maxEntries, maxBytes int
	prev                 []byte // path of the open chunk's last record (front coding)
	prevDir              uint32 // the parent of that record\'s node
	prevM                int64  // its mtime (mtimes are delta-coded within a chunk)

	// dir and dirPath cache the path of the last parent a record was made under: a snapshot
	// or a burst of writes records thousands of changes in one directory.
	dir     uint32
	dirPath []byte
	buf     []byte

	// loading is true until the instance's first complete snapshot ended: the changes that
	// build a view nobody can query yet are not recorded (no cursor can point into them: a
	// view answers only once its snapshot is applied), so the log does not hold the whole tree.
	loading bool

	origin   Origin // the origin of what the view is applying now
	changed  bool   // changes since the last notify
	lastNs   int64  // Fusion physical time of the last change
	lastLive uint64 // sequence of the last change that is neither a snapshot's nor an audit's
	bulk     bool   // a snapshot or an audit was open at the last publish
	bulkFrom uint64 // the sequence the first change of that pass got (or gets)

	subMu   sync.Mutex
	subs    map[chan<- struct{}]struct{}
	release chan struct{} // closed at the next release (Released); nil: none asked for

	// pub is what the log's readers see without the view's lock, published at the end of
	// every writing call (publish): a watcher's checks then never wait for the apply loop.
	pub struct {
		instance, last, live, bulkFrom atomic.Uint64
		lastNs                         atomic.Int64
		bulk                           atomic.Bool
	}
}

func (l *changeLog) reset(maxEntries, maxBytes int) {
	l.subMu.Lock()
	subs := l.subs
	l.subMu.Unlock()
	if subs == nil {
		subs = map[chan<- struct{}]struct{}{}
	}
	l.instance, l.first, l.next, l.chunks, l.bytes = rand.Uint64()|1, 1, 1, nil, 0
	l.maxEntries, l.maxBytes = maxEntries, maxBytes
	l.prev, l.prevDir, l.prevM, l.dir, l.dirPath, l.buf = nil, 0, 0, 0, nil, nil
	l.loading, l.origin, l.changed, l.lastNs, l.lastLive, l.bulk, l.bulkFrom = true, 0, false, 0, 0, false, 0
	l.subMu.Lock()
	l.subs = subs
	l.subMu.Unlock()
	l.publish()
}

// publish makes the log's state visible to readers outside the view's lock.
func (l *changeLog) publish() {
	l.pub.instance.Store(l.instance)
	l.pub.last.Store(l.next - 1)
	l.pub.live.Store(l.lastLive)
	l.pub.lastNs.Store(l.lastNs)
	l.pub.bulk.Store(l.bulk)
	l.pub.bulkFrom.Store(l.bulkFrom)
}

// restore continues instance after seq with an empty log: a view loaded from a checkpoint,
// whose watchers' cursors up to seq stay valid.
func (l *changeLog) restore(instance, seq uint64) {
	l.reset(l.maxEntries, l.maxBytes)
	l.instance, l.first, l.next, l.loading = instance, seq+1, seq+1, false
	l.publish()
}

// record flags
const (
	recDir = 1 << iota
	recSuspect
	recKnown
)

// recordID records a change of node id (still linked, for a deletion).
func (v *View) recordID(kind ChangeKind, id uint32) {
	l := &v.chg
	if l.loading {
		return
	}
	n := v.st.Get(id)
	b := l.buf[:0]
	if id != v.root {
		if n.Parent != l.dir || l.dir == 0 {
			l.dirPath = v.appendPath(l.dirPath[:0], n.Parent)
			l.dir = n.Parent
		}
		b = append(append(append(b, l.dirPath...), '/'), v.st.Name(n)...)
	} else {
		b = append(b, '/')
	}
	l.buf = b
	var flags byte
	if n.IsDir() {
		flags |= recDir
	}
	if kind != ChangeDeleted {
		if n.Flags&store.FlagSuspect != 0 {
			flags |= recSuspect
		}
		if n.Flags&store.FlagKnown != 0 {
			flags |= recKnown
		}
	}
	var size, mtime int64
	if kind != ChangeDeleted {
		size, mtime = n.Size, n.Mtime
	}
	known := 0
	if id != v.root && n.Parent == l.prevDir {
		known = len(l.dirPath) + 1 // the previous record is in the same directory
	}
	l.prevDir = n.Parent
	v.appendRecord(kind, flags, size, mtime, b, known)
}

// appendRecord encodes one record into the open chunk; the first known bytes of p are known
// to equal the previous record's.
func (v *View) appendRecord(kind ChangeKind, flags byte, size, mtime int64, p []byte, known int) {
	l := &v.chg
	k := int((l.next - l.first) % changeChunk)
	if k == 0 {
		if n := len(l.chunks); n > 0 {
			// The full chunk keeps exactly its bytes, not the capacity appends left it.
			l.chunks[n-1] = bytes.Clone(l.chunks[n-1])
		}
		l.chunks = append(l.chunks, make([]byte, 0, 1024))
		l.prev, l.prevM, known = l.prev[:0], 0, 0
	}
	c := &l.chunks[len(l.chunks)-1]
	before := len(*c)
	shared := min(known, len(p), len(l.prev))
	for shared < len(p) && shared < len(l.prev) && p[shared] == l.prev[shared] {
		shared++
	}
	*c = append(*c, byte(kind)|byte(l.origin)<<3, flags)
	*c = binary.AppendUvarint(*c, uint64(size))
	*c = binary.AppendVarint(*c, mtime-l.prevM)
	*c = binary.AppendUvarint(*c, uint64(shared))
	*c = binary.AppendUvarint(*c, uint64(len(p)-shared))
	*c = append(*c, p[shared:]...)
	l.prev, l.prevM = append(l.prev[:shared], p[shared:]...), mtime
	l.bytes += len(*c) - before
	if l.origin != OriginSnapshot && l.origin != OriginAudit {
		l.lastLive = l.next
	}
	l.next++
	l.changed = true
	for len(l.chunks) > 1 && (int(l.next-l.first) > l.maxEntries || l.bytes > l.maxBytes) {
		l.bytes -= len(l.chunks[0])
		l.chunks[0] = nil
		l.chunks = l.chunks[1:]
		l.first += changeChunk
	}
}

// changeDirGone forgets the cached parent path: its node may be reused.
func (l *changeLog) changeDirGone() { l.dir, l.prevDir = 0, 0 }

// changesDone ends a writing call: what it recorded is published and announced.
func (v *View) changesDone() {
	l := &v.chg
	l.origin = 0
	released := l.lastLive != l.pub.live.Load() // a change watchers must not hold
	if bulk := v.c.snap != nil || v.c.audit != nil; bulk != l.bulk {
		l.bulk = bulk
		if bulk {
			// The changes this call recorded (a snapshot's start) are the pass's already.
			l.bulkFrom = l.pub.last.Load() + 1
		} else {
			released = true // the pass ended: watchers holding its changes send them
		}
	}
	v.notify()
	if released {
		v.releaseHolds()
	}
}

// releaseHolds wakes the watchers waiting on Released.
func (v *View) releaseHolds() {
	l := &v.chg
	l.subMu.Lock()
	if l.release != nil {
		close(l.release)
		l.release = nil
	}
	l.subMu.Unlock()
}

// Released returns a channel closed at the next end of a bulk pass, change of another origin
// (realtime, on-demand, expiry) or reset: what a watcher holding a pass's changes waits for
// instead of every applied batch's ping (a hundred holding watchers woken per batch would
// cost the apply loop what holding saves). Take it before checking DeliveryHint.
func (v *View) Released() <-chan struct{} {
	l := &v.chg
	l.subMu.Lock()
	defer l.subMu.Unlock()
	if l.release == nil {
		l.release = make(chan struct{})
	}
	return l.release
}

// notify publishes the log and pings the subscribers when changes were recorded; called at
// the end of every writing call, never per row, and never blocking.
func (v *View) notify() {
	l := &v.chg
	if !l.changed {
		l.publish()
		return
	}
	l.changed = false
	l.lastNs = v.opts.Now().UnixNano()
	l.publish()
	l.subMu.Lock()
	for ch := range l.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	l.subMu.Unlock()
}

// Subscribe makes ch receive a non-blocking ping whenever changes are applied; cancel stops it.
func (v *View) Subscribe(ch chan<- struct{}) (cancel func()) {
	l := &v.chg
	l.subMu.Lock()
	l.subs[ch] = struct{}{}
	l.subMu.Unlock()
	return func() {
		l.subMu.Lock()
		delete(l.subs, ch)
		l.subMu.Unlock()
	}
}

// ChangeCursor returns the view's instance and the sequence of its last change, as of the
// end of the last writing call; it never waits for the apply loop.
func (v *View) ChangeCursor() (instance, last uint64) {
	return v.chg.pub.instance.Load(), v.chg.pub.last.Load()
}

// LastChange returns when the last change was applied (0: none since the view was reset).
func (v *View) LastChange() int64 { return v.chg.pub.lastNs.Load() }

// DeliveryHint says whether a snapshot or an audit is open (bulk), from which sequence its
// changes are (bulkFrom), and the sequence of the last change of any other origin (realtime,
// on-demand, expiry): watchers may hold the pass's own changes until it ends, never what came
// before it or after lastLive.
func (v *View) DeliveryHint() (bulk bool, bulkFrom, lastLive uint64) {
	return v.chg.pub.bulk.Load(), v.chg.pub.bulkFrom.Load(), v.chg.pub.live.Load()
}

// maxScan bounds the records one read decodes, so a read under a filter that drops nearly
// everything still holds the read lock briefly; the caller goes on from Next.
const maxScan = 1 << 16

// Changes returns up to limit changes after sequence after that pass f. The view's lock is
// held only to copy the part of the chunk list the read needs: full chunks never change and
// the open one only grows past the copied length, so the records are decoded without it.
func (v *View) Changes(after uint64, f ChangeFilter, limit int) ChangePage {
	v.mu.RLock()
	l := &v.chg
	page := ChangePage{Next: after}
	if after+1 < l.first {
		page.Lost, after = true, l.first-1
		page.Next = after
	}
	if after >= l.next-1 {
		page.Next = l.next - 1
		v.mu.RUnlock()
		return page
	}
	part := l.readFrom(after)
	v.mu.RUnlock()
	scanned := 0
	part.scan(after, func(r record) bool {
		scanned++
		page.Next = r.seq
		p := string(r.path)
		if !changeMatches(f, r.kind, r.flags&recDir != 0, p) {
			return scanned < maxScan
		}
		e := Entry{Path: p, Name: path.Base(p), IsDir: r.flags&recDir != 0, Size: r.size, MtimeNs: r.mtime,
			Suspect: r.flags&recSuspect != 0, KnownByAgent: r.flags&recKnown != 0}
		if p == fspath.Root {
			e.Name = ""
		}
		page.Changes = append(page.Changes, Change{Seq: r.seq, Kind: r.kind, Origin: r.origin, Entry: e})
		return len(page.Changes) < limit && scanned < maxScan
	})
	page.More = page.Next < part.next-1
	return page
}

// readFrom returns the part of the log from the chunk that holds sequence after+1 (after+1 ≥
// first) to its end, for scan without the view's lock: the caller holds it while copying. Full
// chunks never change and the open one only grows past the copied length.
func (l *changeLog) readFrom(after uint64) changeLog {
	ci := int((after + 1 - l.first) / changeChunk)
	return changeLog{first: l.first + uint64(ci)*changeChunk, next: l.next, chunks: slices.Clone(l.chunks[ci:])}
}

// record is one decoded change record; path is valid only during the scan's call.
type record struct {
	seq    uint64
	kind   ChangeKind
	origin Origin
	flags  byte
	size   uint64
	mtime  int64
	path   []byte
}

// scan calls fn for the records after sequence after, in order, until fn returns false. The
// caller holds the view's lock, or reads a copy of the chunk list (Changes), and has checked
// that after+1 is in the log.
func (l *changeLog) scan(after uint64, fn func(record) bool) {
	seq := after + 1
	if seq < l.first {
		seq = l.first
	}
	for ci := int((seq - l.first) / changeChunk); ci < len(l.chunks); ci++ {
		c := l.chunks[ci]
		r := record{}
		for s := l.first + uint64(ci)*changeChunk; len(c) > 0 && s < l.next; s++ {
			r.seq, r.kind, r.origin, r.flags = s, ChangeKind(c[0]&7), Origin(c[0]>>3), c[1]
			c = c[2:]
			size, n := binary.Uvarint(c)
			c = c[n:]
			dm, n := binary.Varint(c)
			c = c[n:]
			shared, n := binary.Uvarint(c)
			c = c[n:]
			sl, n := binary.Uvarint(c)
			c = c[n:]
			r.path = append(r.path[:shared], c[:sl]...)
			c = c[sl:]
			r.size, r.mtime = size, r.mtime+dm
			if s < seq {
				continue
			}
			if !fn(r) {
				return
			}
		}
	}
}

// changeMatches applies a filter. A directory's deletion passes the glob: it stands for the
// deletion of everything below it, matching names included.
func changeMatches(f ChangeFilter, kind ChangeKind, dir bool, p string) bool {
	root := f.Root
	if root == "" {
		root = fspath.Root
	}
	if !fspath.IsWithin(p, root) && !(kind == ChangeDeleted && fspath.IsWithin(root, p)) {
		return false
	}
	return f.Match == nil || kind == ChangeDeleted && dir || f.Match(path.Base(p))
}

// ChangeLogStats returns the log's size: changes held and bytes.
func (v *View) ChangeLogStats() (entries int, bytes int) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return int(v.chg.next - v.chg.first), v.chg.bytes
}
