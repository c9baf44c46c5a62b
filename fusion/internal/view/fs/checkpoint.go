package fs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
	"github.com/fustor/fustor/sdk/wire"
)

// A checkpoint is the view's state as one file (issue 16): the tree and the consistency side
// tables, so that a restarted Fusion answers at once instead of waiting for a full snapshot.
//
// Format: magic "FUSTORVW", then a uvarint version, then the body, then a trailer of the body's
// CRC-32C and the length of everything before the trailer (both little-endian, 4 and 8 bytes).
// A reader checks the trailer before it decodes anything, and decodes into a fresh tree that
// replaces the view's only once it is whole: a checkpoint that is truncated, corrupt or of
// another version is refused with ErrCheckpoint and the view is left as it was.
//
// Body: a header (time written, watermark, node count, change-log instance and sequence), the
// tree in pre-order — for each directory its number of children, then each child (flags, name,
// size, mtime and last-update as deltas from the previous child's), then its child directories
// in the same way — then the redo: the change-log records of what changed while the tree was
// walked in pieces (checkpoint_walk.go), replayed by the loader — and the side tables as they
// were at the end: tombstones, suspects (with the time they had left), blind-spot additions and
// deletions, the logical clock's skew samples and the audit count. Names are not front-coded
// and paths are written whole only in the redo and the side tables, which are small
// (BenchmarkCheckpoint measures the bytes).

// CheckpointVersion is the format this build writes and the only one it reads.
const CheckpointVersion = 1

var checkpointMagic = []byte("FUSTORVW")

// ErrCheckpoint is returned for a checkpoint that cannot be loaded.
var ErrCheckpoint = errors.New("checkpoint refused")

// persisted are the node flags a checkpoint keeps; the others belong to an open audit,
// snapshot or verify walk, which a restored view does not have.
const persisted = store.FlagDir | store.FlagSuspect | store.FlagKnown | store.FlagAuditSkipped | store.FlagBlindAdd

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteCheckpoint writes the view's state to w. It encodes under the view's read lock in
// pieces (checkpoint_walk.go), so an apply waits for one piece at most, then writes without it.
func (v *View) WriteCheckpoint(w io.Writer) (CheckpointInfo, error) {
	body, info := v.encodeCheckpoint()
	sum := crc32.Checksum(body[len(checkpointMagic):], castagnoli)
	body = binary.LittleEndian.AppendUint32(body, sum)
	body = binary.LittleEndian.AppendUint64(body, uint64(len(body)-4))
	info.Bytes = len(body)
	if _, err := w.Write(body); err != nil {
		return info, fmt.Errorf("write checkpoint: %w", err)
	}
	return info, nil
}

// appendSideTables encodes the consistency side tables, the clock's samples and the audit
// count (the caller holds the lock).
func (v *View) appendSideTables(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v.c.tombs)))
	for p, t := range v.c.tombs {
		b = appendString(b, p)
		b = binary.AppendVarint(b, t.logicalNs)
		b = binary.AppendVarint(b, t.physicalNs)
	}
	now := v.opts.Mono()
	b = binary.AppendUvarint(b, uint64(len(v.c.suspects)))
	for p, s := range v.c.suspects {
		b = appendString(b, p)
		b = binary.AppendVarint(b, max(0, s.expires-now))
		b = binary.AppendVarint(b, s.mtime)
	}
	for _, set := range []map[string]struct{}{v.c.additions, v.c.deletions} {
		b = binary.AppendUvarint(b, uint64(len(set)))
		for p := range set {
			b = appendString(b, p)
		}
	}
	skews := v.clock.Skews()
	b = binary.AppendUvarint(b, uint64(len(skews)))
	for _, k := range skews {
		b = binary.AppendVarint(b, k)
	}
	b = binary.AppendUvarint(b, v.c.auditCycles)
	b = binary.AppendVarint(b, v.c.lastAuditNs)
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// LoadCheckpoint replaces the view's state with the checkpoint in data, or returns an error
// wrapping ErrCheckpoint and leaves the view as it was. The change log continues the
// checkpoint's instance after its sequence, so a watcher's cursor of before the restart stays
// valid.
func (v *View) LoadCheckpoint(data []byte) (CheckpointInfo, error) {
	var info CheckpointInfo
	body, err := checkBody(data)
	if err != nil {
		return info, err
	}
	nv := New(v.log, v.opts)
	d := &decoder{wire.Reader{B: body}}
	if ver := d.Uvarint(); d.Err == nil && ver != CheckpointVersion {
		return info, fmt.Errorf("%w: format version %d, this build reads %d", ErrCheckpoint, ver, CheckpointVersion)
	}
	info.WrittenAt = time.Unix(0, d.Varint())
	info.WatermarkNs = d.Varint()
	info.Nodes = int(d.Uvarint())
	info.Instance, info.Seq = d.Uvarint(), d.Uvarint()
	if err := nv.decodeTree(d, info.Nodes); err != nil {
		return info, err
	}
	nv.decodeRedo(d, info.WrittenAt.UnixNano())
	nv.decodeSideTables(d)
	if d.Err == nil {
		nv.flagsFromTables()
	}
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%d bytes after the end", len(d.B))
	}
	if d.Err != nil {
		return info, fmt.Errorf("%w: %w", ErrCheckpoint, d.Err)
	}
	info.Bytes = len(data)

	v.mu.Lock()
	defer v.mu.Unlock()
	v.st, v.dirs, v.root, v.size = nv.st, nv.dirs, nv.root, nv.size
	v.c, v.clock = nv.c, nv.clock
	v.dirTag++ // remembered stream directories point into the old tree
	v.lastDir, v.lastDirID, v.chainDir, v.chain = nil, 0, 0, nil
	v.chg.restore(info.Instance, info.Seq)
	v.releaseHolds()
	v.marks = store.MarkPool{}
	return info, nil
}

// checkBody verifies the magic and the trailer and returns what is between them.
func checkBody(data []byte) ([]byte, error) {
	const trailer = 12
	switch {
	case len(data) == 0:
		return nil, fmt.Errorf("%w: empty file", ErrCheckpoint)
	case len(data) < len(checkpointMagic)+trailer || !bytes.Equal(data[:len(checkpointMagic)], checkpointMagic):
		return nil, fmt.Errorf("%w: not a view checkpoint (no FUSTORVW header)", ErrCheckpoint)
	}
	end := len(data) - trailer
	if n := binary.LittleEndian.Uint64(data[end+4:]); n != uint64(end) {
		return nil, fmt.Errorf("%w: truncated or padded: %d bytes, the trailer says %d", ErrCheckpoint, end+trailer, n+trailer)
	}
	if sum := binary.LittleEndian.Uint32(data[end:]); sum != crc32.Checksum(data[len(checkpointMagic):end], castagnoli) {
		return nil, fmt.Errorf("%w: checksum mismatch (the file is corrupt)", ErrCheckpoint)
	}
	return data[len(checkpointMagic):end], nil
}

// decodeTree rebuilds the tree of an empty view; nodes is the count the header promised.
func (v *View) decodeTree(d *decoder, nodes int) error {
	if nodes > v.opts.MaxNodes {
		return fmt.Errorf("%w: %d nodes, the view holds at most %d (views.max_nodes)", ErrCheckpoint, nodes, v.opts.MaxNodes)
	}
	stack := []uint32{v.root}
	var dirs []uint32
	for len(stack) > 0 && d.Err == nil {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		count := d.Uvarint()
		if count > uint64(nodes-v.size) {
			d.fail("directory %q claims %d children, more than the nodes left", v.pathOf(dir), count)
			break
		}
		dirs = dirs[:0]
		var mtime, updated int64
		for range count {
			flags := uint16(d.Uvarint()) & persisted
			name := d.Bytes(0)
			size, dm, du := d.Varint(), d.Varint(), d.Varint()
			if d.Err != nil {
				break
			}
			mtime, updated = mtime+dm, updated+du
			if len(name) == 0 || bytes.IndexByte(name, '/') >= 0 || len(name) > math.MaxUint16 {
				d.fail("bad name %q under %q", name, v.pathOf(dir))
				break
			}
			nm := string(name)
			h := v.st.HashString(dir, nm)
			if v.st.LookupHashed(dir, nm, h) != 0 {
				d.fail("%q twice under %q", nm, v.pathOf(dir))
				break
			}
			isDir := flags&store.FlagDir != 0
			id, err := v.insert(dir, nm, h, isDir, size, mtime, flags&^store.FlagDir)
			if err != nil {
				d.Err = err
				break
			}
			v.st.Get(id).LastUpdated = updated
			if isDir {
				dirs = append(dirs, id)
			}
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			stack = append(stack, dirs[i])
		}
	}
	if d.Err == nil && v.size != nodes {
		d.fail("%d nodes, the header says %d", v.size, nodes)
	}
	if d.Err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, d.Err)
	}
	return nil
}

func (v *View) decodeSideTables(d *decoder) {
	for n := d.Count(); n > 0 && d.Err == nil; n-- {
		p := d.str()
		v.c.tombs[p] = tombstone{logicalNs: d.Varint(), physicalNs: d.Varint()}
	}
	now := v.opts.Mono()
	for n := d.Count(); n > 0 && d.Err == nil; n-- {
		p := d.str()
		left, mtime := d.Varint(), d.Varint()
		if d.Err == nil {
			v.c.markSuspect(p, mtime, now, time.Duration(left))
		}
	}
	for _, set := range []map[string]struct{}{v.c.additions, v.c.deletions} {
		for n := d.Count(); n > 0 && d.Err == nil; n-- {
			set[d.str()] = struct{}{}
		}
	}
	skews := make([]int64, 0, min(d.Count(), 1<<20))
	for n := cap(skews); n > 0 && d.Err == nil; n-- {
		skews = append(skews, d.Varint())
	}
	if d.Err == nil {
		v.clock.Restore(skews)
	}
	v.c.auditCycles, v.c.lastAuditNs = d.Uvarint(), d.Varint()
}

// decoder is a wire.Reader with the checkpoint's own reads.
type decoder struct{ wire.Reader }

func (d *decoder) fail(format string, args ...any) { d.Fail(fmt.Errorf(format, args...)) }
func (d *decoder) str() string                     { return string(d.Bytes(0)) }

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
