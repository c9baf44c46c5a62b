package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// realtime sends files as one realtime batch and waits for its ack.
func (a *agent) realtime(t *testing.T, files map[string]uint64, mtime time.Time) {
	t.Helper()
	for p, size := range files {
		a.enc.Add(p, 0, size, mtime.UnixNano(), 1, 0)
	}
	b, idx := a.enc.Flush()
	if ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, b, idx); ack.GetRowsApplied() != uint32(len(files)) {
		t.Fatalf("realtime ack %+v", ack)
	}
}

// TestWatchAndListChanges: a watcher gets every change in order, resumes from its cursor
// without gaps or duplicates, and a cursor of a reset view is a fresh instance.
func TestWatchAndListChanges(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/base": 1})
	q, ctx := h.views(), withKey("demo-key")
	old := time.Now().Add(-time.Hour)

	wctx, cancel := context.WithCancel(ctx)
	w, err := q.Watch(wctx, &fustorv1.WatchRequest{View: "demo", Path: "/up"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetCursor() == "" || first.GetMeta().GetView() != "demo" {
		t.Fatalf("first message %v, %v", first, err)
	}
	a.realtime(t, map[string]uint64{"/up/f1": 1, "/elsewhere/x": 1}, old)
	var seen []string
	var cur string
	for len(seen) < 2 { // /up created (implied) and /up/f1
		m, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range m.GetChanges() {
			seen = append(seen, fmt.Sprintf("%s:%s", c.GetKind(), c.GetPath()))
		}
		cur = m.GetCursor()
	}
	cancel()
	if fmt.Sprint(seen) != "[CHANGE_KIND_CREATED:/up CHANGE_KIND_CREATED:/up/f1]" {
		t.Fatalf("watched %v", seen)
	}
	// While nobody watches: a modification and a new file; resuming gets exactly those.
	a.realtime(t, map[string]uint64{"/up/f1": 2}, old)
	a.realtime(t, map[string]uint64{"/up/f2": 3}, old)
	page, err := q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/up", Since: cur})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range page.GetChanges() {
		got = append(got, fmt.Sprintf("%s:%s:%d", c.GetKind(), c.GetPath(), c.GetEntry().GetSize()))
	}
	if fmt.Sprint(got) != "[CHANGE_KIND_MODIFIED:/up/f1:2 CHANGE_KIND_CREATED:/up/f2:3]" || page.GetFreshInstance() || page.GetCursorLost() {
		t.Fatalf("changes since the cursor: %v (%v)", got, page)
	}
	again, err := q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/up", Since: page.GetCursor()})
	if err != nil || len(again.GetChanges()) != 0 {
		t.Fatalf("no change after the last cursor: %v, %v", again.GetChanges(), err)
	}
	// The last session ends: the view keeps its tree and its change log (stale), so the cursor
	// stays good, and the next leader's snapshot reconciles it: what it did not report is a
	// deletion in the feed.
	a.cancel()
	if _, err := h.session().CloseSession(withKey("demo-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: a.id}); err != nil {
		t.Fatal(err)
	}
	b := h.connect(t)
	b.fullSnapshot(t, map[string]uint64{"/base": 1, "/up/f1": 2, "/elsewhere/x": 1})
	after, err := q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/up", Since: page.GetCursor()})
	if err != nil || after.GetFreshInstance() || after.GetCursorLost() {
		t.Fatalf("a cursor from before the last session ended: %v, %v", after, err)
	}
	deleted := false
	for _, c := range after.GetChanges() {
		deleted = deleted || (c.GetKind() == fustorv1.ChangeKind_CHANGE_KIND_DELETED && c.GetPath() == "/up/f2")
	}
	if !deleted {
		t.Fatalf("the reconciling snapshot's deletion of /up/f2 is not in the feed: %v", after.GetChanges())
	}
	// Another Fusion (no checkpoint of this one): an old cursor is a fresh instance.
	h2 := start(t, nil)
	c := h2.connect(t)
	c.snapshot(t, map[string]uint64{"/base": 1})
	reset, err := h2.views().ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Since: page.GetCursor()})
	if err != nil || !reset.GetFreshInstance() || len(reset.GetChanges()) != 0 {
		t.Fatalf("a cursor of another instance: %v, %v", reset, err)
	}
}

// TestWaitStable: it returns once the subtree has no suspect and no change for the quiet
// period, and at the deadline with the reason otherwise.
func TestWaitStable(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/base": 1})
	q, ctx := h.views(), withKey("demo-key")
	// Nothing under /sub yet and min_files 2: not stable before the deadline.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := q.WaitStable(short, &fustorv1.WaitStableRequest{View: "demo", Path: "/sub", Quiet: durationpb.New(50 * time.Millisecond), MinFiles: 2})
	if err != nil || resp.GetStable() || resp.GetFiles() != 0 {
		t.Fatalf("empty subtree: %v, %v", resp, err)
	}
	done := make(chan *fustorv1.WaitStableResponse, 1)
	go func() {
		r, err := q.WaitStable(ctx, &fustorv1.WaitStableRequest{View: "demo", Path: "/sub", Quiet: durationpb.New(300 * time.Millisecond), MinFiles: 2})
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		done <- r
	}()
	old := time.Now().Add(-time.Hour)
	a.realtime(t, map[string]uint64{"/sub/a": 1}, old)
	wrote := time.Now()
	a.realtime(t, map[string]uint64{"/sub/b": 1}, old)
	r := <-done
	if !r.GetStable() || r.GetFiles() != 2 || time.Since(wrote) < 300*time.Millisecond {
		t.Fatalf("stable %v after %v with %d files", r.GetStable(), time.Since(wrote), r.GetFiles())
	}
}

// TestWatchHoldsAnOpenSnapshotsChanges: while a snapshot is applied its changes are held, a
// realtime change is not (it brings the held ones with it, in order), the pass's end sends
// the rest, and a short watch_max_hold sends held changes before the end. Every change comes
// exactly once, in sequence order.
func TestWatchHoldsAnOpenSnapshotsChanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		hold time.Duration
	}{{"until-the-end", time.Hour}, {"max-hold", 20 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, func(c *config.Config) {
				v := c.Views["demo"]
				v.WatchMaxHold = tc.hold
				c.Views["demo"] = v
			})
			a := h.connect(t)
			a.snapshot(t, map[string]uint64{"/base": 1})
			wctx, cancel := context.WithCancel(withKey("demo-key"))
			defer cancel()
			w, err := h.views().Watch(wctx, &fustorv1.WatchRequest{View: "demo", Path: "/"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Recv(); err != nil {
				t.Fatal(err)
			}
			msgs := make(chan *fustorv1.WatchResponse, 64)
			go func() {
				defer close(msgs)
				for {
					m, err := w.Recv()
					if err != nil {
						return
					}
					if len(m.GetChanges()) > 0 {
						msgs <- m
					}
				}
			}()
			if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
				t.Fatal(err)
			}
			a.ack(t)
			mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range 3 {
				a.enc.Add(fmt.Sprintf("/snap/f%d", i), 0, 1, mtime.UnixNano(), 1, 0)
			}
			b, idx := a.enc.Flush()
			a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
			var got []*fustorv1.Change
			if tc.hold < time.Minute {
				// Held no longer than watch_max_hold, though the snapshot is still open.
				for len(got) < 4 { // /snap and its three files
					got = append(got, (<-msgs).GetChanges()...)
				}
			}
			a.realtime(t, map[string]uint64{"/live/x": 1}, mtime)
			if tc.hold > time.Minute {
				// Nothing came before the realtime change: its message carries the held ones.
				m := <-msgs
				got = append(got, m.GetChanges()...)
				if last := m.GetChanges()[len(m.GetChanges())-1]; last.GetPath() != "/live/x" {
					t.Fatalf("the first message ends with %s, not the realtime change (held changes came alone)", last.GetPath())
				}
			}
			a.enc.Add("/snap/late", 0, 1, mtime.UnixNano(), 1, 0)
			b, idx = a.enc.Flush()
			a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
			if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
				t.Fatal(err)
			}
			a.ack(t)
			for len(got) < 8 { // and the flag SnapshotEnd sets on /snap/late (suspect)
				m, ok := <-msgs
				if !ok {
					t.Fatal("the watch ended")
				}
				got = append(got, m.GetChanges()...)
			}
			var paths []string
			for i, c := range got {
				if i > 0 && c.GetSequence() != got[i-1].GetSequence()+1 {
					t.Fatalf("sequence %d after %d: %v", c.GetSequence(), got[i-1].GetSequence(), got)
				}
				paths = append(paths, strings.TrimPrefix(c.GetKind().String(), "CHANGE_KIND_")+":"+c.GetPath())
			}
			want := "[CREATED:/snap CREATED:/snap/f0 CREATED:/snap/f1 CREATED:/snap/f2 CREATED:/live CREATED:/live/x CREATED:/snap/late FLAGS:/snap/late]"
			if fmt.Sprint(paths) != want {
				t.Fatalf("watched %v, want %s", paths, want)
			}
		})
	}
}
