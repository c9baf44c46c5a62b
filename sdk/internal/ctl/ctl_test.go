package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a small ViewService/AdminService for the CLI's own tests; the end-to-end tests
// (fusion/e2e) run fustorctl against the real Fusion.
type server struct {
	fustorv1.UnimplementedViewServiceServer
	mu    sync.Mutex
	keys  []string
	reqs  []any
	views []string
	// drivers holds the views' drivers ("" is fs); forest-fs views answer a request without
	// member as Fusion fans out (forest_test.go).
	drivers map[string]string
}

func (s *server) record(ctx context.Context, req any) error {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, strings.Join(md.Get("authorization"), ","))
	s.reqs = append(s.reqs, req)
	if len(md.Get("authorization")) == 0 {
		return status.Error(codes.Unauthenticated, "missing API key")
	}
	return nil
}

func (s *server) ListViews(ctx context.Context, req *fustorv1.ListViewsRequest) (*fustorv1.ListViewsResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	out := &fustorv1.ListViewsResponse{}
	for _, v := range s.views {
		vi := &fustorv1.ViewInfo{Id: v, Driver: s.drivers[v]}
		if s.drivers[v] == "forest-fs" {
			vi.Meta = forestMeta(v)
		}
		out.Views = append(out.Views, vi)
	}
	return out, nil
}

func (s *server) ListDirectory(ctx context.Context, req *fustorv1.ListDirectoryRequest) (*fustorv1.ListDirectoryResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	if s.fanOut(req.GetView(), req.GetMember()) {
		return forestList(req)
	}
	if req.GetPageToken() == "" {
		return &fustorv1.ListDirectoryResponse{Entries: []*fustorv1.Entry{{Path: "/a", KnownByAgent: true}}, NextPageToken: "p2"}, nil
	}
	return &fustorv1.ListDirectoryResponse{Entries: []*fustorv1.Entry{{Path: "/b", IsDir: true, KnownByAgent: true}}}, nil
}

func (s *server) Stat(ctx context.Context, req *fustorv1.StatRequest) (*fustorv1.StatResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	if s.fanOut(req.GetView(), req.GetMember()) {
		return forestStat(req)
	}
	if req.GetPath() != "/a" {
		return nil, status.Errorf(codes.NotFound, "path not found: %s", req.GetPath())
	}
	return &fustorv1.StatResponse{Entry: &fustorv1.Entry{Path: "/a", Size: 5, Mtime: timestamppb.New(timestamppb.Now().AsTime()), IntegritySuspect: true}}, nil
}

func (s *server) Find(ctx context.Context, req *fustorv1.FindRequest) (*fustorv1.FindResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	if s.fanOut(req.GetView(), req.GetMember()) {
		return forestFind(req)
	}
	if req.GetPackedPaths() {
		return &fustorv1.FindResponse{PackedPaths: []byte("/x.dat\x00/y dir\x00"), DirIndexes: []uint32{1}, Truncated: true}, nil
	}
	return &fustorv1.FindResponse{Entries: []*fustorv1.Entry{{Path: "/x.dat"}}, Truncated: true}, nil
}

func (s *server) GetStats(ctx context.Context, req *fustorv1.GetStatsRequest) (*fustorv1.GetStatsResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	if s.fanOut(req.GetView(), req.GetMember()) {
		return forestStats(req), nil
	}
	return &fustorv1.GetStatsResponse{FileCount: 7, DirCount: 2, TotalSize: 99}, nil
}

func (s *server) GetTree(req *fustorv1.GetTreeRequest, stream fustorv1.ViewService_GetTreeServer) error {
	if err := s.record(stream.Context(), req); err != nil {
		return err
	}
	if s.fanOut(req.GetView(), req.GetMember()) {
		return forestTree(req, stream)
	}
	for _, p := range []string{"/t1", "/t2", "/t3"} {
		if err := stream.Send(&fustorv1.GetTreeResponse{Entries: []*fustorv1.Entry{{Path: p}}}); err != nil {
			return err
		}
	}
	return nil
}

type admin struct {
	fustorv1.UnimplementedAdminServiceServer
	s *server
}

func (a admin) ListSessions(ctx context.Context, req *fustorv1.ListSessionsRequest) (*fustorv1.ListSessionsResponse, error) {
	return a.s.ListSessions(ctx, req)
}

func (s *server) ListSessions(ctx context.Context, req *fustorv1.ListSessionsRequest) (*fustorv1.ListSessionsResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	return &fustorv1.ListSessionsResponse{Sessions: []*fustorv1.SessionInfo{{SessionId: "s1", AgentId: "agent-1", Role: fustorv1.Role_ROLE_LEADER}}}, nil
}

func (s *server) last() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1]
}

func startServer(t *testing.T, views ...string) (*server, string) {
	t.Helper()
	return startServerWith(t, nil, views...)
}

// startServerWith is startServer with server options (TLS credentials).
func startServerWith(t *testing.T, opts []grpc.ServerOption, views ...string) (*server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A view given as NAME=DRIVER has that driver.
	s := &server{drivers: map[string]string{}}
	for _, v := range views {
		name, driver, _ := strings.Cut(v, "=")
		s.views = append(s.views, name)
		s.drivers[name] = driver
	}
	g := grpc.NewServer(opts...)
	fustorv1.RegisterViewServiceServer(g, s)
	fustorv1.RegisterAdminServiceServer(g, admin{s: s})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s, lis.Addr().String()
}

func run(addr string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Run(context.Background(), append([]string{"--server", addr}, args...), &o, &e, func(string) string { return "" })
	return code, o.String(), e.String()
}

func TestCommands(t *testing.T) {
	s, addr := startServer(t, "demo")
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, req any, out string)
	}{
		{"ls follows pages with --all", []string{"--key", "k", "ls", "/", "--all", "--depth", "2", "--json"}, func(t *testing.T, req any, out string) {
			r := req.(*fustorv1.ListDirectoryRequest)
			if r.GetPageToken() != "p2" || r.GetMaxDepth() != 2 || r.GetView() != "demo" {
				t.Fatalf("last request %v", r)
			}
			var doc struct{ Entries []map[string]any }
			if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Entries) != 2 {
				t.Fatalf("json %q: %v", out, err)
			}
		}},
		{"find with glob, limit and type", []string{"--key", "k", "find", "/up", "--glob", "*.dat", "--limit", "5", "--type", "f", "--view", "v2", "--force-real-time"}, func(t *testing.T, req any, out string) {
			r := req.(*fustorv1.FindRequest)
			if r.GetGlob() != "*.dat" || r.GetLimit() != 5 || !r.GetFilesOnly() || r.GetView() != "v2" || !r.GetForceRealTime().GetEnabled() || r.GetPath() != "/up" {
				t.Fatalf("request %v", r)
			}
			if !strings.Contains(out, "/x.dat") || !strings.Contains(out, "truncated") {
				t.Fatalf("output %q", out)
			}
		}},
		{"find --paths prints one path per line", []string{"--key", "k", "find", "/", "--name", "x.dat", "--paths"}, func(t *testing.T, req any, out string) {
			if r := req.(*fustorv1.FindRequest); !r.GetOnlyPaths() || !r.GetPackedPaths() || r.GetName() != "x.dat" {
				t.Fatalf("request %v", r)
			}
			if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || lines[0] != "/x.dat" || lines[1] != "/y dir" {
				t.Fatalf("output %q", out)
			}
		}},
		{"find --paths --json keeps entries", []string{"--key", "k", "--json", "find", "/", "--name", "x.dat", "--paths"}, func(t *testing.T, req any, out string) {
			if r := req.(*fustorv1.FindRequest); !r.GetOnlyPaths() || r.GetPackedPaths() {
				t.Fatalf("request %v", r)
			}
			if !strings.Contains(out, `"/x.dat"`) {
				t.Fatalf("output %q", out)
			}
		}},
		{"stats defaults to the root", []string{"--key", "k", "stats"}, func(t *testing.T, req any, out string) {
			if req.(*fustorv1.GetStatsRequest).GetPath() != "/" || !strings.Contains(out, "files:") || !strings.Contains(out, "7") {
				t.Fatalf("req %v out %q", req, out)
			}
		}},
		{"stat human output shows flags", []string{"stat", "/a", "--key", "k"}, func(t *testing.T, _ any, out string) {
			if !strings.Contains(out, "integrity_suspect:  true") {
				t.Fatalf("output %q", out)
			}
		}},
		{"tree merges chunks into one document", []string{"--key", "k", "--json", "tree", "/"}, func(t *testing.T, _ any, out string) {
			var doc struct{ Entries []map[string]any }
			if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Entries) != 3 {
				t.Fatalf("json %q: %v", out, err)
			}
		}},
		{"sessions", []string{"--key", "k", "sessions"}, func(t *testing.T, _ any, out string) {
			if !strings.Contains(out, "agent-1") || !strings.Contains(out, "leader") {
				t.Fatalf("output %q", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(addr, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			tt.check(t, s.last(), out)
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k != "Bearer k" {
			t.Fatalf("key sent as %q", k)
		}
	}
}

func TestErrorsAndUsage(t *testing.T) {
	_, addr := startServer(t, "a", "b")
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"not found", []string{"--key", "k", "--view", "a", "stat", "/zz"}, 1, "NotFound: path not found: /zz"},
		{"no key", []string{"--view", "a", "stat", "/a"}, 1, "Unauthenticated"},
		{"view needed", []string{"--key", "k", "stat", "/a"}, 2, "--view is required"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"find needs a pattern", []string{"--key", "k", "--view", "a", "find", "/"}, 2, "exactly one of --name and --glob"},
		{"missing path", []string{"--key", "k", "--view", "a", "stat"}, 2, "a PATH is required"},
		{"bad flag", []string{"--nope"}, 2, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(addr, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.contains) {
				t.Fatalf("exit %d stderr %q; want %d and %q", code, errOut, tt.code, tt.contains)
			}
		})
	}
	if code, out, _ := run(addr, "help"); code != 0 || !strings.Contains(out, "Examples:") {
		t.Fatalf("help exit %d: %q", code, out)
	}
}
