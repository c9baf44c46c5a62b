package rows

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/fustor/fustor/fusion/internal/view/viewapi"
)

// model is the package comment's rules written as plainly as possible: a map per key of the
// last event the view kept (a row or a tombstone), and per open walk the keys it reported and
// the keys anything wrote since it started. Walks are numbered in the order they started; an
// on-demand read counts as one started with the last.
type model struct {
	held   map[string]mheld
	walks  map[viewapi.Origin]*mwalk // snapshot, audit: open walks
	starts uint64
	stale  uint64
	blind  uint64
}

type mheld struct {
	index    uint64
	realtime bool   // realtime evidence: a realtime row, or any tombstone
	walk     uint64 // for a walk's row, the number of its walk (0: none open)
	tomb     bool
	v        string
}

type mwalk struct {
	owner         string
	n             uint64
	seen, written map[string]bool
}

func newModel() *model {
	return &model{held: map[string]mheld{}, walks: map[viewapi.Origin]*mwalk{}}
}

func (m *model) apply(o viewapi.Origin, key string, del bool, index uint64, v string) {
	h, ok := m.held[key]
	// A walk's row of the key, applied or not, a row or a delete, reports the key.
	var n uint64
	if w := m.walks[o]; w != nil {
		w.seen[key] = true
		n = w.n
	}
	if o == viewapi.OriginOnDemand {
		n = m.starts
	}
	if ok {
		var stale bool
		switch {
		case o == viewapi.OriginRealtime:
			stale = h.index > index
		case h.realtime:
			stale = h.index >= index
		default:
			stale = h.index > index && n <= h.walk
		}
		if stale {
			m.stale++
			return
		}
	}
	if del {
		m.held[key] = mheld{index: index, realtime: true, tomb: true}
		return
	}
	h = mheld{index: index, realtime: o == viewapi.OriginRealtime, v: v}
	if !h.realtime {
		h.walk = n
	}
	m.held[key] = h
	for _, w := range m.walks {
		w.written[key] = true
	}
}

func (m *model) start(o viewapi.Origin, owner string) {
	m.starts++
	m.walks[o] = &mwalk{owner: owner, n: m.starts, seen: map[string]bool{}, written: map[string]bool{}}
}

func (m *model) end(o viewapi.Origin, owner string, failed bool) {
	w := m.walks[o]
	if w == nil || w.owner != owner {
		return
	}
	delete(m.walks, o)
	if failed {
		return
	}
	for k, h := range m.held {
		if !h.tomb && !w.seen[k] && !w.written[k] {
			delete(m.held, k)
			m.blind++
			// Removed with no event: the other open walk forgets the key too (a row that
			// comes back is a new one to it).
			for _, other := range m.walks {
				delete(other.seen, k)
				delete(other.written, k)
			}
		}
	}
}

// restore is a checkpoint's round trip: open walks are not kept, nor what the walks knew.
func (m *model) restore() {
	m.walks, m.starts = map[viewapi.Origin]*mwalk{}, 0
	for k, h := range m.held {
		h.walk = 0
		m.held[k] = h
	}
}

func (m *model) state() map[string]string {
	out := map[string]string{}
	for k, h := range m.held {
		if !h.tomb {
			out[k] = fmt.Sprintf("%d:%s", h.index, h.v)
		}
	}
	return out
}

// FuzzArbitration drives the store and the model with the same random operations and compares
// what they hold after each one. The walks overlap freely: a snapshot and an audit open at
// once, a snapshot replaced by another owner's (whose end the first owner cannot send), ends
// without starts, on-demand reads in between.
func FuzzArbitration(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{5, 0, 0, 1, 0x40, 2, 6, 3, 3, 7})
	f.Add([]byte{8, 0x21, 0x11, 0x42, 0x03, 9, 0x25, 0x17, 10, 0x33, 11})
	// An audit left open; a snapshot writes a higher index, the audit a lower one; the
	// audit ends beside the open snapshot.
	f.Add([]byte{8, 5, 14, 0x48, 28, 0x08, 30, 0x11, 9, 6})
	// An on-demand read at a high index, an audit row lower; a snapshot replaced by another
	// owner's.
	f.Add([]byte{8, 42, 0x48, 28, 0x08, 5, 12, 14, 0x01, 6, 13, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 512 {
			ops = ops[:512]
		}
		s, _ := newStore(t, Options{})
		m := newModel()
		origins := []viewapi.Origin{viewapi.OriginRealtime, viewapi.OriginSnapshot, viewapi.OriginAudit, viewapi.OriginOnDemand}
		for i := 0; i < len(ops); i++ {
			op := ops[i]
			switch op % 14 {
			case 0, 1, 2, 3, 4:
				// A row: key, index and value from the next byte.
				var arg byte
				if i+1 < len(ops) {
					i++
					arg = ops[i]
				}
				o := origins[int(op/14)%len(origins)]
				key := fmt.Sprintf("k%d", arg%5)
				index := uint64(arg>>3) % 6
				del := op%14 == 4
				v := fmt.Sprint(i)
				r := viewapi.Row{Key: key, Delete: del, Index: index, Fields: map[string]string{"v": v}}
				if _, rej, err := s.Apply(o, []viewapi.Row{r}); rej != 0 {
					t.Fatalf("op %d: valid row rejected: %v", i, err)
				}
				m.apply(o, key, del, index, v)
			case 5, 12:
				owner := map[byte]string{5: "leader", 12: "other"}[op%14]
				s.SnapshotStart(owner)
				m.start(viewapi.OriginSnapshot, owner)
			case 6, 7:
				s.SnapshotEnd("leader", op%14 == 7)
				m.end(viewapi.OriginSnapshot, "leader", op%14 == 7)
			case 13:
				s.SnapshotEnd("other", false)
				m.end(viewapi.OriginSnapshot, "other", false)
			case 8:
				s.AuditStart()
				m.start(viewapi.OriginAudit, "")
			case 9, 10:
				s.AuditEnd(op%14 == 10)
				m.end(viewapi.OriginAudit, "", op%14 == 10)
			case 11:
				var buf bytes.Buffer
				if _, err := s.WriteCheckpoint(&buf); err != nil {
					t.Fatalf("checkpoint: %v", err)
				}
				s, _ = newStore(t, Options{})
				if _, err := s.LoadCheckpoint(buf.Bytes()); err != nil {
					t.Fatalf("load checkpoint: %v", err)
				}
				m.restore()
			}
			want := m.state()
			page, err := s.List(context.Background(), "", "", viewapi.RowFilter{}, viewapi.Limit{Entries: 100, Bytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Rows) != len(want) {
				t.Fatalf("op %d (%d): store holds %d rows, model %d (%v)", i, op%14, len(page.Rows), len(want), want)
			}
			for _, r := range page.Rows {
				if got := fmt.Sprintf("%d:%s", r.Index, r.Fields["v"]); want[r.Key] != got {
					t.Fatalf("op %d (%d): key %s = %s, model %q", i, op%14, r.Key, got, want[r.Key])
				}
			}
			checkInvariants(t, s)
			st := s.Stats()
			if st.Stale != m.stale || st.BlindSpotDeletions != m.blind {
				t.Fatalf("op %d: stale %d blind %d, model %d %d", i, st.Stale, st.BlindSpotDeletions, m.stale, m.blind)
			}
		}
	})
}

// checkInvariants checks what the store's structures must agree on whatever it was fed: the
// index holds the rows' keys in order, every row is one the view would accept, no key is both
// a row and a tombstone, the memory estimates are the sums of their parts.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var keys []string
	s.keys.ascend("", false, func(k string) bool { keys = append(keys, k); return true })
	if len(keys) != len(s.rows) || s.keys.n != len(s.rows) {
		t.Fatalf("index holds %d keys (n %d), the view %d rows", len(keys), s.keys.n, len(s.rows))
	}
	bytes, tombMem := 0, 0
	for i, k := range keys {
		if i > 0 && keys[i-1] >= k {
			t.Fatalf("index out of order at %q", k)
		}
		r := s.rows[k]
		if r == nil {
			t.Fatalf("index key %q has no row", k)
		}
		if err := checkRow(s.opts, &viewapi.Row{Key: k, Fields: r.fields}); err != nil {
			t.Fatalf("the view holds a row it would refuse: %v", err)
		}
		if r.bytes != rowBytes(k, r.fields)*2+rowOverhead {
			t.Fatalf("row %q costs %d, want %d", k, r.bytes, rowBytes(k, r.fields)*2+rowOverhead)
		}
		bytes += r.bytes
	}
	live := 0
	for _, ref := range s.tombFIFO {
		if tb, ok := s.tombs[ref.key]; ok && tb.seq == ref.seq {
			live++
		}
	}
	for k := range s.tombs {
		if _, ok := s.rows[k]; ok {
			t.Fatalf("key %q is a row and a tombstone", k)
		}
		tombMem += tombCost(k)
	}
	if live != len(s.tombs) {
		t.Fatalf("%d tombstones, %d of them in the expiry order", len(s.tombs), live)
	}
	if len(s.tombs) > s.opts.MaxRows {
		t.Fatalf("%d tombstones, over max rows %d", len(s.tombs), s.opts.MaxRows)
	}
	if bytes != s.bytes || tombMem != s.tombMem {
		t.Fatalf("memory estimates %d and %d, the parts sum to %d and %d", s.bytes, s.tombMem, bytes, tombMem)
	}
}

// FuzzLoadCheckpoint loads random checkpoints (the trailer made right, so the fuzzer reaches
// the decoder): a refused one leaves the store as it was, a loaded one keeps the invariants
// and survives a second round trip unchanged.
func FuzzLoadCheckpoint(f *testing.F) {
	s, _ := newStore(f, Options{})
	s.Apply(viewapi.OriginSnapshot, []viewapi.Row{put("a", 1, "v", "x", "w", "y"), put("b", 2), put("é", 3, "long", strings.Repeat("z", 300))})
	s.Apply(viewapi.OriginRealtime, []viewapi.Row{del("c", 7), put("d", 3, "v", ""), del("b", 8)})
	s.Apply(viewapi.OriginOnDemand, []viewapi.Row{put("e", 9, "v", "od")})
	var buf bytes.Buffer
	if _, err := s.WriteCheckpoint(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	empty, _ := newStore(f, Options{})
	buf.Reset()
	if _, err := empty.WriteCheckpoint(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > len(checkpointMagic)+12 {
			data = bytes.Clone(data)
			copy(data, checkpointMagic)
			end := len(data) - 12
			binary.LittleEndian.PutUint32(data[end:], crc32.Checksum(data[len(checkpointMagic):end], castagnoli))
			binary.LittleEndian.PutUint64(data[end+4:], uint64(end))
		}
		s, _ := newStore(t, Options{MaxRows: 1000})
		s.Apply(viewapi.OriginRealtime, []viewapi.Row{put("before", 1, "v", "kept")})
		before := state(t, s)
		if _, err := s.LoadCheckpoint(data); err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("refused with %v, not ErrCheckpoint", err)
			}
			if got := state(t, s); got != before {
				t.Fatalf("a refused checkpoint changed the store: %q, was %q", got, before)
			}
			return
		}
		checkInvariants(t, s)
		var again bytes.Buffer
		if _, err := s.WriteCheckpoint(&again); err != nil {
			t.Fatal(err)
		}
		r, _ := newStore(t, Options{MaxRows: 1000})
		if _, err := r.LoadCheckpoint(again.Bytes()); err != nil {
			t.Fatalf("a loaded checkpoint written again is refused: %v", err)
		}
		checkInvariants(t, r)
		if a, b := state(t, s), state(t, r); a != b {
			t.Fatalf("second round trip: %q, first %q", b, a)
		}
		if a, b := s.Stats(), r.Stats(); a.Tombstones != b.Tombstones || a.LastIndex != b.LastIndex || a.Applied != b.Applied {
			t.Fatalf("second round trip stats %+v, first %+v", b, a)
		}
	})
}
