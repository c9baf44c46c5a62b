package pipe

import (
	"strings"
	"testing"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
)

// A rows view's member is fed generic rows and walk boundaries through its RowsDriver; the
// fs-only items (sentinel feedback, verify rows, ticks) leave it alone without a nil Driver
// ever being called.
func TestPipeFeedsARowsView(t *testing.T) {
	reg := view.NewRegistry(nil, config.Config{Views: map[string]config.View{"subs": {Driver: config.DriverRows, Schema: "submissions"}}}, nil)
	v, _ := reg.Get("subs")
	m, _ := v.Member("")
	p := New(nil, "p", []*view.View{v}, 4)
	leader, follower := &session.Session{ID: "l"}, &session.Session{ID: "f"}
	m.SetLeader("l")
	batch := func(s *session.Session, o view.Origin, rows ...view.Row) Result {
		var idx uint64
		for _, r := range rows {
			idx = max(idx, r.Index)
		}
		return p.apply(&Item{Session: s, Kind: KindBatch, Origin: o, Schema: "submissions", Generic: rows, MaxIndex: idx})
	}
	p.apply(&Item{Session: leader, Kind: KindSnapshotStart})
	// Walk rows carry their own cursors and never commit: the source resumes realtime from
	// the committed index, and a walk can read a row realtime has not sent yet.
	if r := batch(leader, view.OriginSnapshot, view.Row{Key: "a", Index: 1}, view.Row{Key: "b", Index: 9}, view.Row{Key: "", Index: 1}); r.Applied != 2 || r.Rejected != 1 || r.Committed != 0 {
		t.Fatalf("leader's snapshot rows: %+v", r)
	}
	if r := batch(follower, view.OriginSnapshot, view.Row{Key: "c", Index: 2}); r.Rejected != 1 || !strings.Contains(r.Err.Error(), "leads no view") {
		t.Fatalf("follower's snapshot rows: %+v", r)
	}
	if r := batch(follower, view.OriginRealtime, view.Row{Key: "d", Index: 3}); r.Applied != 1 || r.Committed != 3 {
		t.Fatalf("follower's realtime rows: %+v", r)
	}
	p.apply(&Item{Session: leader, Kind: KindSnapshotEnd})
	if err := m.Ready(); err != nil {
		t.Fatalf("the leader's snapshot end did not make the rows view ready: %v", err)
	}
	p.apply(&Item{Session: leader, Kind: KindAuditStart})
	batch(leader, view.OriginAudit, view.Row{Key: "a", Index: 4})
	p.apply(&Item{Session: leader, Kind: KindAuditEnd})
	if m.Len() != 1 || m.Rows.Stats().BlindSpotDeletions != 2 {
		t.Fatalf("after the audit: %d rows, %+v", m.Len(), m.Rows.Stats())
	}
	// fs items on a rows view: nothing happens, nothing panics.
	p.apply(&Item{Session: leader, Kind: KindSentinel, Sentinel: []view.SentinelItem{{Path: "/a"}}})
	p.apply(&Item{Session: leader, Kind: KindVerify, View: "subs"})
	p.tick()
	if r := p.apply(&Item{Session: leader, Kind: KindBatch, Origin: view.OriginRealtime, Schema: "fs"}); r.Err == nil {
		t.Fatalf("an fs batch on a rows pipe: %+v", r)
	}
	if st := p.Stats(); st.Panics != 0 {
		t.Fatalf("%d panics", st.Panics)
	}
}
