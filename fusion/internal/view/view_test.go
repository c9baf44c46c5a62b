package view

import (
	"errors"
	"strings"
	"testing"

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
	return NewRegistry(nil, cfg, nil)
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
func wantNotReady(t *testing.T, v *View, why string) {
	t.Helper()
	err := v.Ready()
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, errs.ErrUnavailable) || !strings.Contains(err.Error(), why) {
		t.Fatalf("Ready() = %v; want not ready because %q", err, why)
	}
}

func TestReadinessStates(t *testing.T) {
	v := mustGet(t, newRegistry(t, "v"), "v")
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

	// The last session ended: no leader, and the view answers UNAVAILABLE again.
	v.SetLeader("")
	wantNotReady(t, v, "no leader session")
}

func TestResetDropsDataAndCompleteness(t *testing.T) {
	v := mustGet(t, newRegistry(t, "v"), "v")
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
		if _, ok := v.Driver.(*fs.View); !ok {
			t.Errorf("view %s: driver %T; want the fs view", v.Name, v.Driver)
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
	a, b := mustGet(t, r, "a"), mustGet(t, r, "b")
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
	v := mustGet(t, newRegistry(t, "v"), "v")
	if _, _, err := v.Driver.Apply(OriginRealtime, 0, []fsbatch.Row{{Name: "f"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Driver.Stat("/missing"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("Stat(missing) = %v; want kind not found", err)
	}
	if _, _, err := v.Driver.List("/f", 1, "", 10); !errors.Is(err, errs.ErrNotDir) || !errors.Is(err, errs.ErrPrecondition) {
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
