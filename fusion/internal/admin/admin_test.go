package admin

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness serves AdminService on the real gRPC server (auth and error mapping included) on
// 127.0.0.1:0 over two pipes, "p1" feeding views a and b and "p2" feeding c.
type harness struct {
	client   fustorv1.AdminServiceClient
	sessions *session.Manager
	views    *view.Registry
	pipes    map[string]*pipe.Pipe
}

func start(t *testing.T) *harness {
	t.Helper()
	cfg := config.Demo()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = time.Second
	vc := config.View{Driver: "fs", Schema: "fs"}
	views := view.NewRegistry(nil, config.Config{Views: map[string]config.View{"a": vc, "b": vc, "c": vc}}, nil)
	get := func(name string) *view.View {
		v, err := views.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sessions := session.NewManager(nil, nil, 16, session.Hooks{LeaderChanged: func(key, id string) {
		if m, ok := views.ByKey(key); ok {
			m.SetLeader(id)
		}
	}})
	pipes := map[string]*pipe.Pipe{
		"p1": pipe.New(nil, "p1", []*view.View{get("a"), get("b")}, 8),
		"p2": pipe.New(nil, "p2", []*view.View{get("c")}, 4),
	}
	keys, err := cfg.Keys()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(nil, cfg.Server, server.NewKeys(keys), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fustorv1.RegisterAdminServiceServer(srv.GRPC(), New(Static{PipeMap: pipes, Receivers: map[string]string{"p1": "r1", "p2": "r2"}}, sessions, views))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		sessions.CloseAll("test over")
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return &harness{client: fustorv1.NewAdminServiceClient(conn), sessions: sessions, views: views, pipes: pipes}
}

func admin() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer demo-key")
}

func (h *harness) open(t *testing.T, pipeID string, views ...string) *session.Session {
	t.Helper()
	s, err := h.sessions.Create(session.Pipe{ID: pipeID, Views: views, Timeout: time.Minute},
		session.Info{AgentID: "agent-" + pipeID, TaskID: "task", SourceURI: "fs:///data", CanRealtime: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestListPipes(t *testing.T) {
	h := start(t)
	h.open(t, "p1", "a", "b")
	h.open(t, "p1", "a", "b")
	h.pipes["p2"].CountRejected(3)
	resp, err := h.client.ListPipes(admin(), &fustorv1.ListPipesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPipes()) != 2 {
		t.Fatalf("pipes %v", resp.GetPipes())
	}
	p1, p2 := resp.GetPipes()[0], resp.GetPipes()[1]
	if p1.GetId() != "p1" || p1.GetReceiver() != "r1" || p1.GetSessions() != 2 || p1.GetQueueCap() != 8 ||
		len(p1.GetViews()) != 2 || p1.GetViews()[0] != "a" || p1.GetViews()[1] != "b" {
		t.Errorf("p1 = %v", p1)
	}
	if p2.GetId() != "p2" || p2.GetReceiver() != "r2" || p2.GetSessions() != 0 || p2.GetRowsRejected() != 3 || p2.GetQueueCap() != 4 {
		t.Errorf("p2 = %v", p2)
	}
}

func TestListSessions(t *testing.T) {
	h := start(t)
	leader := h.open(t, "p1", "a", "b")
	h.open(t, "p2", "c")
	leader.Count("batches", 5)
	all, err := h.client.ListSessions(admin(), &fustorv1.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.GetSessions()) != 2 {
		t.Fatalf("sessions %v", all.GetSessions())
	}
	only, err := h.client.ListSessions(admin(), &fustorv1.ListSessionsRequest{View: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(only.GetSessions()) != 1 {
		t.Fatalf("sessions of view b: %v", only.GetSessions())
	}
	s := only.GetSessions()[0]
	if s.GetSessionId() != leader.ID || s.GetPipeId() != "p1" || s.GetRole() != fustorv1.Role_ROLE_LEADER ||
		s.GetAgentId() != "agent-p1" || s.GetTaskId() != "task" || s.GetSourceUri() != "fs:///data" ||
		!s.GetCanRealtime() || s.GetCounters()["batches"] != 5 || s.GetCreatedAt() == nil || s.GetLastHeartbeat() == nil {
		t.Errorf("session %v", s)
	}
}

func TestListViews(t *testing.T) {
	h := start(t)
	s := h.open(t, "p1", "a", "b")
	av, _ := h.views.Get("a")
	a, _ := av.Member("")
	if _, _, err := a.Driver.Apply(view.OriginSnapshot, 0, []fsbatch.Row{{Name: "f"}, {Name: "g"}}); err != nil {
		t.Fatal(err)
	}
	a.SnapshotEnded(s.ID)
	resp, err := h.client.ListViews(admin(), &fustorv1.AdminServiceListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetViews()) != 3 {
		t.Fatalf("views %v", resp.GetViews())
	}
	va, vc := resp.GetViews()[0], resp.GetViews()[2]
	if va.GetId() != "a" || va.GetDriver() != "fs" || va.GetNodes() != 2 || va.GetMemoryBytes() == 0 ||
		!va.GetMeta().GetAuthoritativeSession() || !va.GetMeta().GetSnapshotComplete() {
		t.Errorf("view a = %v", va)
	}
	if vc.GetId() != "c" || vc.GetNodes() != 0 || vc.GetMeta().GetAuthoritativeSession() || vc.GetMeta().GetSnapshotComplete() {
		t.Errorf("view c = %v", vc)
	}
}

func TestReloadIsAPrecondition(t *testing.T) {
	h := start(t)
	if _, err := h.client.Reload(admin(), &fustorv1.ReloadRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Reload: %v; want FAILED_PRECONDITION", err)
	}
}
