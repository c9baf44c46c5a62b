package view

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view/fs"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newRegistry(t *testing.T, names ...string) *Registry {
	t.Helper()
	cfg := map[string]config.View{}
	for _, n := range names {
		cfg[n] = config.View{Driver: "fs", Schema: "fs"}
	}
	return NewRegistry(nil, config.Config{Views: cfg}, nil)
}

// member returns the only member of an fs view.
func member(t *testing.T, r *Registry, name string) *Member {
	t.Helper()
	m, err := mustGet(t, r, name).Member("")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustGet(t *testing.T, r *Registry, name string) *View {
	t.Helper()
	v, err := r.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantNotReady checks that Ready refuses with a message containing why.
func wantNotReady(t *testing.T, v interface{ Ready() error }, why string) {
	t.Helper()
	err := v.Ready()
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, errs.ErrUnavailable) || !strings.Contains(err.Error(), why) {
		t.Fatalf("Ready() = %v; want not ready because %q", err, why)
	}
}

func TestReadinessStates(t *testing.T) {
	v := member(t, newRegistry(t, "v"), "v")
	wantNotReady(t, v, "no leader session")

	v.SetLeader("s1")
	wantNotReady(t, v, "waiting for its leader's first snapshot")

	// Only the leader's snapshot makes the view ready: a follower's end is not evidence.
	v.SnapshotEnded("s2")
	wantNotReady(t, v, "waiting for its leader's first snapshot")

	v.SnapshotEnded("s1")
	if err := v.Ready(); err != nil {
		t.Fatalf("after the leader's snapshot: %v", err)
	}
	if st := v.State(); st.Leader != "s1" || !st.SnapshotComplete {
		t.Fatalf("state %+v", st)
	}

	// A failover keeps the view complete: the old leader's data stays until the new one's
	// snapshot refreshes it.
	v.SetLeader("s2")
	if err := v.Ready(); err != nil {
		t.Fatalf("after a failover: %v", err)
	}

	// The last session ended: no leader; the view keeps its tree and answers, stale since
	// then (DESIGN.md §5.1), until a leader's snapshot ends.
	v.SetLeader("")
	at := time.Unix(1_800_000_000, 0)
	v.MarkStale(at)
	if err := v.Ready(); err != nil {
		t.Fatalf("stale: %v", err)
	}
	if st := v.State(); !st.StaleSince.Equal(at) || st.Leader != "" {
		t.Fatalf("stale state %+v", st)
	}
	v.SetLeader("s3")
	if st := v.State(); st.StaleSince.IsZero() {
		t.Fatal("a new leader cleared stale before its snapshot ended")
	}
	v.SnapshotEnded("s3")
	if st := v.State(); !st.StaleSince.IsZero() {
		t.Fatal("still stale after the new leader's snapshot")
	}
	// A member that never completed a snapshot is never stale-ready: no empty tree presented
	// as ready.
	w := member(t, newRegistry(t, "w"), "w")
	w.MarkStale(at)
	wantNotReady(t, w, "no leader session")
	// A restored member answers until its leader's snapshot ends.
	w.Restored(at)
	if err := w.Ready(); err != nil {
		t.Fatalf("restored: %v", err)
	}
	w.SetLeader("s4")
	w.SnapshotEnded("s4")
	if st := w.State(); !st.RestoredAt.IsZero() || !st.SnapshotComplete {
		t.Fatalf("after the leader's snapshot: %+v", st)
	}
}

func TestResetDropsDataAndCompleteness(t *testing.T) {
	v := member(t, newRegistry(t, "v"), "v")
	v.SetLeader("s1")
	if _, rej, err := v.Driver.Apply(OriginSnapshot, 0, []fsbatch.Row{{Name: "a", Size: 3}}); rej != 0 || err != nil {
		t.Fatalf("apply: %d rejected, %v", rej, err)
	}
	v.SnapshotEnded("s1")
	if v.Driver.Len() != 1 {
		t.Fatalf("Len = %d; want 1", v.Driver.Len())
	}
	v.Reset()
	if v.Driver.Len() != 0 {
		t.Fatalf("Len after Reset = %d; want 0", v.Driver.Len())
	}
	wantNotReady(t, v, "waiting for its leader's first snapshot")
}

func TestRegistry(t *testing.T) {
	r := newRegistry(t, "b", "a", "c")
	var names []string
	for _, v := range r.All() {
		names = append(names, v.Name)
		if v.Cfg.Driver != "fs" {
			t.Errorf("view %s: config not kept: %+v", v.Name, v.Cfg)
		}
		if ms := v.Members(); len(ms) != 1 || ms[0].Name != "" || v.IsForest() {
			t.Errorf("view %s: members %v; want one, unnamed", v.Name, v.MemberNames())
		} else if _, ok := ms[0].Driver.(*fs.View); !ok {
			t.Errorf("view %s: driver %T; want the fs view", v.Name, ms[0].Driver)
		}
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("All() = %v; want sorted by name", names)
	}
	_, err := r.Get("nope")
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, errs.ErrNotFound) || !strings.Contains(err.Error(), `view not found: "nope"`) {
		t.Fatalf("Get(unknown) = %v", err)
	}
	// Views never share a driver.
	a, b := member(t, r, "a"), member(t, r, "b")
	if _, _, err := a.Driver.Apply(OriginRealtime, 0, []fsbatch.Row{{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	if a.Driver.Len() != 1 || b.Driver.Len() != 0 {
		t.Fatalf("lens %d, %d; want 1, 0", a.Driver.Len(), b.Driver.Len())
	}
}

// The errors a driver returns through the interface are of errs' kinds, which is all the
// server maps.
func TestDriverErrorsHaveKinds(t *testing.T) {
	v := member(t, newRegistry(t, "v"), "v")
	if _, _, err := v.Driver.Apply(OriginRealtime, 0, []fsbatch.Row{{Name: "f"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Driver.Stat("/missing"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("Stat(missing) = %v; want kind not found", err)
	}
	if _, _, err := v.Driver.List(context.Background(), "/f", 1, "", Limit{Entries: 10}); !errors.Is(err, errs.ErrNotDir) || !errors.Is(err, errs.ErrPrecondition) {
		t.Errorf("List(file) = %v; want not a directory", err)
	}
	if err := v.Driver.VerifyStart("c1", "/", 10, false); err != nil {
		t.Fatal(err)
	}
	if err := v.Driver.VerifyStart("c2", "/", 10, false); !errors.Is(err, errs.ErrVerifyRunning) || !errors.Is(err, errs.ErrAborted) {
		t.Errorf("second VerifyStart = %v; want verify running", err)
	}
	v.Driver.VerifyAbort("c1")
	if !errors.Is(fs.ErrFull, errs.ErrFull) || fs.ErrNotFound.Error() != "path not found" || ErrNotReady.Error() != "view not ready" {
		t.Error("sentinels lost their kind or message")
	}
}

// forestConfig is a forest view "all" fed by pipes p1 (labelled storage-1) and p2, and an fs
// view "fs1" fed by p1 too.
func forestConfig() config.Config {
	c := config.Config{
		Pipes: map[string]config.Pipe{"p1": {Views: []string{"fs1", "all"}}, "p2": {Views: []string{"all"}}},
		Views: map[string]config.View{"fs1": {Driver: config.DriverFS, Schema: "fs"},
			"all": {Driver: config.DriverForestFS, Schema: "fs", Members: map[string]string{"p1": "storage-1"}}},
	}
	return c
}

func TestForestMembers(t *testing.T) {
	r := NewRegistry(nil, forestConfig(), nil)
	all := mustGet(t, r, "all")
	if !all.IsForest() || strings.Join(all.MemberNames(), ",") != "p2,storage-1" {
		t.Fatalf("forest members %v", all.MemberNames())
	}
	s1, s2 := all.MemberOf("p1"), all.MemberOf("p2")
	if s1 == nil || s2 == nil || s1.Name != "storage-1" || s2.Name != "p2" || all.MemberOf("p3") != nil {
		t.Fatal("MemberOf maps pipes to their members")
	}
	if s1.Key() != "all/storage-1" || member(t, r, "fs1").Key() != "fs1" {
		t.Fatalf("keys %q, %q", s1.Key(), member(t, r, "fs1").Key())
	}
	if m, ok := r.ByKey("all/p2"); !ok || m != s2 {
		t.Fatal("ByKey")
	}
	for _, tt := range []struct {
		view, member string
		kind         error
	}{
		{"all", "", errs.ErrInvalidArgument},
		{"all", "nope", errs.ErrNotFound},
		{"fs1", "storage-1", errs.ErrInvalidArgument},
	} {
		if _, err := mustGet(t, r, tt.view).Member(tt.member); !errors.Is(err, tt.kind) {
			t.Errorf("Member(%s, %q) = %v; want kind %v", tt.view, tt.member, err, tt.kind)
		}
	}
	// Members never share a tree, and readiness is per member: one ready member makes the
	// forest answer.
	if _, _, err := s1.Driver.Apply(OriginRealtime, 0, []fsbatch.Row{{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	if s1.Driver.Len() != 1 || s2.Driver.Len() != 0 || member(t, r, "fs1").Driver.Len() != 0 || all.Len() != 1 {
		t.Fatal("members share a tree")
	}
	wantNotReady(t, all, "no member of view")
	s2.SetLeader("a")
	s2.SnapshotEnded("a")
	if err := all.Ready(); err != nil || s1.Ready() == nil {
		t.Fatalf("forest ready %v, storage-1 ready %v", err, s1.Ready())
	}
	wantNotReady(t, s1, `member "storage-1" of view "all" has no leader session`)
}

// Apply (a reload) keeps every tree it can: an unchanged or re-limited view keeps its member,
// a forest keeps the members of pipes still feeding it, a driver change rebuilds the view.
func TestApplyKeepsTrees(t *testing.T) {
	cfg := forestConfig()
	r := NewRegistry(nil, cfg, nil)
	fs1, s1 := member(t, r, "fs1"), mustGet(t, r, "all").MemberOf("p1")
	if _, _, err := fs1.Driver.Apply(OriginRealtime, 0, []fsbatch.Row{{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	fs1.SetLeader("s")

	next := forestConfig()
	next.Pipes["p3"] = config.Pipe{Views: []string{"all"}}
	delete(next.Pipes, "p2")
	v := next.Views["fs1"]
	v.HotThreshold = 7 * time.Second
	next.Views["fs1"] = v
	next.Views["new"] = config.View{Driver: config.DriverFS, Schema: "fs"}
	ch := r.Apply(next)
	if strings.Join(ch.Added, ",") != "new" || strings.Join(ch.Changed, ",") != "all,fs1" || len(ch.Removed) != 0 {
		t.Fatalf("changes %+v", ch)
	}
	for _, want := range []string{"view changed: fs1 (hot_threshold 0s -> 7s)", "member added: all/p3", "member removed: all/p2", "view added: new"} {
		if !slices.Contains(ch.Details, want) {
			t.Errorf("details %q lack %q", ch.Details, want)
		}
	}
	if member(t, r, "fs1") != fs1 || fs1.Driver.Len() != 1 || fs1.State().Leader != "s" {
		t.Fatal("fs1 lost its tree or its leader")
	}
	all := mustGet(t, r, "all")
	if all.MemberOf("p1") != s1 || strings.Join(all.MemberNames(), ",") != "p3,storage-1" {
		t.Fatalf("forest members %v", all.MemberNames())
	}
	if _, ok := r.ByKey("all/p2"); ok {
		t.Fatal("the removed member's key is still known")
	}

	// Another driver: rebuilt, empty.
	next.Views["fs1"] = config.View{Driver: config.DriverForestFS, Schema: "fs"}
	if ch := r.Apply(next); !slices.Contains(ch.Changed, "fs1") || !strings.Contains(strings.Join(ch.Details, "\n"), "view rebuilt: fs1") {
		t.Fatalf("driver change: %+v", ch)
	}
	if v := mustGet(t, r, "fs1"); !v.IsForest() || v.Len() != 0 {
		t.Fatal("fs1 not rebuilt as a forest")
	}
}
