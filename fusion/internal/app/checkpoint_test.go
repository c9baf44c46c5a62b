package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

func TestRestartAnswersFromTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	state := func(c *config.Config) { c.Server.StateDir = dir }
	h := start(t, state)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/keep/a": 1, "/keep/b": 2, "/gone/c": 3})
	// Checkpoint on demand.
	resp, err := fustorv1.NewAdminServiceClient(h.conn).Checkpoint(withKey("demo-key"), &fustorv1.CheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetCheckpoints()) != 1 || resp.GetCheckpoints()[0].GetNodes() != 5 || resp.GetCheckpoints()[0].GetError() != "" {
		t.Fatalf("checkpoint: %v", resp)
	}
	a.cancel()
	h.stop() // and a graceful stop writes it again

	h2 := start(t, state)
	q, ctx := h2.views(), withKey("demo-key")
	// No agent: the checkpoint answers, flagged restored.
	st, err := q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/keep/b"})
	if err != nil {
		t.Fatalf("stat after the restart: %v", err)
	}
	if st.GetEntry().GetSize() != 2 || !st.GetMeta().GetRestored() || st.GetMeta().GetCheckpointTime() == nil {
		t.Fatalf("stat after the restart: %v", st)
	}
	// The agent comes back; its snapshot reconciles (c was deleted, d created meanwhile) and
	// confirms the tree: the flag clears.
	a2 := h2.connect(t)
	a2.fullSnapshot(t, map[string]uint64{"/keep/a": 1, "/keep/b": 2, "/keep/d": 4})
	got := map[string]uint64{}
	list, err := q.ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: "demo", Path: "/", MaxDepth: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.GetEntries() {
		if !e.GetIsDir() {
			got[e.GetPath()] = e.GetSize()
		}
	}
	if want := map[string]uint64{"/keep/a": 1, "/keep/b": 2, "/keep/d": 4}; !mapsEqual(got, want) || list.GetMeta().GetRestored() {
		t.Fatalf("after the agent's snapshot: %v restored=%v; want %v, not restored", got, list.GetMeta().GetRestored(), want)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestABadCheckpointIsRefusedAndMovedAside(t *testing.T) {
	good := t.TempDir()
	h := start(t, func(c *config.Config) { c.Server.StateDir = good })
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/f": 1})
	a.cancel()
	h.stop()
	data, err := os.ReadFile(filepath.Join(good, "demo.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 1
	future := append([]byte(nil), data...)
	future[8] = 9 // the format version (its checksum is then wrong too: either refuses it)
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"one flipped byte", flipped},
		{"truncated at half", data[:len(data)/2]},
		{"zero length", nil},
		{"another version", future},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "demo.ckpt")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			h := start(t, func(c *config.Config) { c.Server.StateDir = dir })
			// The view starts empty: not ready until an agent's snapshot, never half a tree.
			_, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/"})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stat with a refused checkpoint: %v; want Unavailable", err)
			}
			if h.f.ckpt.refused.Load() != 1 {
				t.Fatalf("refused counted %d", h.f.ckpt.refused.Load())
			}
			names, _ := filepath.Glob(filepath.Join(dir, "demo.ckpt.refused-*"))
			if _, err := os.Stat(path); !os.IsNotExist(err) || len(names) != 1 {
				t.Fatalf("the refused file was not moved aside: %v, %v", names, err)
			}
			if kept, _ := os.ReadFile(names[0]); string(kept) != string(tt.data) {
				t.Fatal("the file moved aside is not the one refused")
			}
			// The agent rebuilds it.
			a := h.connect(t)
			a.snapshot(t, map[string]uint64{"/g": 2})
			if st, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/g"}); err != nil || st.GetEntry().GetSize() != 2 {
				t.Fatalf("after the agent's snapshot: %v, %v", st, err)
			}
		})
	}
}

func TestPeriodicCheckpoints(t *testing.T) {
	dir := t.TempDir()
	h := start(t, func(c *config.Config) { c.Server.StateDir, c.Server.CheckpointInterval = dir, 20*time.Millisecond })
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/p": 7})
	deadline := time.Now().Add(10 * time.Second)
	for h.f.ckpt.written.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d periodic checkpoints written", h.f.ckpt.written.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Between two periodic rounds (a round holds ckpt.mu), no temporary file is left over.
	h.f.ckpt.mu.Lock()
	entries, _ := os.ReadDir(dir)
	h.f.ckpt.mu.Unlock()
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("a temporary file was left: %s", e.Name())
		}
	}
}

// fullSnapshot is snapshot as a real agent sends it: the root and every directory reported
// too, so the snapshot's end judges what it did not report (DESIGN.md §5.1).
func (a *agent) fullSnapshot(t *testing.T, files map[string]uint64) {
	t.Helper()
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	dirs := map[string]bool{"/": true}
	for p := range files {
		for d, _ := fspath.Split(p); !dirs[d]; d, _ = fspath.Split(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		a.enc.Add(d, fsbatch.FlagDir, 0, mtime, 1, 0)
	}
	for p, size := range files {
		a.enc.Add(p, 0, size, mtime, 1, 0)
	}
	b, idx := a.enc.Flush()
	a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
}

// TestRestartKeepsTheCommittedIndex: a pipe's committed index is checkpointed with its views,
// so after a restart of Fusion a replayable source's new session resumes from it instead of
// snapshotting again.
func TestRestartKeepsTheCommittedIndex(t *testing.T) {
	dir := t.TempDir()
	state := func(c *config.Config) { c.Server.StateDir = dir }
	h := start(t, state)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/f": 1})
	a.enc.Add("/g", 0, 2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), 4242, 0)
	b, idx := a.enc.Flush()
	a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, b, idx)
	a.cancel()
	h.stop()
	if data, err := os.ReadFile(filepath.Join(dir, "pipes.json")); err != nil || !strings.Contains(string(data), `"demo":4242`) {
		t.Fatalf("pipes.json: %s, %v", data, err)
	}

	h2 := start(t, state)
	resp, err := h2.session().CreateSession(withKey("demo-ingest-key"), &fustorv1.CreateSessionRequest{AgentId: "again", SchemaName: "fs", SchemaVersion: 1})
	if err != nil || resp.GetCommittedIndex() != 4242 {
		t.Fatalf("committed index after the restart = %d, %v; want 4242", resp.GetCommittedIndex(), err)
	}
	_, _ = h2.session().CloseSession(withKey("demo-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: resp.GetSessionId()})

	// Without the views' checkpoints the index means nothing: a new session starts from 0.
	must(t, os.Remove(filepath.Join(dir, "demo.ckpt")))
	h2.stop()
	must(t, os.Remove(filepath.Join(dir, "demo.ckpt"))) // the graceful stop wrote it again
	h3 := start(t, state)
	resp, err = h3.session().CreateSession(withKey("demo-ingest-key"), &fustorv1.CreateSessionRequest{AgentId: "third", SchemaName: "fs", SchemaVersion: 1})
	if err != nil || resp.GetCommittedIndex() != 0 {
		t.Fatalf("committed index without the views' checkpoint = %d, %v; want 0", resp.GetCommittedIndex(), err)
	}
	_, _ = h3.session().CloseSession(withKey("demo-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: resp.GetSessionId()})
}

// TestStaleViewReconcilesUnderTheRules (DESIGN.md §5.1, §5.4): the snapshot that reconciles a
// stale view obeys the arbitration rules at both ends: a file deleted in real time while it
// runs stays deleted though the snapshot reports it (the tombstone beats its stale row), and a
// file created in real time while it runs stays though the snapshot did not report it.
func TestStaleViewReconcilesUnderTheRules(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.fullSnapshot(t, map[string]uint64{"/a": 1, "/x": 2, "/gone": 3})
	a.cancel()
	_, _ = h.session().CloseSession(withKey("demo-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: a.id})
	q, ctx := h.views(), withKey("demo-key")
	if st, err := q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/x"}); err != nil || !st.GetMeta().GetStale() {
		t.Fatalf("stale view: %v, %v", st, err)
	}

	b := h.connect(t)
	if err := b.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		t.Fatal(err)
	}
	b.ack(t)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	// While the snapshot walks: /x deleted, /y created, in real time.
	b.enc.Add("/x", fsbatch.FlagDelete, 0, mtime, 2, 0)
	b.enc.Add("/y", 0, 5, mtime, 2, 0)
	rb, idx := b.enc.Flush()
	b.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, rb, idx)
	// The snapshot's rows were read before: they still list /x, not /y (nor /gone).
	b.enc.Add("/", fsbatch.FlagDir, 0, mtime, 1, 0)
	b.enc.Add("/a", 0, 1, mtime, 1, 0)
	b.enc.Add("/x", 0, 2, mtime, 1, 0)
	sb, idx := b.enc.Flush()
	b.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, sb, idx)
	if err := b.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		t.Fatal(err)
	}
	b.ack(t)

	for p, want := range map[string]codes.Code{"/a": codes.OK, "/y": codes.OK, "/x": codes.NotFound, "/gone": codes.NotFound} {
		st, err := q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: p})
		if status.Code(err) != want {
			t.Errorf("%s after the reconciling snapshot: %v; want %v", p, err, want)
		}
		if err == nil && st.GetMeta().GetStale() {
			t.Errorf("%s: still stale after the leader's snapshot", p)
		}
	}
}
