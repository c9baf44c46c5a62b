package rows

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/viewapi"
)

// probeWriter records the largest write and whether the store's lock was free at each one;
// on its first write it applies a row, as the pipe's loop would meanwhile.
type probeWriter struct {
	s         *Store
	buf       bytes.Buffer
	largest   int
	locked    bool
	wroteLate bool
}

func (w *probeWriter) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	if !w.s.mu.TryLock() {
		w.locked = true
	} else {
		w.s.mu.Unlock()
	}
	if !w.wroteLate {
		w.wroteLate = true
		w.s.Apply(rt, []viewapi.Row{put("late", 99, "v", "after the copy")})
	}
	return w.buf.Write(p)
}

// TestCheckpointStreamsOutsideTheLock: a checkpoint is written in bounded pieces, never one
// buffer of its size, with the store's lock free, and holds the state of one instant (a row
// applied while it is written is not in it).
func TestCheckpointStreamsOutsideTheLock(t *testing.T) {
	s, _ := newStore(t, Options{})
	var rows []viewapi.Row
	for i := range 400 {
		rows = append(rows, put(fmt.Sprintf("k%04d", i), uint64(i), "v", strings.Repeat("x", 1024)))
	}
	s.Apply(snap, rows)
	s.Apply(rt, []viewapi.Row{del("k0001", 500)})
	want := state(t, s)
	w := &probeWriter{s: s}
	info, err := s.WriteCheckpoint(w)
	if err != nil {
		t.Fatal(err)
	}
	if info.Bytes != w.buf.Len() || info.Bytes < 4*checkpointBuffer {
		t.Fatalf("info.Bytes %d, written %d; want the same, over %d", info.Bytes, w.buf.Len(), 4*checkpointBuffer)
	}
	if w.largest > checkpointBuffer {
		t.Errorf("a write of %d bytes: the checkpoint is buffered whole, not streamed through %d", w.largest, checkpointBuffer)
	}
	if w.locked {
		t.Error("the store's lock was held while the checkpoint was written")
	}
	r, _ := newStore(t, Options{})
	if _, err := r.LoadCheckpoint(w.buf.Bytes()); err != nil {
		t.Fatalf("load the streamed checkpoint: %v", err)
	}
	if got := state(t, r); got != want {
		t.Errorf("restored state differs from the state at the copy (len %d, want %d)", len(got), len(want))
	}
	if st := r.Stats(); st.Tombstones != 1 || st.LastIndex != 500 {
		t.Errorf("restored stats %+v", st)
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestCheckpointWriteErrorIsReturned(t *testing.T) {
	s, _ := newStore(t, Options{})
	s.Apply(snap, []viewapi.Row{put("a", 1, "v", strings.Repeat("x", 3*checkpointBuffer))})
	for _, after := range []int{0, 100, 2 * checkpointBuffer} {
		if _, err := s.WriteCheckpoint(&failingWriter{after: after}); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("writer failing after %d bytes: %v", after, err)
		}
	}
}

// TestMemoryCountsTombstoneKeys: a tombstone costs its key's bytes, so a view of long keys
// deleted in bulk does not report itself small.
func TestMemoryCountsTombstoneKeys(t *testing.T) {
	memAfterDelete := func(key string) uint64 {
		s, _ := newStore(t, Options{})
		s.Apply(rt, []viewapi.Row{put(key, 1), del(key, 2)})
		if s.Len() != 0 || s.Stats().Tombstones != 1 {
			t.Fatalf("%d rows, %d tombstones", s.Len(), s.Stats().Tombstones)
		}
		return s.MemoryBytes()
	}
	short, long := memAfterDelete("k"), memAfterDelete(strings.Repeat("k", 4000))
	if long < short+4000 {
		t.Errorf("a tombstone of a 4000-byte key costs %d, one of a 1-byte key %d", long, short)
	}
	// The estimate goes back down as tombstones go.
	s, _ := newStore(t, Options{})
	empty := s.MemoryBytes()
	s.Apply(rt, []viewapi.Row{del(strings.Repeat("a", 1000), 1), del("b", 1)})
	s.Apply(snap, []viewapi.Row{put(strings.Repeat("a", 1000), 2)}) // recreated over its tombstone
	s.Apply(rt, []viewapi.Row{del(strings.Repeat("a", 1000), 3)})
	s.Reset()
	if got := s.MemoryBytes(); got != empty {
		t.Errorf("after a reset: %d, empty %d", got, empty)
	}
}

// sealed returns body (from the version on) as a checkpoint with a right trailer.
func sealed(body []byte) []byte {
	b := append(bytes.Clone(checkpointMagic), body...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[len(checkpointMagic):], castagnoli))
	return binary.LittleEndian.AppendUint64(b, uint64(len(b)-4))
}

// TestCorruptCountsDoNotAllocate: counts under a valid CRC that the bytes left cannot hold are
// refused, or size nothing beyond the view's bounds, before anything is allocated for them.
func TestCorruptCountsDoNotAllocate(t *testing.T) {
	header := func(rows uint64) []byte {
		b := binary.AppendUvarint(nil, CheckpointVersion)
		b = binary.AppendVarint(b, 1)
		for range 6 {
			b = binary.AppendUvarint(b, 0) // last index, last change, counters
		}
		return binary.AppendUvarint(b, rows)
	}
	const pad = 1 << 20
	oneRow := func(fields uint64) []byte {
		b := header(1)
		b = appendKey(b, "k")
		b = append(b, 1, byte(viewapi.OriginSnapshot), 0) // index, origin, time
		b = binary.AppendUvarint(b, fields)
		return append(b, make([]byte, pad)...) // fields of empty names and values
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"field count the bytes could just hold", sealed(oneRow(pad / 2)), "empty name"},
		{"field count over the bytes", sealed(oneRow(pad)), "field count"},
		{"row count over the bytes", sealed(append(header(pad/2), make([]byte, pad)...)), "row count"},
		{"tombstone count over the bytes", sealed(append(append(header(0), binary.AppendUvarint(nil, pad)...), make([]byte, pad)...)), "tombstone count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t, Options{})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := s.LoadCheckpoint(tt.data)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadCheckpoint = %v, want ErrCheckpoint saying %q", err, tt.want)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > pad {
				t.Errorf("refusing it allocated %d bytes, over the file's %d", got, len(tt.data))
			}
		})
	}
}

func appendKey(b []byte, k string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(k))), k...)
}

// BenchmarkCheckpoint writes the checkpoint of a 200,000-row view to io.Discard: lock-ms is
// how long the read lock was held (the copy), B/op what the write allocated (the copy and the
// buffer, not the checkpoint's size), ckpt-bytes the file's size. Run:
//
//	go test -run '^$' -bench Checkpoint -benchmem ./fusion/internal/view/rows
func BenchmarkCheckpoint(b *testing.B) {
	s, _ := newStore(b, Options{})
	rows := make([]viewapi.Row, 0, 1000)
	for i := range 200_000 {
		rows = append(rows, put(fmt.Sprintf("user/%08d", i), uint64(i), "name", fmt.Sprintf("name %d", i),
			"team", "red", "email", fmt.Sprintf("u%d@example.com", i), "bio", strings.Repeat("b", 100)))
		if len(rows) == cap(rows) {
			s.Apply(snap, rows)
			rows = rows[:0]
		}
	}
	b.ReportAllocs()
	var lock time.Duration
	var size int
	for b.Loop() {
		info, err := s.WriteCheckpoint(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		lock, size = max(lock, info.Encode), info.Bytes
	}
	b.ReportMetric(float64(lock.Microseconds())/1e3, "lock-ms")
	b.ReportMetric(float64(size), "ckpt-bytes")
}
