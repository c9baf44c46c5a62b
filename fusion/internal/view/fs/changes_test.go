package fs

import (
	"fmt"
	"path"
	"testing"
	"time"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// loaded ends an empty first snapshot: from then on the view's changes are recorded.
func loaded(t *testing.T, v *View) {
	t.Helper()
	v.SnapshotStart("s")
	apply(t, v, OriginSnapshot, fsbatch.Row{Flags: fsbatch.FlagDir})
	v.SnapshotEnd("s", false)
}

func TestChangeLogRecordsEveryChange(t *testing.T) {
	v, c := newClockedView(t)
	// The first snapshot builds a view nobody can query yet: not recorded.
	v.SnapshotStart("s")
	apply(t, v, OriginSnapshot, fsbatch.Row{Flags: fsbatch.FlagDir}, row("/loaded", 0, 1, 1))
	v.SnapshotEnd("s", false)
	inst, last := v.ChangeCursor()
	if last != 0 || inst == 0 {
		t.Fatalf("a new view's cursor %d/%d", inst, last)
	}
	m := c.now.Add(-2 * time.Minute).UnixNano()
	apply(t, v, OriginRealtime, row("/a/b/f1", 0, 1, m))
	apply(t, v, OriginRealtime, row("/a/b/f1", 0, 2, m))                             // modified
	apply(t, v, OriginRealtime, row("/a/b/f1", 0, 2, m))                             // no change: no record
	apply(t, v, OriginRealtime, row("/a/b/f2", fsbatch.FlagPartialWrite, 3, m))      // created, then suspect
	apply(t, v, OriginAudit, row("/a/c", 0, 4, m))                                   // created by an audit: not known
	apply(t, v, OriginRealtime, row("/a", fsbatch.FlagDelete|fsbatch.FlagDir, 0, 0)) // the subtree goes: one change
	all := v.Changes(0, ChangeFilter{}, 100)
	var got []string
	for i, ch := range all.Changes {
		if ch.Seq != uint64(i+1) {
			t.Fatalf("change %d has sequence %d", i, ch.Seq)
		}
		got = append(got, fmt.Sprintf("%d:%d:%s:%d", ch.Kind, ch.Origin, ch.Entry.Path, ch.Entry.Size))
	}
	want := []string{
		"1:1:/a:0", "1:1:/a/b:0", "1:1:/a/b/f1:1", "2:1:/a/b/f1:2", "1:1:/a/b/f2:3", "4:1:/a/b/f2:3",
		"1:3:/a/c:4", "4:3:/a/c:4", "3:1:/a:0", // the audit found /a/c young (the clock says so): suspect
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes\n%v\nwant\n%v", got, want)
	}
	if !all.Changes[5].Entry.Suspect || all.Changes[6].Entry.KnownByAgent || !all.Changes[8].Entry.IsDir || all.Next != 9 || all.More {
		t.Fatalf("flags or cursor wrong: %+v next %d", all.Changes, all.Next)
	}
	// Under /a/b: its own changes and the deletion of its ancestor; a glob on the basename.
	sub := v.Changes(0, ChangeFilter{Root: "/a/b", Match: func(n string) bool { ok, _ := path.Match("f*", n); return ok }}, 100)
	if len(sub.Changes) != 5 || sub.Changes[4].Kind != ChangeDeleted {
		t.Fatalf("filtered %+v", sub.Changes)
	}
	// Paged: limit and Next.
	p1 := v.Changes(0, ChangeFilter{}, 3)
	p2 := v.Changes(p1.Next, ChangeFilter{}, 100)
	if len(p1.Changes) != 3 || !p1.More || p2.Changes[0].Seq != 4 || len(p2.Changes) != 6 {
		t.Fatalf("pages %+v / %+v", p1, p2)
	}
	// A reset starts a new instance, loading again.
	v.Reset()
	apply(t, v, OriginRealtime, row("/x", 0, 1, 1))
	if inst2, last2 := v.ChangeCursor(); inst2 == inst || last2 != 0 {
		t.Fatalf("after reset %d/%d", inst2, last2)
	}
}

func TestChangeLogIsBounded(t *testing.T) {
	v := New(nil, Options{ChangeLogEntries: 256})
	loaded(t, v)
	for i := range 1000 {
		apply(t, v, OriginRealtime, row(fmt.Sprintf("/d/f%04d", i), 0, 1, 1))
	}
	n, _ := v.ChangeLogStats()
	if n > 256+changeChunk {
		t.Fatalf("%d changes held; bound 256", n)
	}
	page := v.Changes(0, ChangeFilter{}, 10)
	if !page.Lost || len(page.Changes) != 10 || page.Changes[0].Seq < 1001-256-changeChunk {
		t.Fatalf("an old cursor: lost %v, first %d", page.Lost, page.Changes[0].Seq)
	}
	if page.Changes[0].Entry.Path != fmt.Sprintf("/d/f%04d", page.Changes[0].Seq-2) {
		t.Fatalf("change %d is %s", page.Changes[0].Seq, page.Changes[0].Entry.Path)
	}
}

// BenchmarkChangeLogMemory reports the change log's bytes per change when a snapshot of the
// product layout records 1M creations.
func BenchmarkChangeLogMemory(b *testing.B) {
	rows := benchRows(1_000_000)
	for b.Loop() {
		v := New(nil, Options{ChangeLogEntries: 2_000_000, ChangeLogBytes: 1 << 30})
		v.SnapshotStart("s")
		v.SnapshotEnd("s", false) // recorded from now: the rows below are changes of a ready view
		applyAll(b, v, OriginRealtime, rows)
		n, bytes := v.ChangeLogStats()
		b.ReportMetric(float64(bytes)/float64(n), "B/change")
		b.ReportMetric(float64(bytes)/(1<<20)*1e6/float64(n), "MiB/1Mchanges")
	}
}

// TestDeliveryHint: a snapshot or an audit open is a bulk pass whose changes start at
// bulkFrom; a realtime change moves lastLive; the pass's end pings subscribers even when it
// recorded nothing, and so does a realtime change: watchers holding the pass's changes wait on
// Released, not on every batch's ping.
func TestDeliveryHint(t *testing.T) {
	v, c := newClockedView(t)
	loaded(t, v)
	m := c.now.Add(-2 * time.Minute).UnixNano()
	ping := make(chan struct{}, 1)
	defer v.Subscribe(ping)()
	if bulk, _, _ := v.DeliveryHint(); bulk {
		t.Fatal("bulk with no pass open")
	}
	apply(t, v, OriginRealtime, row("/r1", 0, 1, m))
	<-ping
	_, before := v.ChangeCursor()
	v.SnapshotStart("s")
	rel := v.Released()
	apply(t, v, OriginSnapshot, row("/s1", 0, 1, m))
	select {
	case <-rel:
		t.Fatal("a snapshot's change released the holds")
	default:
	}
	bulk, from, live := v.DeliveryHint()
	if !bulk || from != before+1 || live != before {
		t.Fatalf("in a snapshot: bulk %v from %d live %d (last before it %d)", bulk, from, live, before)
	}
	apply(t, v, OriginRealtime, row("/r2", 0, 1, m))
	<-rel // a realtime change releases them
	rel = v.Released()
	if _, _, live := v.DeliveryHint(); live != lastSeq(v) || live <= before+1 {
		t.Fatalf("a realtime change in a snapshot: live %d, want %d", live, lastSeq(v))
	}
	<-ping
	v.SnapshotEnd("s", true) // failed: judges nothing, records nothing
	select {
	case <-rel:
	default:
		t.Fatal("the snapshot's end did not release the holds")
	}
	if bulk, _, _ := v.DeliveryHint(); bulk {
		t.Fatal("bulk after the snapshot's end")
	}
	v.AuditStart()
	if bulk, from, _ := v.DeliveryHint(); !bulk || from != lastSeq(v)+1 {
		t.Fatalf("in an audit: bulk %v from %d", bulk, from)
	}
	v.AuditEnd(true)
	if bulk, _, _ := v.DeliveryHint(); bulk {
		t.Fatal("bulk after the audit's end")
	}
}

func lastSeq(v *View) uint64 {
	_, last := v.ChangeCursor()
	return last
}
