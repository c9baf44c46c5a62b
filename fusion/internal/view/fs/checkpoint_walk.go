package fs

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
	"github.com/fustor/fustor/sdk/fspath"
)

// A checkpoint of a view that is being written to cannot hold the view's lock for the whole
// tree: applies would wait for all of it (BenchmarkCheckpoint's stall). So the tree is walked in
// pieces of checkpointPiece nodes, the read lock released between them, which makes the walk
// fuzzy: a node may be seen before or after a change made meanwhile. Every such change is in
// the change log, so the checkpoint also carries the log's records from the walk's start to its
// end (the redo), and the loader replays them on the walked tree: the result is the tree as it
// was when the last piece ended, when the side tables are taken too (a fuzzy checkpoint with
// redo, as databases take them). A directory removed between pieces is written empty (its
// deletion is in the redo); one whose id was reused is recognised by its parent and name.
// Without a change log to replay (a view still loading its first snapshot), or when the log
// lost records during the walk, the tree is taken under one hold of the lock.

// checkpointPiece bounds the nodes encoded under one hold of the read lock (a variable: tests
// make the pieces tiny).
var checkpointPiece = 1 << 14

// encodeCheckpoint returns the checkpoint's body (without trailer) and what it holds;
// info.Encode is the longest the read lock was held.
func (v *View) encodeCheckpoint() ([]byte, CheckpointInfo) {
	if b, info, ok := v.encode(true); ok {
		return b, info
	}
	b, info, _ := v.encode(false)
	return b, info
}

// encode walks the tree, in pieces when pieces is set; ok is false when the walk must be done
// again in one piece (the view was reset, or the change log lost records, meanwhile).
func (v *View) encode(pieces bool) (out []byte, info CheckpointInfo, ok bool) {
	held := time.Now()
	v.mu.RLock()
	locked := true
	release := func() {
		info.Encode = max(info.Encode, time.Since(held))
		v.mu.RUnlock()
		locked = false
	}
	defer func() {
		if locked {
			release()
		}
	}()
	pieces = pieces && !v.chg.loading
	inst, seq0 := v.chg.instance, v.chg.next-1

	type frame struct {
		id, parent uint32
		name       string
	}
	tree := make([]byte, 0, 64+v.size*24)
	stack := []frame{{id: v.root}}
	var kids []uint32
	nodes, inPiece := 0, 0
	for len(stack) > 0 {
		if pieces && inPiece >= checkpointPiece {
			release()
			runtime.Gosched()
			v.mu.RLock()
			held, locked = time.Now(), true
			if v.chg.instance != inst {
				return nil, info, false // reset meanwhile
			}
			inPiece = 0
		}
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if f.id != v.root {
			if n := v.st.Get(f.id); n.Flags&store.FlagLive == 0 || !n.IsDir() || n.Parent != f.parent || string(v.st.Name(n)) != f.name {
				tree = binary.AppendUvarint(tree, 0) // removed since it was listed: the redo says so
				continue
			}
		}
		kids = kids[:0]
		for c := v.st.Get(f.id).FirstChild; c != 0; c = v.st.Get(c).NextSib {
			kids = append(kids, c)
		}
		tree = binary.AppendUvarint(tree, uint64(len(kids)))
		var mtime, updated int64
		for _, c := range kids {
			n := v.st.Get(c)
			name := v.st.Name(n)
			tree = binary.AppendUvarint(tree, uint64(n.Flags&persisted))
			tree = binary.AppendUvarint(tree, uint64(len(name)))
			tree = append(tree, name...)
			tree = binary.AppendVarint(tree, n.Size)
			tree = binary.AppendVarint(tree, n.Mtime-mtime)
			tree = binary.AppendVarint(tree, n.LastUpdated-updated)
			mtime, updated = n.Mtime, n.LastUpdated
		}
		for i := len(kids) - 1; i >= 0; i-- {
			if n := v.st.Get(kids[i]); n.IsDir() {
				stack = append(stack, frame{id: kids[i], parent: f.id, name: string(v.st.Name(n))})
			}
		}
		nodes += len(kids)
		inPiece += len(kids) + 1
	}

	// Under the last piece's hold: what changed during the walk, and the side tables.
	end := v.chg.next - 1
	if pieces && end > seq0 && seq0+1 < v.chg.first {
		return nil, info, false // the log moved past the walk's start: no complete redo
	}
	// The log's records are read after the lock is released (readFrom).
	log := v.chg.readFrom(v.chg.first - 1)
	sides := v.appendSideTables(nil)
	if v.checkpointHook != nil {
		v.checkpointHook()
	}
	info = CheckpointInfo{WrittenAt: v.opts.Now(), WatermarkNs: v.clock.Watermark().UnixNano(), Nodes: nodes,
		Instance: inst, Seq: end, Encode: info.Encode}
	release()
	var tail []byte
	if !pieces || end == seq0 {
		tail = binary.AppendUvarint(tail, 0)
	} else {
		tail = binary.AppendUvarint(tail, end-seq0)
		log.scan(seq0, func(r record) bool {
			tail = append(tail, byte(r.kind)|byte(r.origin)<<3, r.flags)
			tail = binary.AppendUvarint(tail, r.size)
			tail = binary.AppendVarint(tail, r.mtime)
			tail = binary.AppendUvarint(tail, uint64(len(r.path)))
			tail = append(tail, r.path...)
			return r.seq < end
		})
	}
	tail = append(tail, sides...)

	out = make([]byte, 0, len(checkpointMagic)+64+len(tree)+len(tail)+12)
	out = append(out, checkpointMagic...)
	out = binary.AppendUvarint(out, CheckpointVersion)
	out = binary.AppendVarint(out, info.WrittenAt.UnixNano())
	out = binary.AppendVarint(out, info.WatermarkNs)
	out = binary.AppendUvarint(out, uint64(info.Nodes))
	out = binary.AppendUvarint(out, info.Instance)
	out = binary.AppendUvarint(out, info.Seq)
	out = append(out, tree...)
	return append(out, tail...), info, true
}

// decodeRedo replays the redo records on the walked tree of a loading view; stamp is the
// last-update time of what realtime changed (the records do not carry it).
func (v *View) decodeRedo(d *decoder, stamp int64) {
	for n := d.Count(); n > 0 && d.Err == nil; n-- {
		if len(d.B) < 2 {
			d.fail("truncated in the redo")
			return
		}
		kind, origin, flags := ChangeKind(d.B[0]&7), Origin(d.B[0]>>3), d.B[1]
		d.B = d.B[2:]
		size, mtime, p := d.Uvarint(), d.Varint(), d.str()
		if d.Err != nil {
			return
		}
		if err := v.redo(kind, origin, flags, size, mtime, p, stamp); err != nil {
			d.fail("redo of %q: %v", p, err)
		}
	}
}

// redo applies one change record to a loading view (its own changes are not recorded).
func (v *View) redo(kind ChangeKind, origin Origin, flags byte, size uint64, mtime int64, p string, stamp int64) error {
	if c, err := fspath.Clean(p); err != nil || c != p {
		return fmt.Errorf("not a clean path")
	}
	if p == fspath.Root {
		return nil // the root's attributes are the walk's
	}
	parent, name := fspath.Split(p)
	pid, err := v.mkdirs(parent)
	if err != nil {
		return err
	}
	h := v.st.HashString(pid, name)
	id := v.st.LookupHashed(pid, name, h)
	if kind == ChangeDeleted {
		if id != 0 {
			v.remove(id)
		}
		return nil
	}
	dir := flags&recDir != 0
	if id != 0 && v.st.Get(id).IsDir() != dir {
		v.remove(id)
		id = 0
	}
	if id == 0 {
		if id, err = v.insert(pid, name, h, dir, int64(size), mtime, 0); err != nil {
			return err
		}
	} else {
		v.setAttrs(id, int64(size), mtime)
	}
	n := v.st.Get(id)
	n.Flags &^= store.FlagKnown | store.FlagAuditSkipped
	if flags&recKnown != 0 {
		n.Flags |= store.FlagKnown
	}
	if origin == OriginRealtime {
		n.LastUpdated = stamp
	}
	return nil
}

// mkdirs returns the directory at p, creating what is missing (a loading view's redo).
func (v *View) mkdirs(p string) (uint32, error) {
	id := v.root
	if p == fspath.Root {
		return id, nil
	}
	for _, name := range strings.Split(p[1:], "/") {
		h := v.st.HashString(id, name)
		c := v.st.LookupHashed(id, name, h)
		if c != 0 && !v.st.Get(c).IsDir() {
			v.remove(c)
			c = 0
		}
		if c == 0 {
			var err error
			if c, err = v.insert(id, name, h, true, 0, 0, 0); err != nil {
				return 0, err
			}
		}
		id = c
	}
	return id, nil
}

// flagsFromTables makes the suspect and blind-spot flags of the nodes those of the side tables
// (the redo's records do not carry the blind-spot flag); a path of a table that is not in the
// tree leaves the table.
func (v *View) flagsFromTables() {
	v.st.ClearFlag(store.FlagSuspect | store.FlagBlindAdd)
	for p := range v.c.suspects {
		if id, _ := v.resolve(p); id != 0 {
			v.st.Get(id).Flags |= store.FlagSuspect
		} else {
			v.c.clearSuspect(p)
		}
	}
	for p := range v.c.additions {
		if id, _ := v.resolve(p); id != 0 {
			v.st.Get(id).Flags |= store.FlagBlindAdd
		} else {
			delete(v.c.additions, p)
		}
	}
}
