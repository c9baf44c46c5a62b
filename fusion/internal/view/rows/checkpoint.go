package rows

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/viewapi"
	"github.com/fustor/fustor/sdk/wire"
)

// A checkpoint is the store's state as one file (issue 16: durable views), like the fs
// driver's: magic "FUSTROWS", a uvarint version, the body, then a trailer of the body's
// CRC-32C and the length of everything before the trailer (little-endian, 4 and 8 bytes). A
// reader checks the trailer before it decodes anything and decodes into fresh maps that
// replace the store's only once whole: a checkpoint truncated, corrupt, of another version,
// over the view's max_nodes or holding a row the view would refuse is refused with
// ErrCheckpoint and the store is left as it was. The CRC guards against damage, not against
// a writer's bug: counts are checked against the bytes left before they size anything.
//
// Body: time written, last index, last change, the counters (applied, stale, rejected,
// blind-spot deletions), the rows in key order (key, index, origin, time applied, fields), then
// the tombstones (key, index, time deleted). Open walks are not kept: a restored view has none.

// CheckpointVersion is the format this build writes and the only one it reads.
const CheckpointVersion = 1

var checkpointMagic = []byte("FUSTROWS")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// heldRow is what a checkpoint copies of a row under the read lock: the fields map is never
// written in place (a write replaces it), so sharing it is safe once the lock is released.
type heldRow struct {
	key       string
	fields    map[string]string
	index     uint64
	origin    viewapi.Origin
	updatedNs int64
}

type heldTomb struct {
	key       string
	index     uint64
	deletedNs int64
}

// checkpointBuffer is the writer's buffer: what a checkpoint holds in memory beyond its copy.
const checkpointBuffer = 64 << 10

// WriteCheckpoint writes the store's state to w. Under one hold of the read lock it copies
// the state, a small record per row and per tombstone that shares the rows' strings and
// fields (so the pipe's loop waits for a copy, not for the encoding, and the state is one
// instant's: a fuzzy one could hold a last index ahead of rows it lacks); then, without the
// lock, it sorts the copy by key and encodes it, streaming through a bounded buffer and the
// CRC, so no buffer of the checkpoint's size is built (BenchmarkCheckpoint: lock-ms, B/op).
// The copy keeps what the view drops meanwhile alive until it is encoded. A write error
// leaves w partly written (the caller writes a temporary file).
func (s *Store) WriteCheckpoint(w io.Writer) (viewapi.CheckpointInfo, error) {
	start := time.Now()
	s.mu.RLock()
	now := s.now()
	header := []uint64{s.lastIndex, s.applied, s.stale, s.rejected, s.blindDeletes}
	lastChange := s.lastChange
	rows := make([]heldRow, 0, len(s.rows))
	for k, r := range s.rows {
		rows = append(rows, heldRow{key: k, fields: r.fields, index: r.index, origin: r.origin, updatedNs: r.updatedNs})
	}
	tombs := make([]heldTomb, 0, len(s.tombs))
	for _, ref := range s.tombFIFO {
		if t, ok := s.tombs[ref.key]; ok && t.seq == ref.seq {
			tombs = append(tombs, heldTomb{key: ref.key, index: t.index, deletedNs: t.deletedNs})
		}
	}
	info := viewapi.CheckpointInfo{WrittenAt: now, WatermarkNs: lastChange, Nodes: len(rows), Instance: s.instance}
	s.mu.RUnlock()
	info.Encode = time.Since(start)
	// Walking the map costs the lock less than walking the index (a lookup per key); the
	// order is made without the lock.
	slices.SortFunc(rows, func(a, b heldRow) int { return strings.Compare(a.key, b.key) })

	if _, err := w.Write(checkpointMagic); err != nil {
		return info, fmt.Errorf("write checkpoint: %w", err)
	}
	sw := &sumWriter{w: w}
	e := &encoder{w: bufio.NewWriterSize(sw, checkpointBuffer)}
	e.uvarint(CheckpointVersion)
	e.varint(now.UnixNano())
	e.uvarint(header[0])
	e.varint(lastChange)
	for _, c := range header[1:] {
		e.uvarint(c)
	}
	e.uvarint(uint64(len(rows)))
	for i := range rows {
		r := &rows[i]
		e.string(r.key)
		e.uvarint(r.index)
		e.uvarint(uint64(r.origin))
		e.varint(r.updatedNs)
		e.uvarint(uint64(len(r.fields)))
		for f, v := range r.fields {
			e.string(f)
			e.string(v)
		}
		rows[i] = heldRow{} // what the view dropped meanwhile can go
	}
	e.uvarint(uint64(len(tombs)))
	for _, t := range tombs {
		e.string(t.key)
		e.uvarint(t.index)
		e.varint(t.deletedNs)
	}
	if err := e.w.Flush(); err != nil {
		return info, fmt.Errorf("write checkpoint: %w", err)
	}
	body := len(checkpointMagic) + sw.n
	var trailer [12]byte
	binary.LittleEndian.PutUint32(trailer[:4], sw.sum)
	binary.LittleEndian.PutUint64(trailer[4:], uint64(body))
	if _, err := w.Write(trailer[:]); err != nil {
		return info, fmt.Errorf("write checkpoint: %w", err)
	}
	info.Bytes = body + len(trailer)
	return info, nil
}

// sumWriter passes writes on, counting them into a CRC-32C and a length.
type sumWriter struct {
	w   io.Writer
	sum uint32
	n   int
}

func (s *sumWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.sum = crc32.Update(s.sum, castagnoli, p[:n])
	s.n += n
	return n, err
}

// encoder writes a checkpoint's body; the buffered writer keeps the first error.
type encoder struct {
	w       *bufio.Writer
	scratch [binary.MaxVarintLen64]byte
}

func (e *encoder) uvarint(v uint64) {
	_, _ = e.w.Write(binary.AppendUvarint(e.scratch[:0], v))
}

func (e *encoder) varint(v int64) {
	_, _ = e.w.Write(binary.AppendVarint(e.scratch[:0], v))
}

func (e *encoder) string(s string) {
	e.uvarint(uint64(len(s)))
	_, _ = e.w.WriteString(s)
}

// decoder reads a checkpoint's body (sdk/wire's Reader: the first error sticks), naming
// what it was reading when the bytes ran out.
type decoder struct{ r wire.Reader }

// fail records that what is corrupt, unless an error is already recorded.
func (d *decoder) fail(what string) {
	d.r.Fail(fmt.Errorf("%w: truncated or corrupt %s", ErrCheckpoint, what))
}

// named turns the Reader's first error into the checkpoint's, saying what was read.
func (d *decoder) named(what string) {
	if d.r.Err != nil && !errors.Is(d.r.Err, ErrCheckpoint) {
		d.r.Err = fmt.Errorf("%w: truncated or corrupt %s: %w", ErrCheckpoint, what, d.r.Err)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	v := d.r.Uvarint()
	d.named(what)
	return v
}

func (d *decoder) varint(what string) int64 {
	v := d.r.Varint()
	d.named(what)
	return v
}

func (d *decoder) string(what string) string {
	b := d.r.Bytes(0)
	d.named(what)
	return string(b)
}

// The fewest bytes a row and a tombstone take in a checkpoint: a key of one byte and its length,
// then one byte per number.
const (
	minRowBytes  = 2 + 4 // key, index, origin, time, field count
	minTombBytes = 2 + 2 // key, index, time
)

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
	d := &decoder{r: wire.Reader{B: data[len(checkpointMagic):end]}}
	if v := d.uvarint("version"); d.r.Err == nil && v != CheckpointVersion {
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
	if d.r.Err == nil && n > uint64(o.MaxRows) {
		return info, fmt.Errorf("%w: it holds %d rows, over the view's max_nodes %d", ErrCheckpoint, n, o.MaxRows)
	}
	// Counts size the allocations only once the bytes left could hold them (a row takes at
	// least minRowBytes, a field two, a tombstone minTombBytes), so a corrupt count under a
	// valid CRC cannot allocate beyond the file's size.
	if d.r.Err == nil && n > uint64(len(d.r.B)/minRowBytes) {
		d.fail("row count")
	}
	if d.r.Err != nil {
		return info, d.r.Err
	}
	rows := make(map[string]*row, min(n, uint64(len(d.r.B)/minRowBytes)))
	var keys index
	bytes := 0
	prev := ""
	for i := uint64(0); i < n && d.r.Err == nil; i++ {
		k := d.string("row key")
		r := &row{index: d.uvarint("row index"), origin: viewapi.Origin(d.uvarint("row origin")), updatedNs: d.varint("row time")}
		nf := d.uvarint("field count")
		if d.r.Err == nil && nf > uint64(len(d.r.B)/2) {
			d.fail("field count")
		}
		r.fields = make(map[string]string, min(nf, uint64(o.MaxFields), uint64(len(d.r.B)/2)))
		for j := uint64(0); j < nf && d.r.Err == nil; j++ {
			f := d.string("field name")
			r.fields[f] = d.string("field value")
		}
		if d.r.Err == nil && i > 0 && k <= prev {
			d.r.Err = fmt.Errorf("%w: rows out of key order at %q", ErrCheckpoint, k)
		}
		if d.r.Err == nil && (r.origin < viewapi.OriginRealtime || r.origin > viewapi.OriginOnDemand) {
			d.r.Err = fmt.Errorf("%w: row %s of origin %d", ErrCheckpoint, quote(k), r.origin)
		}
		if d.r.Err == nil {
			// A row this view would refuse is not loaded either.
			if err := checkRow(o, &viewapi.Row{Key: k, Fields: r.fields}); err != nil {
				d.r.Err = fmt.Errorf("%w: %w", ErrCheckpoint, err)
			}
		}
		prev = k
		r.bytes = rowBytes(k, r.fields)*2 + rowOverhead
		bytes += r.bytes
		rows[k] = r
		// Keys come sorted: appending to the last chunk keeps the index sorted.
		appendSorted(&keys, k)
	}
	nt := d.uvarint("tombstone count")
	if d.r.Err == nil && nt > uint64(len(d.r.B)/minTombBytes) {
		d.fail("tombstone count")
	}
	if d.r.Err != nil {
		return info, d.r.Err
	}
	// Beyond max_nodes the oldest go at the end (expireLocked): no need to size for them.
	tombs := make(map[string]tomb, min(nt, uint64(o.MaxRows), uint64(len(d.r.B)/minTombBytes)))
	var fifo []tombRef
	tombMem := 0
	for i := uint64(0); i < nt && d.r.Err == nil; i++ {
		k := d.string("tombstone key")
		t := tomb{index: d.uvarint("tombstone index"), deletedNs: d.varint("tombstone time"), seq: i + 1}
		if _, dup := tombs[k]; dup && d.r.Err == nil {
			d.r.Err = fmt.Errorf("%w: tombstone %q twice", ErrCheckpoint, k)
		}
		if _, isRow := rows[k]; isRow && d.r.Err == nil {
			d.r.Err = fmt.Errorf("%w: key %q is both a row and a tombstone", ErrCheckpoint, k)
		}
		if err := checkKey(o, k); err != nil && d.r.Err == nil {
			d.r.Err = fmt.Errorf("%w: tombstone: %w", ErrCheckpoint, err)
		}
		tombs[k] = t
		tombMem += tombCost(k)
		fifo = append(fifo, tombRef{key: k, seq: t.seq})
	}
	if d.r.Err == nil && len(d.r.B) != 0 {
		d.r.Err = fmt.Errorf("%w: %d bytes after the tombstones", ErrCheckpoint, len(d.r.B))
	}
	if d.r.Err != nil {
		return info, d.r.Err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows, s.keys, s.tombs, s.tombFIFO, s.tombSeq, s.bytes, s.tombMem = rows, keys, tombs, fifo, nt, bytes, tombMem
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
