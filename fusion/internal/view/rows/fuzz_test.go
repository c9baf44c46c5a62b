package rows

import (
	"bytes"
	"context"
	"fmt"
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
			st := s.Stats()
			if st.Stale != m.stale || st.BlindSpotDeletions != m.blind {
				t.Fatalf("op %d: stale %d blind %d, model %d %d", i, st.Stale, st.BlindSpotDeletions, m.stale, m.blind)
			}
		}
	})
}
