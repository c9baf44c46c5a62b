package rows

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/viewapi"
)

// A checkpoint is the store's state as one file (issue 16: durable views), like the fs
// driver's: magic "FUSTROWS", a uvarint version, the body, then a trailer of the body's
// CRC-32C and the length of everything before the trailer (little-endian, 4 and 8 bytes). A
// reader checks the trailer before it decodes anything and decodes into fresh maps that
// replace the store's only once whole: a checkpoint truncated, corrupt, of another version or
// over the view's max_nodes is refused with ErrCheckpoint and the store is left as it was.
//
// Body: time written, last index, last change, the counters (applied, stale, rejected,
// blind-spot deletions), the rows in key order (key, index, origin, time applied, fields), then
// the tombstones (key, index, time deleted). Open walks are not kept: a restored view has none.

// CheckpointVersion is the format this build writes and the only one it reads.
const CheckpointVersion = 1

var checkpointMagic = []byte("FUSTROWS")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteCheckpoint writes the store's state to w. It encodes under the read lock (the pipe's
// loop waits that long), then writes without it.
func (s *Store) WriteCheckpoint(w io.Writer) (viewapi.CheckpointInfo, error) {
	start := time.Now()
	s.mu.RLock()
	now := s.now()
	b := append([]byte(nil), checkpointMagic...)
	b = binary.AppendUvarint(b, CheckpointVersion)
	b = binary.AppendVarint(b, now.UnixNano())
	b = binary.AppendUvarint(b, s.lastIndex)
	b = binary.AppendVarint(b, s.lastChange)
	for _, c := range []uint64{s.applied, s.stale, s.rejected, s.blindDeletes} {
		b = binary.AppendUvarint(b, c)
	}
	b = binary.AppendUvarint(b, uint64(len(s.rows)))
	s.keys.ascend("", false, func(k string) bool {
		r := s.rows[k]
		b = appendString(b, k)
		b = binary.AppendUvarint(b, r.index)
		b = binary.AppendUvarint(b, uint64(r.origin))
		b = binary.AppendVarint(b, r.updatedNs)
		b = binary.AppendUvarint(b, uint64(len(r.fields)))
		for f, v := range r.fields {
			b = appendString(b, f)
			b = appendString(b, v)
		}
		return true
	})
	b = binary.AppendUvarint(b, uint64(len(s.tombs)))
	for _, ref := range s.tombFIFO {
		if t, ok := s.tombs[ref.key]; ok && t.seq == ref.seq {
			b = appendString(b, ref.key)
			b = binary.AppendUvarint(b, t.index)
			b = binary.AppendVarint(b, t.deletedNs)
		}
	}
	info := viewapi.CheckpointInfo{WrittenAt: now, WatermarkNs: s.lastChange, Nodes: len(s.rows), Instance: s.instance}
	s.mu.RUnlock()
	info.Encode = time.Since(start)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[len(checkpointMagic):], castagnoli))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(b)-4))
	info.Bytes = len(b)
	if _, err := w.Write(b); err != nil {
		return info, fmt.Errorf("write checkpoint: %w", err)
	}
	return info, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a checkpoint's body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or corrupt %s", ErrCheckpoint, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// LoadCheckpoint replaces the store's state with a checkpoint, or refuses it (ErrCheckpoint)
// and keeps the state as it was.
func (s *Store) LoadCheckpoint(data []byte) (viewapi.CheckpointInfo, error) {
	var info viewapi.CheckpointInfo
	const trailer = 12
	if len(data) < len(checkpointMagic)+trailer || string(data[:len(checkpointMagic)]) != string(checkpointMagic) {
		return info, fmt.Errorf("%w: not a rows view checkpoint", ErrCheckpoint)
	}
	end := len(data) - trailer
	if binary.LittleEndian.Uint64(data[end+4:]) != uint64(end) {
		return info, fmt.Errorf("%w: length mismatch (truncated)", ErrCheckpoint)
	}
	if crc32.Checksum(data[len(checkpointMagic):end], castagnoli) != binary.LittleEndian.Uint32(data[end:]) {
		return info, fmt.Errorf("%w: checksum mismatch", ErrCheckpoint)
	}
	d := &decoder{b: data[len(checkpointMagic):end]}
	if v := d.uvarint("version"); d.err == nil && v != CheckpointVersion {
		return info, fmt.Errorf("%w: version %d, this build reads %d", ErrCheckpoint, v, CheckpointVersion)
	}
	written := d.varint("header")
	lastIndex := d.uvarint("header")
	lastChange := d.varint("header")
	var counters [4]uint64
	for i := range counters {
		counters[i] = d.uvarint("header")
	}
	s.mu.RLock()
	o := s.opts
	s.mu.RUnlock()
	n := d.uvarint("row count")
	if d.err == nil && n > uint64(o.MaxRows) {
		return info, fmt.Errorf("%w: it holds %d rows, over the view's max_nodes %d", ErrCheckpoint, n, o.MaxRows)
	}
	rows := make(map[string]*row, min(n, uint64(len(d.b))))
	var keys index
	bytes := 0
	prev := ""
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.string("row key")
		r := &row{index: d.uvarint("row index"), origin: viewapi.Origin(d.uvarint("row origin")), updatedNs: d.varint("row time")}
		nf := d.uvarint("field count")
		if d.err == nil && nf > uint64(len(d.b)) {
			d.fail("field count")
		}
		r.fields = make(map[string]string, nf)
		for j := uint64(0); j < nf && d.err == nil; j++ {
			f := d.string("field name")
			r.fields[f] = d.string("field value")
		}
		if d.err == nil && (k == "" || i > 0 && k <= prev) {
			d.err = fmt.Errorf("%w: rows out of key order at %q", ErrCheckpoint, k)
		}
		prev = k
		r.bytes = rowBytes(k, r.fields)*2 + rowOverhead
		bytes += r.bytes
		rows[k] = r
		// Keys come sorted: appending to the last chunk keeps the index sorted.
		appendSorted(&keys, k)
	}
	nt := d.uvarint("tombstone count")
	if d.err == nil && nt > uint64(len(d.b)) {
		d.fail("tombstone count")
	}
	tombs := make(map[string]tomb, min(nt, uint64(len(d.b))))
	var fifo []tombRef
	for i := uint64(0); i < nt && d.err == nil; i++ {
		k := d.string("tombstone key")
		t := tomb{index: d.uvarint("tombstone index"), deletedNs: d.varint("tombstone time"), seq: i + 1}
		if _, dup := tombs[k]; dup && d.err == nil {
			d.err = fmt.Errorf("%w: tombstone %q twice", ErrCheckpoint, k)
		}
		if _, isRow := rows[k]; isRow && d.err == nil {
			d.err = fmt.Errorf("%w: key %q is both a row and a tombstone", ErrCheckpoint, k)
		}
		tombs[k] = t
		fifo = append(fifo, tombRef{key: k, seq: t.seq})
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d bytes after the tombstones", ErrCheckpoint, len(d.b))
	}
	if d.err != nil {
		return info, d.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows, s.keys, s.tombs, s.tombFIFO, s.tombSeq, s.bytes = rows, keys, tombs, fifo, nt, bytes
	s.epoch, s.snap, s.audit = 0, walk{}, walk{}
	s.lastIndex, s.lastChange = lastIndex, lastChange
	s.applied, s.stale, s.rejected, s.blindDeletes = counters[0], counters[1], counters[2], counters[3]
	s.instance = nextInstance()
	s.expireLocked()
	return viewapi.CheckpointInfo{WrittenAt: time.Unix(0, written), WatermarkNs: lastChange, Nodes: len(rows),
		Bytes: len(data), Instance: s.instance}, nil
}

// appendSorted adds a key above every key of x.
func appendSorted(x *index, k string) {
	x.n++
	if len(x.chunks) == 0 || len(x.chunks[len(x.chunks)-1]) >= chunkMax {
		x.chunks = append(x.chunks, make([]string, 0, chunkMax))
	}
	last := len(x.chunks) - 1
	x.chunks[last] = append(x.chunks[last], k)
}
