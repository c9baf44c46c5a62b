package pipe

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/state"
)

// cacheSource is a source whose audits fill the cache as a walk would: each audit sets the
// directories of its plan, and fails after them when the plan says so. A fake, because a walk
// that fails half-way (a mount going away mid-audit) cannot be had on demand from a real tree;
// the agent-level tests (agent/internal/app) run the real fs source.
type cacheSource struct {
	plans chan auditPlan
	seen  chan map[string]int64 // the cache as each audit found it: what it would skip
}

type auditPlan struct {
	set  map[string]int64
	fail bool
}

func (c cacheSource) Snapshot(context.Context, string, source.Origin, func([]source.Event) error) (source.WalkStats, error) {
	return source.WalkStats{}, nil
}

func (c cacheSource) Audit(ctx context.Context, cache *source.AuditCache, _ source.AuditOptions, _ func([]source.Event) error) (source.WalkStats, error) {
	var plan auditPlan
	select {
	case plan = <-c.plans:
	case <-ctx.Done():
		return source.WalkStats{}, ctx.Err()
	}
	silent := map[string]int64{}
	var st source.WalkStats
	for k, v := range plan.set {
		st.Dirs++
		if cache.Silent(k, v) {
			silent[k] = v
			st.Silent++
		}
		cache.Set(k, v)
	}
	c.seen <- silent
	if plan.fail {
		return st, errors.New("read /mnt/x: input/output error")
	}
	return st, nil
}

// stateRig runs one leadership's duties on a cacheSource with audits every millisecond.
type stateRig struct {
	p      *Pipe
	src    cacheSource
	cancel context.CancelFunc
	done   chan struct{}
}

func newStateRig(t *testing.T, dir string, save time.Duration, log *zap.Logger) *stateRig {
	src := cacheSource{plans: make(chan auditPlan), seen: make(chan map[string]int64, 16)}
	p := New(log, Config{ID: "p/1", SourceURI: "fs:///mnt/x", BatchSize: 10, AuditInterval: time.Millisecond,
		StateDir: dir, AuditStateSaveInterval: save}, src, nil, nil, nil)
	return &stateRig{p: p, src: src}
}

// start loads the state, as Run does, and runs a leadership.
func (r *stateRig) start(t *testing.T, snapshot bool) {
	r.p.loadState()
	s := &session{p: r.p, out: make(chan outItem, 10_000)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() { defer close(r.done); s.duties(ctx, ctx, snapshot) }()
	t.Cleanup(r.stop)
}

func (r *stateRig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
		r.p.flushState() // as Run does on its way out
	}
}

// audit runs one audit of plan and returns the silent directories it found.
func (r *stateRig) audit(t *testing.T, plan auditPlan) map[string]int64 {
	t.Helper()
	r.src.plans <- plan
	select {
	case s := <-r.src.seen:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("no audit")
	}
	return nil
}

// waitAudits waits until n audits completed (their saves are done by then).
func (r *stateRig) waitAudits(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.p.Status().Audits < n {
		if time.Now().After(deadline) {
			t.Fatalf("audits %d; want %d", r.p.Status().Audits, n)
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting a fixed time
	}
}

func readState(t *testing.T, dir string) state.State {
	t.Helper()
	st, err := state.Read(state.File(dir, "p/1"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestOnlyCompletedAuditsAreSaved: the file holds the cache of the last completed audit — a
// failed audit's half-updated cache is never saved — without the directories that audit did
// not reach; the next run's first leadership starts from it.
func TestOnlyCompletedAuditsAreSaved(t *testing.T) {
	dir := t.TempDir()
	r := newStateRig(t, dir, 0, nil)
	r.start(t, true)
	r.audit(t, auditPlan{set: map[string]int64{"/": 1, "/a": 2, "/b": 3}})
	r.waitAudits(t, 1)
	if st := readState(t, dir); !maps.Equal(st.Dirs, map[string]int64{"/": 1, "/a": 2, "/b": 3}) || st.Source != "fs:///mnt/x" {
		t.Fatalf("after a completed audit: %+v", st)
	}
	r.audit(t, auditPlan{set: map[string]int64{"/a": 20}, fail: true})
	r.audit(t, auditPlan{set: map[string]int64{"/": 1, "/a": 21}}) // /b gone
	r.waitAudits(t, 2)
	r.stop()
	saved := readState(t, dir)
	if want := map[string]int64{"/": 1, "/a": 21}; !maps.Equal(saved.Dirs, want) {
		t.Fatalf("saved %v; want %v (the failed audit's /a=20 never, /b dropped)", saved.Dirs, want)
	}
	if saved.Cycle != 3 {
		t.Fatalf("saved cycle %d; want 3", saved.Cycle)
	}

	// The next run: its first audit skips what did not change.
	r2 := newStateRig(t, dir, 0, nil)
	r2.start(t, true)
	if silent := r2.audit(t, auditPlan{set: map[string]int64{"/": 1, "/a": 22}}); !maps.Equal(silent, map[string]int64{"/": 1}) {
		t.Fatalf("first audit after restart found %v silent; want only /", silent)
	}
	if st := r2.p.Status(); st.AuditStateRestores != 1 || r2.p.auditCycle.Load() != 4 {
		t.Fatalf("restores %d, cycle %d; want 1 and 4 (the count goes on)", st.AuditStateRestores, r2.p.auditCycle.Load())
	}
}

// TestSavedCacheNeedsACompletedSnapshot: a leadership whose snapshot did not run (or failed)
// does not trust the saved cache: its first audit is a full one.
func TestSavedCacheNeedsACompletedSnapshot(t *testing.T) {
	dir := t.TempDir()
	if err := state.Write(state.File(dir, "p/1"), state.State{Source: "fs:///mnt/x", Dirs: map[string]int64{"/": 1}}); err != nil {
		t.Fatal(err)
	}
	r := newStateRig(t, dir, 0, nil)
	r.start(t, false)
	if silent := r.audit(t, auditPlan{set: map[string]int64{"/": 1}}); len(silent) != 0 {
		t.Fatalf("silent %v; want a full audit", silent)
	}
}

// TestSavedCacheMustPredateTheSnapshot: a cache written after the snapshot started (another
// agent on the same state_dir, a clock gone back) could hide a change the snapshot missed.
func TestSavedCacheMustPredateTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	later := time.Now().Add(time.Hour)
	if err := state.Write(state.File(dir, "p/1"), state.State{Source: "fs:///mnt/x", WrittenAt: later, Dirs: map[string]int64{"/": 1}}); err != nil {
		t.Fatal(err)
	}
	r := newStateRig(t, dir, 0, nil)
	r.start(t, true)
	if silent := r.audit(t, auditPlan{set: map[string]int64{"/": 1}}); len(silent) != 0 {
		t.Fatalf("silent %v; want a full audit", silent)
	}
	if st := r.p.Status(); st.AuditStateRestores != 0 {
		t.Fatalf("restores %d", st.AuditStateRestores)
	}
}

// TestSaveIntervalHoldsBackAndStopFlushes: with a save interval, audits inside it are not
// saved until it has passed or the pipe stops.
func TestSaveIntervalHoldsBackAndStopFlushes(t *testing.T) {
	dir := t.TempDir()
	r := newStateRig(t, dir, time.Hour, nil)
	r.start(t, true)
	r.audit(t, auditPlan{set: map[string]int64{"/": 1}})
	r.waitAudits(t, 1)
	r.audit(t, auditPlan{set: map[string]int64{"/": 2}})
	r.waitAudits(t, 2)
	if st := r.p.Status(); st.AuditStateSaves != 1 {
		t.Fatalf("saves %d; want 1 (the first audit; the second is inside the hour)", st.AuditStateSaves)
	}
	r.stop()
	if st := readState(t, dir); st.Dirs["/"] != 2 || r.p.Status().AuditStateSaves != 2 {
		t.Fatalf("after the stop: %v, saves %d; want the last audit's cache", st.Dirs, r.p.Status().AuditStateSaves)
	}
}

// TestDamagedStateFilesAreRefused: a flipped byte, a file truncated at half, an empty file and
// a future version are each refused: moved aside (kept), counted, logged with stable keys, and
// the pipe starts with an empty cache. A cache of another source is ignored, not refused.
func TestDamagedStateFilesAreRefused(t *testing.T) {
	good := state.Encode(state.State{Source: "fs:///mnt/x", Cycle: 7, Dirs: map[string]int64{"/": 1, "/a": 2, "/a/b": 3}})
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	future := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(future[8:], state.Version+1)
	for _, c := range []struct {
		name string
		data []byte
	}{{"one flipped byte", flipped}, {"truncated at half", good[:len(good)/2]}, {"zero length", []byte{}}, {"a future version", future}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := state.File(dir, "p/1")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.InfoLevel)
			r := newStateRig(t, dir, 0, zap.New(core))
			r.start(t, true)
			if silent := r.audit(t, auditPlan{set: map[string]int64{"/": 1, "/a": 2}}); len(silent) != 0 {
				t.Fatalf("silent %v; want a full audit", silent)
			}
			if st := r.p.Status(); st.AuditStateRefused != 1 || st.AuditStateRestores != 0 {
				t.Fatalf("refused %d, restores %d; want 1 and 0", st.AuditStateRefused, st.AuditStateRestores)
			}
			aside, _ := filepath.Glob(path + ".refused-*")
			if len(aside) != 1 {
				t.Fatalf("moved aside: %v", aside)
			}
			if b, err := os.ReadFile(aside[0]); err != nil || string(b) != string(c.data) {
				t.Fatalf("the refused file was not kept as it was: %v", err)
			}
			entries := logs.FilterMessage(MsgAuditStateRefused).All()
			if len(entries) != 1 {
				t.Fatalf("refusal logged %d times", len(entries))
			}
			f := entries[0].ContextMap()
			if f["path"] != path || f["moved_to"] != aside[0] || f["pipe"] != "p/1" || !strings.Contains(f["error"].(string), "decode audit state") {
				t.Fatalf("refusal log fields %v", f)
			}
			// The next completed audit saves a good file in its place.
			r.waitAudits(t, 1)
			if st := readState(t, dir); len(st.Dirs) != 2 {
				t.Fatalf("state after the refusal: %v", st.Dirs)
			}
		})
	}
	t.Run("another source", func(t *testing.T) {
		dir := t.TempDir()
		other := state.Encode(state.State{Source: "fs:///mnt/y", Dirs: map[string]int64{"/": 1}})
		if err := os.WriteFile(state.File(dir, "p/1"), other, 0o600); err != nil {
			t.Fatal(err)
		}
		r := newStateRig(t, dir, 0, nil)
		r.start(t, true)
		if silent := r.audit(t, auditPlan{set: map[string]int64{"/": 1}}); len(silent) != 0 {
			t.Fatalf("silent %v: a cache of another tree was used", silent)
		}
		if st := r.p.Status(); st.AuditStateRefused != 0 {
			t.Fatalf("refused %d; another source's cache is ignored, not refused", st.AuditStateRefused)
		}
	})
}
