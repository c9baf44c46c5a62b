package app

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

var old = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// answerScan waits for the scan command on the agent's stream and answers it the way the
// agent does: on-demand rows carrying the command id, then the command's result.
func (a *agent) answerScan(t *testing.T, files map[string]uint64) *fustorv1.ScanCommand {
	t.Helper()
	for {
		m, err := a.stream.Recv()
		if err != nil {
			t.Errorf("recv: %v", err)
			return nil
		}
		c := m.GetCommand()
		if c.GetScan() == nil {
			continue
		}
		a.enc.Add("/", uint32(fustorv1.FsRowFlag_FS_ROW_FLAG_DIR), 0, old, 1, 0) // the walk's top
		for p, size := range files {
			a.enc.Add(p, 0, size, old, 1, 0)
		}
		b, idx := a.enc.Flush()
		if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND, SchemaName: "fs", Index: idx, CommandId: c.GetId(),
			Rows: &fustorv1.EventBatch_Fs{Fs: b}}}}); err != nil {
			t.Error(err)
		}
		if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_CommandResult{CommandResult: &fustorv1.CommandResult{
			CommandId: c.GetId(), Ok: true}}}); err != nil {
			t.Error(err)
		}
		return c.GetScan()
	}
}

// TestVerifyOverTheProtocol runs Verify against a real Fusion on :0 with an in-test agent
// speaking the push protocol: the walk's rows are compared and never applied, --repair applies
// them, a second verify finds nothing, and keys are checked.
func TestVerifyOverTheProtocol(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Server.AdminKeys = append(c.Server.AdminKeys, "admin-only") })
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/a": 1, "/b": 2, "/gone": 3})
	storage := map[string]uint64{"/a": 1, "/b": 5, "/new": 4}

	verify := func(key string, repair bool) (*fustorv1.VerifyResponse, error) {
		type answer struct {
			r   *fustorv1.VerifyResponse
			err error
		}
		done := make(chan answer, 1)
		go func() {
			ctx, cancel := context.WithTimeout(withKey(key), 10*time.Second)
			defer cancel()
			r, err := h.views().Verify(ctx, &fustorv1.VerifyRequest{View: "demo", Path: "/", Repair: repair})
			done <- answer{r, err}
		}()
		if key != "demo-ingest-key" {
			if sc := a.answerScan(t, storage); sc.GetPath() != "/" || !sc.GetRecursive() {
				t.Errorf("scan command %+v", sc)
			}
		}
		ans := <-done
		return ans.r, ans.err
	}

	r, err := verify("demo-key", false)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetWalked() != 4 || r.GetMissing() != 1 || r.GetExtra() != 1 || r.GetDifferent() != 1 || r.GetRepaired() || len(r.GetExamples()) != 3 {
		t.Fatalf("verify %+v", r)
	}
	if _, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/gone"}); err != nil {
		t.Fatalf("a verify without repair changed the view: %v", err)
	}
	if _, err := verify("demo-ingest-key", false); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ingest key: %v", err)
	}
	if r, err = verify("admin-only", true); err != nil || !r.GetRepaired() {
		t.Fatalf("admin key, repair: %+v %v", r, err)
	}
	if r, err = verify("demo-key", false); err != nil || r.GetMissing()+r.GetExtra()+r.GetDifferent() != 0 {
		t.Fatalf("after repair: %+v %v", r, err)
	}
	st, err := h.views().GetStats(withKey("demo-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"})
	if err != nil || st.GetFileCount() != 3 || st.GetTotalSize() != 10 || st.GetBlindSpotDeletions() != 1 {
		t.Fatalf("stats after repair %+v %v", st, err)
	}
}

// TestSnapshotReconcilesOverTheProtocol: a second complete snapshot that no longer reports a
// file removes it, as a blind-spot deletion; a failed one judges nothing.
func TestSnapshotReconcilesOverTheProtocol(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/a": 1, "/b": 2, "/c": 3})
	// A failed snapshot that saw only /a.
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	a.enc.Add("/a", 0, 1, old, 1, 0)
	b, idx := a.enc.Flush()
	a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{Failed: true}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	files := func() uint64 {
		st, err := h.views().GetStats(withKey("demo-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetFileCount()
	}
	if n := files(); n != 3 {
		t.Fatalf("a failed snapshot removed files: %d left", n)
	}
	// A complete one (the agent's walk always reports its top, the root) that saw only /a.
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	a.enc.Add("/", uint32(fustorv1.FsRowFlag_FS_ROW_FLAG_DIR), 0, old, 1, 0)
	a.enc.Add("/a", 0, 1, old, 1, 0)
	b, idx = a.enc.Flush()
	a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	if n := files(); n != 1 {
		t.Fatalf("after a complete snapshot of /a only: %d files", n)
	}
	bs, err := h.views().ListBlindSpots(withKey("demo-key"), &fustorv1.ListBlindSpotsRequest{View: "demo"})
	if err != nil || len(bs.GetDeletions()) != 2 {
		t.Fatalf("blind-spot deletions %v %v", bs.GetDeletions(), err)
	}
}

// TestVerifyOfAPathGoneFromTheStorage: the agent's walk fails because its top no longer exists:
// everything the view holds there is extra. Any other failure is UNAVAILABLE.
func TestVerifyOfAPathGoneFromTheStorage(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/d/x": 1, "/keep": 1})
	for _, tc := range []struct {
		agentErr string
		code     codes.Code
		extra    uint64
	}{
		{"snapshot /d: lstat /data/d: no such file or directory", codes.OK, 2},
		{"snapshot /d: open /data/d: permission denied", codes.Unavailable, 0},
	} {
		done := make(chan error, 1)
		var r *fustorv1.VerifyResponse
		go func() {
			var err error
			r, err = h.views().Verify(withKey("demo-key"), &fustorv1.VerifyRequest{View: "demo", Path: "/d"})
			done <- err
		}()
		for {
			m, err := a.stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if c := m.GetCommand(); c.GetScan() != nil {
				must(t, a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_CommandResult{CommandResult: &fustorv1.CommandResult{
					CommandId: c.GetId(), Error: tc.agentErr}}}))
				break
			}
		}
		err := <-done
		if status.Code(err) != tc.code || r.GetExtra() != tc.extra {
			t.Fatalf("agent error %q: verify %+v, %v", tc.agentErr, r, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
