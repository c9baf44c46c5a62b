package app

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness runs a real Fusion on 127.0.0.1:0 and a gRPC client to it.
type harness struct {
	t    testing.TB
	conn *grpc.ClientConn
	f    *Fusion
	// stop stops Fusion as SIGTERM does and waits for Run (once; the cleanup calls it too).
	stop func()
}

func start(t testing.TB, mutate func(*config.Config)) *harness { return startWith(t, mutate, nil) }

// startWith is start with options set by opts.
func startWith(t testing.TB, mutate func(*config.Config), opts func(*Options)) *harness {
	t.Helper()
	cfg := config.Demo()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = time.Second
	cfg.Server.StateDir = t.TempDir() // never the user's ~/.fustor
	cfg.Server.HTTPListen = ""        // the demo's fixed port; gateway tests ask for 127.0.0.1:0
	if mutate != nil {
		mutate(&cfg)
	}
	o := Options{SweepInterval: 20 * time.Millisecond}
	if opts != nil {
		opts(&o)
	}
	f, err := New(nil, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	conn, err := grpc.NewClient(f.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return &harness{t: t, conn: conn, f: f, stop: stop}
}

func withKey(key string) context.Context {
	ctx := context.Background()
	if key == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

func (h *harness) views() fustorv1.ViewServiceClient { return fustorv1.NewViewServiceClient(h.conn) }
func (h *harness) session() fustorv1.SessionServiceClient {
	return fustorv1.NewSessionServiceClient(h.conn)
}

// agent is a minimal in-test agent speaking the real protocol.
type agent struct {
	h      *harness
	id     string
	stream fustorv1.PushService_PushClient
	enc    *fsbatch.Encoder
	seq    uint64
	cancel context.CancelFunc
}

func (h *harness) connect(t testing.TB) *agent { return h.connectWith(t, "demo-ingest-key") }

// connectWith opens a session with an ingest key (which routes it to its pipe) and its stream.
func (h *harness) connectWith(t testing.TB, key string) *agent {
	t.Helper()
	ctx := withKey(key)
	resp, err := h.session().CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "test-agent", SchemaName: "fs", SchemaVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := fustorv1.NewPushServiceClient(h.conn).Push(sctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{h: h, id: resp.GetSessionId(), stream: stream, enc: fsbatch.NewEncoder(0), cancel: cancel}
	t.Cleanup(func() {
		cancel()
		_, _ = h.session().CloseSession(withKey(key), &fustorv1.CloseSessionRequest{SessionId: a.id})
	})
	if err := a.send(&fustorv1.PushRequest{}); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *agent) send(m *fustorv1.PushRequest) error {
	a.seq++
	m.Seq = a.seq
	if a.seq == 1 {
		m.SessionId = a.id
	}
	return a.stream.Send(m)
}

// ack waits for the Ack of the last message sent.
func (a *agent) ack(t testing.TB) *fustorv1.Ack {
	t.Helper()
	for {
		m, err := a.stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if ack := m.GetAck(); ack != nil && ack.GetSeq() == a.seq {
			return ack
		}
	}
}

func (a *agent) batch(t testing.TB, src fustorv1.MessageSource, b *fustorv1.FsBatch, index uint64) *fustorv1.Ack {
	t.Helper()
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: src, SchemaName: "fs", Index: index, Rows: &fustorv1.EventBatch_Fs{Fs: b}}}}); err != nil {
		t.Fatal(err)
	}
	return a.ack(t)
}

// snapshot sends files as one snapshot and waits until it is applied.
func (a *agent) snapshot(t *testing.T, files map[string]uint64) { a.snapshotB(t, files) }

// snapshotB is snapshot for tests and benchmarks.
func (a *agent) snapshotB(t testing.TB, files map[string]uint64) {
	t.Helper()
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	for p, size := range files {
		a.enc.Add(p, 0, size, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), 1, 0)
	}
	b, idx := a.enc.Flush()
	if ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx); ack.GetRowsApplied() != uint32(len(files)) {
		t.Fatalf("snapshot ack %+v", ack)
	}
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
}

func TestAuth(t *testing.T) {
	h := start(t, nil)
	tests := []struct {
		name string
		key  string
		call func(context.Context) error
		want codes.Code
	}{
		{"query without key", "", func(ctx context.Context) error {
			_, err := h.views().ListViews(ctx, &fustorv1.ListViewsRequest{})
			return err
		}, codes.Unauthenticated},
		{"query with wrong key", "nope", func(ctx context.Context) error {
			_, err := h.views().ListViews(ctx, &fustorv1.ListViewsRequest{})
			return err
		}, codes.Unauthenticated},
		{"query with the ingest key", "demo-ingest-key", func(ctx context.Context) error {
			_, err := h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/"})
			return err
		}, codes.Unauthenticated},
		{"ingest with the query key", "demo-key", func(ctx context.Context) error {
			_, err := h.session().CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "a", SchemaName: "fs"})
			return err
		}, codes.Unauthenticated},
		{"admin without key", "", func(ctx context.Context) error {
			_, err := fustorv1.NewAdminServiceClient(h.conn).ListSessions(ctx, &fustorv1.ListSessionsRequest{})
			return err
		}, codes.Unauthenticated},
		{"query with the right key", "demo-key", func(ctx context.Context) error {
			_, err := h.views().ListViews(ctx, &fustorv1.ListViewsRequest{})
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call(withKey(tt.key))); got != tt.want {
				t.Fatalf("code = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestQueryErrors(t *testing.T) {
	h := start(t, nil)
	ctx := withKey("demo-key")
	if _, err := h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("before any session: %v; want Unavailable", err)
	}
	a := h.connect(t)
	if _, err := h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("before the snapshot: %v; want Unavailable", err)
	}
	a.snapshot(t, map[string]uint64{"/a/b.txt": 3})
	tests := []struct {
		name, view, path string
		want             codes.Code
	}{
		{"ok", "demo", "/a/b.txt", codes.OK},
		{"unknown view", "nope", "/", codes.NotFound},
		{"missing path", "demo", "/zz", codes.NotFound},
		{"dot dot", "demo", "/a/../b", codes.InvalidArgument},
		{"empty", "demo", "", codes.InvalidArgument},
		{"nul", "demo", "/a\x00b", codes.InvalidArgument},
		{"relative", "demo", "a/b.txt", codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.views().Stat(ctx, &fustorv1.StatRequest{View: tt.view, Path: tt.path})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("Stat(%q, %q) = %v; want %v", tt.view, tt.path, err, tt.want)
			}
		})
	}
	if _, err := h.views().Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "[a-"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad glob: %v", err)
	}
	if _, err := h.views().ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: "demo", Path: "/", PageToken: "!!"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad page token: %v", err)
	}
}

func TestGarbageRowsAreRejectedAndFusionKeepsServing(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/keep.txt": 1})
	bad := &fustorv1.FsBatch{ParentIds: []uint32{1, 77, 1}, Names: []string{"good.txt", "orphan", "../escape"}}
	ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, bad, 5)
	if ack.GetRowsApplied() != 1 || ack.GetRowsRejected() != 2 || ack.GetError() == "" {
		t.Fatalf("ack = %+v", ack)
	}
	wrongSchema := &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "mysql",
		Rows: &fustorv1.EventBatch_Generic{Generic: &fustorv1.GenericBatch{Rows: []*fustorv1.GenericRow{{Key: "1"}}}}}}}
	if err := a.send(wrongSchema); err != nil {
		t.Fatal(err)
	}
	if ack := a.ack(t); ack.GetRowsRejected() != 1 {
		t.Fatalf("wrong schema ack = %+v", ack)
	}
	for _, p := range []string{"/good.txt", "/keep.txt"} {
		if _, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: p}); err != nil {
			t.Fatalf("Stat(%s): %v", p, err)
		}
	}
}

func TestMalformedStreamMessagesEndTheStreamWithInvalidArgument(t *testing.T) {
	tests := []struct {
		name string
		msg  *fustorv1.PushRequest
	}{
		{"no payload", &fustorv1.PushRequest{}},
		{"unspecified source", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{SchemaName: "fs",
			Rows: &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{}}}}}},
		{"columns disagree", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{SchemaName: "fs",
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME,
			Rows:   &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{ParentIds: []uint32{1, 1}, Names: []string{"x"}}}}}}},
		{"bad dir declaration", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{SchemaName: "fs",
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME,
			Rows:   &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{Dirs: []*fustorv1.FsDir{{Id: 9, ParentId: 8, Name: "x"}}}}}}}},
		{"another session's id", &fustorv1.PushRequest{SessionId: "someone-else", Payload: &fustorv1.PushRequest_CommandResult{CommandResult: &fustorv1.CommandResult{}}}},
	}
	h := start(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.connect(t)
			if err := a.send(tt.msg); err != nil {
				t.Fatal(err)
			}
			for {
				_, err := a.stream.Recv()
				if err == nil {
					continue
				}
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("stream ended with %v; want InvalidArgument", err)
				}
				t.Logf("status message: %s", status.Convert(err).Message())
				break
			}
		})
	}
	// Fusion still serves.
	if _, err := h.views().ListViews(withKey("demo-key"), &fustorv1.ListViewsRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownSession(t *testing.T) {
	h := start(t, nil)
	ctx := withKey("demo-ingest-key")
	if _, err := h.session().Heartbeat(ctx, &fustorv1.HeartbeatRequest{SessionId: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Heartbeat: %v; want NotFound", err)
	}
	stream, err := fustorv1.NewPushServiceClient(h.conn).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&fustorv1.PushRequest{SessionId: "nope", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("Push with unknown session: %v; want NotFound", err)
	}
	// A schema the pipe does not route (session.proto): the request is sound, the routing not.
	if _, err := h.session().CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "a", SchemaName: "mysql"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("wrong schema: %v; want FailedPrecondition", err)
	}
}

func TestSessionTimeoutNegotiationAndLeadership(t *testing.T) {
	h := start(t, nil)
	ctx := withKey("demo-ingest-key")
	first, err := h.session().CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "a1", SchemaName: "fs"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.session().CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "a2", SchemaName: "fs",
		TimeoutHint: durationOf(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetRole() != fustorv1.Role_ROLE_LEADER || second.GetRole() != fustorv1.Role_ROLE_FOLLOWER {
		t.Fatalf("roles %v %v", first.GetRole(), second.GetRole())
	}
	if first.GetTimeout().AsDuration() != config.DefaultSessionTimeout || second.GetTimeout().AsDuration() != 5*time.Minute {
		t.Fatalf("timeouts %v %v", first.GetTimeout().AsDuration(), second.GetTimeout().AsDuration())
	}
	if _, err := h.session().CloseSession(ctx, &fustorv1.CloseSessionRequest{SessionId: first.GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	hb, err := h.session().Heartbeat(ctx, &fustorv1.HeartbeatRequest{SessionId: second.GetSessionId()})
	if err != nil || hb.GetRole() != fustorv1.Role_ROLE_LEADER {
		t.Fatalf("after the leader closed: %v %v", hb.GetRole(), err)
	}
	if _, err := h.session().CloseSession(ctx, &fustorv1.CloseSessionRequest{SessionId: second.GetSessionId()}); err != nil {
		t.Fatal(err)
	}
}

func TestFollowerSnapshotIsRejected(t *testing.T) {
	h := start(t, nil)
	leader := h.connect(t)
	leader.snapshot(t, map[string]uint64{"/l.txt": 1})
	follower := h.connect(t)
	enc := fsbatch.NewEncoder(0)
	enc.Add("/f.txt", 0, 1, 1, 1, 0)
	b, idx := enc.Flush()
	ack := follower.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
	if ack.GetRowsRejected() != 1 || ack.GetError() == "" {
		t.Fatalf("follower snapshot ack = %+v", ack)
	}
	if _, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/f.txt"}); status.Code(err) != codes.NotFound {
		t.Fatalf("follower row applied: %v", err)
	}
}

// TestLiveViewStaysStaleWhenLastSessionEnds (DESIGN.md §5.1): the view keeps its tree and
// answers, flagged stale since then; the next leader's snapshot reconciles it (removes what it
// did not report) and clears the flag. A view that never completed a snapshot stays
// UNAVAILABLE (TestReadinessGate).
func TestLiveViewStaysStaleWhenLastSessionEnds(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.fullSnapshot(t, map[string]uint64{"/x.txt": 1, "/y.txt": 2})
	ctx := withKey("demo-key")
	a.cancel()
	if _, err := h.session().CloseSession(withKey("demo-ingest-key"), &fustorv1.CloseSessionRequest{SessionId: a.id}); err != nil {
		t.Fatal(err)
	}
	st, err := h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/x.txt"})
	if err != nil || !st.GetMeta().GetStale() || st.GetMeta().GetStaleSince() == nil || st.GetMeta().GetAuthoritativeSession() {
		t.Fatalf("after the last session: %v, %v; want the file, flagged stale, no leader", st, err)
	}
	b := h.connect(t)
	b.fullSnapshot(t, map[string]uint64{"/x.txt": 1, "/z.txt": 3})
	if _, err := h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/y.txt"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a file the new leader's snapshot did not report: %v; want NotFound", err)
	}
	st, err = h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/z.txt"})
	if err != nil || st.GetMeta().GetStale() {
		t.Fatalf("after the new leader's snapshot: %v, %v; want z, not stale", st, err)
	}
}

func TestSessionExpiresWithoutHeartbeats(t *testing.T) {
	h := start(t, func(c *config.Config) {
		p := c.Pipes["demo"]
		p.SessionTimeout = time.Second
		c.Pipes["demo"] = p
	})
	a := h.connect(t)
	// No heartbeat, no message: the sweeper expires the session, and the stream is told.
	for {
		m, err := a.stream.Recv()
		if err != nil {
			if status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.NotFound && err != io.EOF {
				t.Logf("stream ended: %v", err)
			}
			break
		}
		if o := m.GetSessionObsoleted(); o != nil {
			if o.GetReason() != "expired" {
				t.Fatalf("reason %q", o.GetReason())
			}
			break
		}
	}
	if _, err := h.session().Heartbeat(withKey("demo-ingest-key"), &fustorv1.HeartbeatRequest{SessionId: a.id}); status.Code(err) != codes.NotFound {
		t.Fatalf("expired session heartbeat: %v", err)
	}
}

func TestListDirectoryPaging(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	files := map[string]uint64{}
	for i := range 25 {
		files[fmt.Sprintf("/d/f%02d", i)] = uint64(i)
	}
	a.snapshot(t, files)
	ctx := withKey("demo-key")
	var got []string
	tok := ""
	for {
		resp, err := h.views().ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: "demo", Path: "/d", PageSize: 10, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetEntries() {
			got = append(got, e.GetPath())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if len(got) != 25 || got[0] != "/d/f00" || got[24] != "/d/f24" {
		t.Fatalf("pages = %v", got)
	}
}

// TestFindOnlyPaths: only_paths answers the same matches with nothing but path and is_dir.
func TestFindOnlyPaths(t *testing.T) {
	h := start(t, nil)
	h.connect(t).snapshot(t, map[string]uint64{"/a/x.dat": 10, "/b/x.dat": 20, "/b/y.dat": 30})
	ctx := withKey("demo-key")
	full, err := h.views().Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/", Name: "x.dat"})
	if err != nil {
		t.Fatal(err)
	}
	paths, err := h.views().Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/", Name: "x.dat", OnlyPaths: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.GetEntries()) != 2 || len(paths.GetEntries()) != 2 {
		t.Fatalf("matches: full %d, only paths %d; want 2", len(full.GetEntries()), len(paths.GetEntries()))
	}
	for i, e := range paths.GetEntries() {
		f := full.GetEntries()[i]
		if e.GetPath() != f.GetPath() || e.GetIsDir() != f.GetIsDir() {
			t.Errorf("entry %d: only paths %v, full %v", i, e, f)
		}
		if e.GetName() != "" || e.GetSize() != 0 || e.GetMtime() != nil || e.GetKnownByAgent() {
			t.Errorf("only_paths entry %d carries more than path and is_dir: %v", i, e)
		}
		if f.GetSize() == 0 || f.GetMtime() == nil || f.GetName() != "x.dat" {
			t.Errorf("full entry %d lacks its fields: %v", i, f)
		}
	}
}

// TestFindPackedPaths: packed_paths answers the same matches, in the same order, as one
// NUL-ended byte string, with the directories' positions beside it.
func TestFindPackedPaths(t *testing.T) {
	h := start(t, nil)
	h.connect(t).snapshot(t, map[string]uint64{"/a/x.dat": 10, "/b/x.dat": 20, "/b/y.dat": 30})
	ctx := withKey("demo-key")
	for _, req := range []*fustorv1.FindRequest{
		{View: "demo", Path: "/", Glob: "*"},
		{View: "demo", Path: "/", Name: "x.dat"},
		{View: "demo", Path: "/b", Glob: "*.dat", Limit: 1},
		{View: "demo", Path: "/", Name: "absent"},
	} {
		full, err := h.views().Find(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		packedReq := proto.Clone(req).(*fustorv1.FindRequest)
		packedReq.PackedPaths = true
		packed, err := h.views().Find(ctx, packedReq)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		var wantDirs []uint32
		for i, e := range full.GetEntries() {
			want = append(want, e.GetPath())
			if e.GetIsDir() {
				wantDirs = append(wantDirs, uint32(i))
			}
		}
		var got []string
		if b := packed.GetPackedPaths(); len(b) > 0 {
			if b[len(b)-1] != 0 {
				t.Fatalf("%v: packed paths %q do not end with NUL", req, b)
			}
			got = strings.Split(string(b[:len(b)-1]), "\x00")
		}
		if !slices.Equal(got, want) || !slices.Equal(packed.GetDirIndexes(), wantDirs) || len(packed.GetEntries()) != 0 {
			t.Errorf("%v: packed %q dirs %v (+%d entries); want %q dirs %v", req, got, packed.GetDirIndexes(), len(packed.GetEntries()), want, wantDirs)
		}
		if packed.GetTruncated() != full.GetTruncated() {
			t.Errorf("%v: truncated %v, want %v", req, packed.GetTruncated(), full.GetTruncated())
		}
	}
}
