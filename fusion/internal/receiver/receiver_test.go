package receiver

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ingestKey = "demo-ingest-key"

// harness is the receiver behind the real gRPC server (auth and error mapping included) on
// 127.0.0.1:0, feeding one running pipe and view: the demo configuration without app.
type harness struct {
	conn     *grpc.ClientConn
	view     *view.Member
	v        *view.View
	pipe     *pipe.Pipe
	commands *command.Tracker
	rcv      *Receiver
	sessions *session.Manager
	info     PipeInfo
	// returns receives what each Push left running when it returned (see probe).
	returns chan pushReturn
}

func start(t *testing.T) *harness {
	t.Helper()
	cfg := config.Demo()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = time.Second
	views := view.NewRegistry(nil, cfg, nil)
	v, err := views.Get("demo")
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(nil, nil, 16, session.Hooks{LeaderChanged: func(key, id string) {
		if m, ok := views.ByKey(key); ok {
			m.SetLeader(id)
		}
	}})
	p := pipe.New(nil, "demo", []*view.View{v}, 16)
	p.Commands = command.NewTracker(16)
	info := PipeInfo{Pipe: p, Schema: "fs", Session: session.Pipe{ID: "demo", Views: []string{"demo"}, Timeout: time.Minute}}
	rcv := New(nil, sessions, StaticPipes{"demo": info})
	returns := make(chan pushReturn, 16)
	keys, err := cfg.Keys()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(nil, cfg.Server, server.NewKeys(keys), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fustorv1.RegisterSessionServiceServer(srv.GRPC(), rcv)
	fustorv1.RegisterPushServiceServer(srv.GRPC(), probe{Receiver: rcv, returns: returns})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- p.Run(ctx) }()
	go func() { done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		sessions.CloseAll("test over")
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	})
	m, _ := v.Member("")
	return &harness{conn: conn, view: m, v: v, pipe: p, commands: p.Commands, rcv: rcv, sessions: sessions, info: info, returns: returns}
}

func ingest() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ingestKey)
}

// agent speaks the push protocol on one session.
type agent struct {
	id     string
	role   fustorv1.Role
	stream fustorv1.PushService_PushClient
	cancel context.CancelFunc
	seq    uint64
}

func (h *harness) connect(t *testing.T) *agent {
	t.Helper()
	resp, err := fustorv1.NewSessionServiceClient(h.conn).CreateSession(ingest(),
		&fustorv1.CreateSessionRequest{AgentId: "agent-" + t.Name(), SchemaName: "fs", SchemaVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ingest())
	t.Cleanup(cancel)
	stream, err := fustorv1.NewPushServiceClient(h.conn).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{id: resp.GetSessionId(), role: resp.GetRole(), stream: stream, cancel: cancel}
	a.send(t, &fustorv1.PushRequest{})
	return a
}

func (a *agent) send(t *testing.T, m *fustorv1.PushRequest) {
	t.Helper()
	a.seq++
	m.Seq = a.seq
	if a.seq == 1 {
		m.SessionId = a.id
	}
	if err := a.stream.Send(m); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// ack waits for the Ack of the last message sent.
func (a *agent) ack(t *testing.T) *fustorv1.Ack {
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

// end waits for the stream to end and returns its status.
func (a *agent) end(t *testing.T) error {
	t.Helper()
	for {
		if _, err := a.stream.Recv(); err != nil {
			return err
		}
	}
}

func batch(src fustorv1.MessageSource, schema, cmd string, paths ...string) *fustorv1.PushRequest {
	enc := fsbatch.NewEncoder(0)
	for _, p := range paths {
		enc.Add(p, 0, 1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), 1, 0)
	}
	b, idx := enc.Flush()
	return &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: src, SchemaName: schema, Index: idx, CommandId: cmd, Rows: &fustorv1.EventBatch_Fs{Fs: b}}}}
}

func TestCreateSessionRejections(t *testing.T) {
	h := start(t)
	c := fustorv1.NewSessionServiceClient(h.conn)
	for _, tt := range []struct {
		name string
		req  *fustorv1.CreateSessionRequest
		code codes.Code
		want string
	}{
		{"no agent id", &fustorv1.CreateSessionRequest{SchemaName: "fs"}, codes.InvalidArgument, "agent_id is required"},
		{"no schema", &fustorv1.CreateSessionRequest{AgentId: "a"}, codes.InvalidArgument, "schema_name is required"},
		{"wrong schema", &fustorv1.CreateSessionRequest{AgentId: "a", SchemaName: "mysql"}, codes.FailedPrecondition,
			`pipe "demo" accepts schema "fs", not "mysql": send this agent pipe with the ingest key of a pipe of schema "mysql"`},
		{"unknown version", &fustorv1.CreateSessionRequest{AgentId: "a", SchemaName: "fs", SchemaVersion: 2}, codes.FailedPrecondition,
			`view "demo" of pipe "demo" driver fs reads schema fs version 1, not version 2`},
		{"version 1", &fustorv1.CreateSessionRequest{AgentId: "a", SchemaName: "fs", SchemaVersion: 1}, codes.OK, ""},
		{"version unspecified", &fustorv1.CreateSessionRequest{AgentId: "b", SchemaName: "fs"}, codes.OK, ""},
	} {
		_, err := c.CreateSession(ingest(), tt.req)
		if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
			t.Errorf("%s: %v; want %v saying %q", tt.name, err, tt.code, tt.want)
		}
	}
	_, err := c.Heartbeat(ingest(), &fustorv1.HeartbeatRequest{SessionId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("heartbeat of an unknown session: %v; want NOT_FOUND", err)
	}
}

func TestSchemaMismatchRejectsRows(t *testing.T) {
	h := start(t)
	a := h.connect(t)
	a.send(t, batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "mysql", "", "/a", "/b"))
	ack := a.ack(t)
	if ack.GetRowsRejected() != 2 || ack.GetRowsApplied() != 0 || !strings.Contains(ack.GetError(), `schema "mysql" is accepted by no view of pipe demo`) || h.pipe.Dropped()["demo"] != 1 {
		t.Fatalf("ack %+v", ack)
	}
	if st := h.pipe.Stats(); st.RowsRejected != 2 || h.view.Driver.Len() != 0 {
		t.Fatalf("pipe %+v, %d nodes; want the rows counted as rejected and none applied", st, h.view.Driver.Len())
	}
	// The stream goes on.
	a.send(t, batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/a"))
	if ack := a.ack(t); ack.GetRowsApplied() != 1 || ack.GetError() != "" {
		t.Fatalf("ack after a mismatch %+v", ack)
	}
}

func TestFollowerRejections(t *testing.T) {
	h := start(t)
	leader, follower := h.connect(t), h.connect(t)
	if leader.role != fustorv1.Role_ROLE_LEADER || follower.role != fustorv1.Role_ROLE_FOLLOWER {
		t.Fatalf("roles %v, %v", leader.role, follower.role)
	}
	for _, src := range []fustorv1.MessageSource{fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT} {
		follower.send(t, batch(src, "fs", "", "/x"))
		if ack := follower.ack(t); ack.GetRowsRejected() != 1 || !strings.Contains(ack.GetError(), "is a follower") {
			t.Fatalf("%v rows from a follower: ack %+v", src, ack)
		}
	}
	for _, m := range []*fustorv1.PushRequest{
		{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}},
		{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}},
		{Payload: &fustorv1.PushRequest_AuditStart{AuditStart: &fustorv1.AuditStart{}}},
		{Payload: &fustorv1.PushRequest_AuditEnd{AuditEnd: &fustorv1.AuditEnd{}}},
	} {
		follower.send(t, m)
		if ack := follower.ack(t); !strings.Contains(ack.GetError(), "is a follower") {
			t.Fatalf("%T from a follower: ack %+v", m.GetPayload(), ack)
		}
	}
	if h.view.Driver.Len() != 0 || h.view.Ready() == nil {
		t.Fatal("a follower's snapshot reached the view")
	}
	// Realtime rows are a follower's job.
	follower.send(t, batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/rt"))
	if ack := follower.ack(t); ack.GetRowsApplied() != 1 {
		t.Fatalf("follower realtime ack %+v", ack)
	}
	// The leader's snapshot makes the view ready.
	leader.send(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}})
	leader.ack(t)
	leader.send(t, batch(fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, "fs", "", "/rt", "/s"))
	if ack := leader.ack(t); ack.GetRowsApplied() != 2 {
		t.Fatalf("leader snapshot ack %+v", ack)
	}
	leader.send(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}})
	leader.ack(t)
	if err := h.view.Ready(); err != nil || h.view.Driver.Len() != 2 {
		t.Fatalf("after the leader's snapshot: %v, %d nodes", err, h.view.Driver.Len())
	}
}

func TestBadMessagesEndTheStream(t *testing.T) {
	h := start(t)
	malformed := batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/a", "/b")
	malformed.GetBatch().GetFs().ParentIds = malformed.GetBatch().GetFs().GetParentIds()[:1]
	unknownSource := batch(fustorv1.MessageSource_MESSAGE_SOURCE_UNSPECIFIED, "fs", "", "/a")
	for _, tt := range []struct {
		name string
		m    *fustorv1.PushRequest
		want string
	}{
		{"malformed batch", malformed, "malformed fs batch"},
		{"unknown source", unknownSource, "unknown message source"},
		{"no payload", &fustorv1.PushRequest{}, "has no payload"},
		{"another session", &fustorv1.PushRequest{SessionId: "other",
			Payload: &fustorv1.PushRequest_AuditStart{AuditStart: &fustorv1.AuditStart{}}}, `names session "other"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := h.connect(t)
			a.send(t, tt.m)
			if err := a.end(t); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("stream ended with %v; want INVALID_ARGUMENT saying %q", err, tt.want)
			}
		})
	}
	if h.view.Driver.Len() != 0 {
		t.Fatalf("%d nodes applied from bad messages", h.view.Driver.Len())
	}
}

func TestCommandRowsAreRouted(t *testing.T) {
	h := start(t)
	a := h.connect(t)

	// A verify walk's rows are compared with the view, never applied.
	id, result, ok := h.commands.StartVerify("demo")
	if !ok {
		t.Fatal("no command slot")
	}
	if err := h.view.Driver.VerifyStart(id, "/", 10, false); err != nil {
		t.Fatal(err)
	}
	a.send(t, batch(fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND, "fs", id, "/w1", "/w2"))
	if ack := a.ack(t); ack.GetRowsApplied() != 2 || ack.GetError() != "" {
		t.Fatalf("verify rows ack %+v", ack)
	}
	a.send(t, &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_CommandResult{CommandResult: &fustorv1.CommandResult{CommandId: id, Ok: true}}})
	a.ack(t)
	select {
	case r := <-result:
		if !r.OK {
			t.Fatalf("result %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command result did not reach the tracker")
	}
	res, err := h.view.Driver.VerifyEnd(id)
	if err != nil {
		t.Fatal(err)
	}
	if res.Walked != 2 || res.Missing != 2 || h.view.Driver.Len() != 0 {
		t.Fatalf("verify %+v, %d nodes; want two missing paths compared, none applied", res, h.view.Driver.Len())
	}

	// A scan's rows are applied.
	id, _, ok = h.commands.Start()
	if !ok {
		t.Fatal("no command slot")
	}
	a.send(t, batch(fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND, "fs", id, "/s1"))
	if ack := a.ack(t); ack.GetRowsApplied() != 1 {
		t.Fatalf("scan rows ack %+v", ack)
	}
	if _, err := h.view.Driver.Stat("/s1"); err != nil {
		t.Fatalf("scan row not applied: %v", err)
	}
	h.commands.Cancel(id)
}

// TestUnknownSessionCarriesReason: what the agent tells "create a new session" by, over the
// wire. Another NOT_FOUND would carry no such detail.
func TestUnknownSessionCarriesReason(t *testing.T) {
	h := start(t)
	sc := fustorv1.NewSessionServiceClient(h.conn)
	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"heartbeat", func() error {
			_, err := sc.Heartbeat(ingest(), &fustorv1.HeartbeatRequest{SessionId: "gone"})
			return err
		}},
		{"close", func() error {
			_, err := sc.CloseSession(ingest(), &fustorv1.CloseSessionRequest{SessionId: "gone"})
			return err
		}},
		{"push", func() error {
			a := &agent{id: "gone"}
			ctx, cancel := context.WithCancel(ingest())
			defer cancel()
			var err error
			if a.stream, err = fustorv1.NewPushServiceClient(h.conn).Push(ctx); err != nil {
				return err
			}
			a.send(t, &fustorv1.PushRequest{})
			return a.end(t)
		}},
		{"push of a session closed under it", func() error {
			a := h.connect(t)
			if err := h.sessions.Close(a.id); err != nil {
				t.Fatal(err)
			}
			return a.end(t)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(tt.call())
			if st.Code() != codes.NotFound || !hasReason(st, errs.ReasonSessionNotFound) {
				t.Fatalf("status %v %q, details %v; want NOT_FOUND with ErrorInfo %s", st.Code(), st.Message(), st.Details(), errs.ReasonSessionNotFound)
			}
		})
	}
}

func hasReason(st *status.Status, reason string) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason && info.GetDomain() == errs.ErrorDomain {
			return true
		}
	}
	return false
}
