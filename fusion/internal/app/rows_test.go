package app

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// withRows adds a rows view "subs" of schema "submissions", fed by pipe "subs" whose sessions
// use the ingest key "rows-ingest-key"; "demo-key" queries it.
func withRows(c *config.Config) {
	c.Receivers["rows"] = config.Receiver{APIKeys: []config.APIKey{{Key: "rows-ingest-key", Pipe: "subs"}}}
	c.Pipes["subs"] = config.Pipe{Receiver: "rows", Schema: "submissions", Views: []string{"subs"}}
	c.Views["subs"] = config.View{Driver: config.DriverRows, Schema: "submissions", QueryKeys: []string{"demo-key"}}
}

// rowsAgent opens a session of schema submissions and its stream.
func (h *harness) rowsAgent(t *testing.T) *agent {
	t.Helper()
	ctx := withKey("rows-ingest-key")
	resp, err := h.session().CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "sql-agent", SchemaName: "submissions", SchemaVersion: 1})
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := fustorv1.NewPushServiceClient(h.conn).Push(sctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{h: h, id: resp.GetSessionId(), stream: stream, cancel: cancel}
	t.Cleanup(func() {
		cancel()
		_, _ = h.session().CloseSession(withKey("rows-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: a.id})
	})
	if err := a.send(&fustorv1.PushRequest{}); err != nil {
		t.Fatal(err)
	}
	return a
}

// rows sends a generic batch and returns its Ack.
func (a *agent) rows(t *testing.T, src fustorv1.MessageSource, rows ...*fustorv1.GenericRow) *fustorv1.Ack {
	t.Helper()
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: src, SchemaName: "submissions", Rows: &fustorv1.EventBatch_Generic{Generic: &fustorv1.GenericBatch{Rows: rows}}}}}); err != nil {
		t.Fatal(err)
	}
	return a.ack(t)
}

func (a *agent) control(t *testing.T, m *fustorv1.PushRequest) *fustorv1.Ack {
	t.Helper()
	if err := a.send(m); err != nil {
		t.Fatal(err)
	}
	return a.ack(t)
}

func (a *agent) rowSnapshot(t *testing.T, rows ...*fustorv1.GenericRow) *fustorv1.Ack {
	t.Helper()
	a.control(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}})
	ack := a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, rows...)
	if end := a.control(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); end.GetError() != "" {
		t.Fatalf("snapshot end: %v", end)
	}
	return ack
}

func grow(key string, index uint64, kv ...string) *fustorv1.GenericRow {
	f := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	return &fustorv1.GenericRow{Key: key, Fields: f, Index: index}
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("got %v, want %v with %q", err, code, msg)
	}
}

func TestRowsViewOverTheWire(t *testing.T) {
	h := start(t, withRows)
	q, ctx := h.views(), withKey("demo-key")

	// A session of schema fs on the rows pipe is refused, saying why.
	_, err := h.session().CreateSession(withKey("rows-ingest-key"), &fustorv1.CreateSessionRequest{AgentId: "x", SchemaName: "fs", SchemaVersion: 1})
	wantCode(t, err, codes.FailedPrecondition, `accepts schema "submissions", not "fs"`)

	// Before any agent: not ready, as an fs view.
	_, err = q.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "a"})
	wantCode(t, err, codes.Unavailable, "no leader session")

	a := h.rowsAgent(t)
	ack := a.rowSnapshot(t, grow("s/1", 10, "user", "ann", "state", "open"), grow("s/2", 10, "user", "bob", "state", "open"),
		grow("s/3", 10, "user", "ann", "state", "done"), grow("t/1", 10, "user", "cy"),
		&fustorv1.GenericRow{Key: "", Index: 10}) // malformed: refused, counted, the stream goes on
	if ack.GetRowsApplied() != 4 || ack.GetRowsRejected() != 1 || !strings.Contains(ack.GetError(), "empty key") {
		t.Fatalf("snapshot ack %v", ack)
	}
	// Realtime: an update, a delete, and a stale update of an older event.
	ack = a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, grow("s/2", 12, "user", "bob", "state", "done"),
		&fustorv1.GenericRow{Key: "s/3", Delete: true, Index: 12}, grow("s/1", 5, "user", "old"))
	if ack.GetRowsApplied() != 3 || ack.GetRowsRejected() != 0 || ack.GetCommittedIndex() != 12 {
		t.Fatalf("realtime ack %v", ack)
	}

	// Rows over the bounds are refused one by one; the stream and the other rows go on.
	ack = a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, grow("big", 13, "blob", strings.Repeat("x", 1<<20+1)),
		grow(strings.Repeat("k", 4097), 13), grow("ok", 13))
	if ack.GetRowsApplied() != 1 || ack.GetRowsRejected() != 2 || !strings.Contains(ack.GetError(), "over 1048576") {
		t.Fatalf("ack of rows over the bounds %v", ack)
	}
	ack = a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, &fustorv1.GenericRow{Key: "ok", Delete: true, Index: 14})
	if ack.GetRowsApplied() != 1 {
		t.Fatalf("delete ack %v", ack)
	}

	got, err := q.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "s/2"})
	if err != nil {
		t.Fatal(err)
	}
	if r := got.GetRow(); r.GetFields()["state"] != "done" || r.GetIndex() != 12 || r.GetOrigin() != fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME ||
		!got.GetMeta().GetSnapshotComplete() || !got.GetMeta().GetAuthoritativeSession() {
		t.Fatalf("GetRow s/2 = %v", got)
	}
	if got, err := q.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "s/1"}); err != nil || got.GetRow().GetFields()["user"] != "ann" {
		t.Fatalf("GetRow s/1 (a stale update must not win) = %v, %v", got, err)
	}
	_, err = q.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "s/3"})
	wantCode(t, err, codes.NotFound, "row not found")

	// Prefix, filter and paging.
	var keys []string
	tok := ""
	for range 10 {
		page, err := q.ListRows(ctx, &fustorv1.ListRowsRequest{View: "subs", Prefix: "s/", PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.GetRows() {
			keys = append(keys, r.GetKey())
		}
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
	}
	if strings.Join(keys, ",") != "s/1,s/2" {
		t.Fatalf("ListRows s/ pages = %v", keys)
	}
	page, err := q.ListRows(ctx, &fustorv1.ListRowsRequest{View: "subs", WhereField: "user", WhereValue: "ann"})
	if err != nil || len(page.GetRows()) != 1 || page.GetRows()[0].GetKey() != "s/1" || page.GetNextPageToken() != "" {
		t.Fatalf("ListRows user=ann = %v, %v", page, err)
	}
	if st := page.GetStats(); st.GetRows() != 3 || st.GetTombstones() != 2 || st.GetStale() != 1 || st.GetRejected() != 3 || st.GetLastIndex() != 14 {
		t.Fatalf("stats %v", st)
	}

	// A new snapshot that no longer reports t/1: removed at its end, a blind-spot deletion.
	a.rowSnapshot(t, grow("s/1", 20, "user", "ann"), grow("s/2", 20, "user", "bob", "state", "done"))
	page, err = q.ListRows(ctx, &fustorv1.ListRowsRequest{View: "subs"})
	if err != nil || len(page.GetRows()) != 2 || page.GetStats().GetBlindSpotDeletions() != 1 {
		t.Fatalf("after the second snapshot: %v, %v", page, err)
	}

	// A follower's snapshot rows are refused as for fs.
	f := h.rowsAgent(t)
	if ack := f.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, grow("x", 30)); ack.GetRowsRejected() != 1 || !strings.Contains(ack.GetError(), "follower") {
		t.Fatalf("follower snapshot ack %v", ack)
	}
	// Generic rows need the generic field; fs rows are not for this pipe.
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "submissions", Rows: &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{}}}}}); err != nil {
		t.Fatal(err)
	}
	if ack := a.ack(t); !strings.Contains(ack.GetError(), "generic field") {
		t.Fatalf("fs payload of schema submissions: %v", ack)
	}

	// fs queries on a rows view, and row queries on an fs view, are FAILED_PRECONDITION.
	_, err = q.Stat(ctx, &fustorv1.StatRequest{View: "subs", Path: "/"})
	wantCode(t, err, codes.FailedPrecondition, `view "subs" holds rows of schema "submissions": use GetRow/ListRows`)
	_, err = q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "subs"})
	wantCode(t, err, codes.FailedPrecondition, "use GetRow/ListRows")
	_, err = q.Verify(ctx, &fustorv1.VerifyRequest{View: "subs", Path: "/"})
	wantCode(t, err, codes.FailedPrecondition, "use GetRow/ListRows")
	_, err = q.GetRow(ctx, &fustorv1.GetRowRequest{View: "demo", Key: "a"})
	wantCode(t, err, codes.FailedPrecondition, "GetRow and ListRows read rows views")

	// The view lists show its driver, schema and figures.
	lv, err := q.ListViews(ctx, &fustorv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range lv.GetViews() {
		if v.GetId() == "subs" {
			found = v.GetDriver() == "rows" && v.GetSchema() == "submissions" && v.GetNodes() == 2 && v.GetMeta().GetSnapshotComplete()
		}
	}
	if !found {
		t.Fatalf("ListViews: %v", lv)
	}
	av, err := fustorv1.NewAdminServiceClient(h.conn).ListViews(ctx, &fustorv1.AdminServiceListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range av.GetViews() {
		if v.GetId() == "subs" && (v.GetSchema() != "submissions" || v.GetRows().GetRows() != 2 || v.GetRows().GetBlindSpotDeletions() != 1 || v.GetMemoryBytes() == 0) {
			t.Fatalf("admin ListViews subs: %v", v)
		}
	}
	// Metrics read every member: a rows view counts its rows as nodes.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(h.f))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	nodes := -1.0
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), "view_nodes") {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "view" && l.GetValue() == "subs" {
						nodes = m.GetGauge().GetValue()
					}
				}
			}
		}
	}
	if nodes != 2 {
		t.Errorf("view_nodes of subs = %v, want 2", nodes)
	}
}

func TestRowsViewRestartsFromItsCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *config.Config) { withRows(c); c.Server.StateDir = dir }
	h := start(t, cfg)
	a := h.rowsAgent(t)
	a.rowSnapshot(t, grow("k1", 1, "v", "one"), grow("k2", 1, "v", "two"))
	a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, &fustorv1.GenericRow{Key: "k2", Delete: true, Index: 2})
	resp, err := fustorv1.NewAdminServiceClient(h.conn).Checkpoint(withKey("demo-key"), &fustorv1.CheckpointRequest{View: "subs"})
	if err != nil || len(resp.GetCheckpoints()) != 1 || resp.GetCheckpoints()[0].GetError() != "" || resp.GetCheckpoints()[0].GetNodes() != 1 {
		t.Fatalf("checkpoint: %v, %v", resp, err)
	}
	a.cancel()
	h.stop()

	h2 := start(t, cfg)
	got, err := h2.views().GetRow(withKey("demo-key"), &fustorv1.GetRowRequest{View: "subs", Key: "k1"})
	if err != nil || got.GetRow().GetFields()["v"] != "one" || !got.GetMeta().GetRestored() {
		t.Fatalf("GetRow after the restart = %v, %v", got, err)
	}
	// The tombstone came back too: a lagging snapshot row of k2 does not resurrect it.
	a2 := h2.rowsAgent(t)
	a2.rowSnapshot(t, grow("k1", 3, "v", "one"), grow("k2", 1, "v", "two"))
	if _, err := h2.views().GetRow(withKey("demo-key"), &fustorv1.GetRowRequest{View: "subs", Key: "k2"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetRow k2 after a lagging snapshot = %v, want NOT_FOUND", err)
	}
}

// A replayable source resumes from the committed index without a snapshot; while the pipe's
// first snapshot has not ended, realtime may have committed, so a new session is told 0 and
// snapshots — else a session lost mid-snapshot would leave a partial tree called whole.
func TestCommittedIndexWaitsForTheFirstSnapshot(t *testing.T) {
	h := start(t, withRows)
	created := func() uint64 {
		t.Helper()
		resp, err := h.session().CreateSession(withKey("rows-ingest-key"), &fustorv1.CreateSessionRequest{AgentId: "other", SchemaName: "submissions", SchemaVersion: 1,
			Capabilities: &fustorv1.Capabilities{CanRealtime: true, CanResume: true}})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = h.session().CloseSession(withKey("rows-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: resp.GetSessionId()})
		return resp.GetCommittedIndex()
	}
	a := h.rowsAgent(t)
	a.control(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}})
	a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, grow("a", 10))
	if ack := a.rows(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, grow("z", 12)); ack.GetCommittedIndex() != 12 {
		t.Fatalf("realtime committed %d, want 12", ack.GetCommittedIndex())
	}
	if c := created(); c != 0 {
		t.Fatalf("a session created during the first snapshot was told committed %d, want 0", c)
	}
	if end := a.control(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); end.GetError() != "" {
		t.Fatalf("snapshot end: %v", end)
	}
	if c := created(); c != 12 {
		t.Fatalf("a session created after the snapshot was told committed %d, want 12", c)
	}
}
