package app

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// reloadable starts Fusion from cfg with a Load that returns what next holds.
type reloadable struct {
	*harness
	mu   sync.Mutex
	next config.Config
	err  error
}

func startReloadable(t *testing.T, mutate func(*config.Config)) *reloadable {
	r := &reloadable{}
	r.harness = startWith(t, mutate, func(o *Options) {
		o.Load = func() (config.Config, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.next, r.err
		}
		o.HealthInterval = 5 * time.Millisecond
	})
	r.next = r.f.rt.cfg
	return r
}

// set makes the next reload read c (a copy is taken through mutate).
func (r *reloadable) set(mutate func(*config.Config)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.f.rt.cfg
	// Deep enough a copy for the tests: the maps are replaced, never written in place.
	c.Pipes, c.Views, c.Receivers = copyMap(c.Pipes), copyMap(c.Views), copyMap(c.Receivers)
	mutate(&c)
	r.next = c
}

func copyMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (r *reloadable) reload(t *testing.T) *fustorv1.ReloadResponse {
	t.Helper()
	resp, err := fustorv1.NewAdminServiceClient(r.conn).Reload(withKey("demo-key"), &fustorv1.ReloadRequest{})
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return resp
}

// TestReloadKeepsUntouchedViews: a reload adds a view and a pipe, removes another pipe and
// view, changes a key and a view's hot threshold; the untouched view keeps its tree and its
// session; an invalid configuration changes nothing.
func TestReloadKeepsUntouchedViews(t *testing.T) {
	r := startReloadable(t, func(c *config.Config) {
		c.Pipes["old"] = config.Pipe{Receiver: "default", Views: []string{"old"}}
		c.Views["old"] = config.View{Driver: "fs", Schema: "fs", Live: true, QueryKeys: []string{"demo-key"}}
		rc := c.Receivers["default"]
		rc.APIKeys = append(rc.APIKeys, config.APIKey{Key: "old-ingest", Pipe: "old"})
		c.Receivers["default"] = rc
	})
	a := r.connect(t)
	a.snapshot(t, map[string]uint64{"/a": 1, "/b": 2})
	q, ctx := r.views(), withKey("demo-key")

	r.set(func(c *config.Config) {
		delete(c.Pipes, "old")
		delete(c.Views, "old")
		c.Pipes["new"] = config.Pipe{Receiver: "default", Views: []string{"new"}}
		c.Views["new"] = config.View{Driver: "fs", Schema: "fs", Live: true, QueryKeys: []string{"new-query"}}
		c.Receivers["default"] = config.Receiver{APIKeys: []config.APIKey{{Key: "demo-ingest-key", Pipe: "demo"}, {Key: "new-ingest", Pipe: "new"}}}
		v := c.Views["demo"]
		v.HotThreshold = 10 * time.Second
		v.QueryKeys = []string{"demo-key", "second-key"}
		c.Views["demo"] = v
	})
	resp := r.reload(t)
	want := []string{"pipe removed: old", "view removed: old", "view added: new", "pipe added: new", "view changed: demo (query keys, hot_threshold 30s -> 10s)", "api keys changed"}
	for _, w := range want {
		if !strings.Contains(strings.Join(resp.GetChanges(), "\n"), w) {
			t.Errorf("changes %q lack %q", resp.GetChanges(), w)
		}
	}
	// The untouched pipe's session and the view's tree are the same.
	if _, err := r.session().Heartbeat(withKey("demo-ingest-key"), &fustorv1.HeartbeatRequest{SessionId: a.id}); err != nil {
		t.Fatalf("the demo session did not survive the reload: %v", err)
	}
	st, err := q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/"})
	if err != nil || st.GetFileCount() != 2 {
		t.Fatalf("demo after reload: %v, %v", st, err)
	}
	if _, err := q.GetStats(withKey("second-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"}); err != nil {
		t.Fatalf("the added query key: %v", err)
	}
	if _, err := q.Stat(ctx, &fustorv1.StatRequest{View: "old", Path: "/"}); status.Code(err) != codes.NotFound {
		t.Fatalf("removed view: %v", err)
	}
	if _, err := q.Stat(withKey("new-query"), &fustorv1.StatRequest{View: "new", Path: "/"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("added view: %v; want UNAVAILABLE until an agent feeds it", err)
	}
	n := r.connectWith(t, "new-ingest")
	n.snapshot(t, map[string]uint64{"/x": 1})
	if st, err := q.GetStats(withKey("new-query"), &fustorv1.GetStatsRequest{View: "new", Path: "/"}); err != nil || st.GetFileCount() != 1 {
		t.Fatalf("new view fed: %v, %v", st, err)
	}

	// An invalid configuration: refused with every error, nothing changes.
	r.set(func(c *config.Config) {
		p := c.Pipes["demo"]
		p.Views = []string{"nope"}
		c.Pipes["demo"] = p
		c.Server.MaxSessions = 0
	})
	_, err = fustorv1.NewAdminServiceClient(r.conn).Reload(withKey("demo-key"), &fustorv1.ReloadRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown view "nope"`) || !strings.Contains(err.Error(), "max_sessions") {
		t.Fatalf("invalid reload: %v", err)
	}
	if st, err := q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/"}); err != nil || st.GetFileCount() != 2 {
		t.Fatalf("demo after a refused reload: %v, %v", st, err)
	}
	if r.f.rt.lastReloadOK.Load() {
		t.Fatal("the last reload is recorded as successful")
	}
}

// TestHealthFollowsReadiness: the server is SERVING once it runs; a view's service is
// NOT_SERVING until its leader's snapshot is applied.
func TestHealthFollowsReadiness(t *testing.T) {
	r := startReloadable(t, nil)
	hc := healthpb.NewHealthClient(r.conn)
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return resp.GetStatus()
	}
	waitStatus := func(svc string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for check(svc) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%q: %v; want %v", svc, check(svc), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitStatus("", healthpb.HealthCheckResponse_SERVING)
	waitStatus("fustor.v1.ViewService/demo", healthpb.HealthCheckResponse_NOT_SERVING)
	a := r.connect(t)
	a.snapshot(t, map[string]uint64{"/a": 1})
	waitStatus("fustor.v1.ViewService/demo", healthpb.HealthCheckResponse_SERVING)
}

// A panic that escapes a pipe's loop is recovered, counted and the loop runs again.
func TestPipePartPanicIsRecovered(t *testing.T) {
	h := start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	second := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- h.f.rt.supervise(ctx, "demo", "test", func(ctx context.Context) error {
			if calls.Add(1) == 1 {
				panic("boom")
			}
			close(second)
			<-ctx.Done()
			return nil
		})
	}()
	select {
	case <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop was not started again after its panic")
	}
	if h.f.panics.Load() != 1 {
		t.Fatalf("panics %d; want 1", h.f.panics.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestReloadSchemaVersionRestartsThePipe: a reload that changes a rows view's schema_version
// restarts the pipes that feed it, so a session opened for the old version stops feeding the
// view; a new session must declare the new version. The view keeps its rows.
func TestReloadSchemaVersionRestartsThePipe(t *testing.T) {
	version := func(n uint32) func(*config.Config) {
		return func(c *config.Config) {
			v := c.Views["subs"]
			v.SchemaVersion = n
			c.Views["subs"] = v
		}
	}
	r := startReloadable(t, func(c *config.Config) { withRows(c); version(1)(c) })
	a := r.rowsAgent(t)
	a.rowSnapshot(t, grow("k1", 1, "v", "one"))

	r.set(version(2))
	resp := r.reload(t)
	if !slices.Contains(resp.GetPipesChanged(), "subs") {
		t.Fatalf("reload changes %q: pipe subs not restarted", resp.GetChanges())
	}
	ingest := withKey("rows-ingest-key")
	if _, err := r.session().Heartbeat(ingest, &fustorv1.HeartbeatRequest{SessionId: a.id}); err == nil {
		t.Fatal("the session of schema_version 1 survived the change to 2")
	}
	_, err := r.session().CreateSession(ingest, &fustorv1.CreateSessionRequest{AgentId: "old", SchemaName: "submissions", SchemaVersion: 1})
	wantCode(t, err, codes.FailedPrecondition, "version 2, not version 1")
	s, err := r.session().CreateSession(ingest, &fustorv1.CreateSessionRequest{AgentId: "new", SchemaName: "submissions", SchemaVersion: 2})
	if err != nil {
		t.Fatalf("a session of the new version: %v", err)
	}
	_, _ = r.session().CloseSession(ingest, &fustorv1.CloseSessionRequest{SessionId: s.GetSessionId()})
	if got, err := r.views().GetRow(withKey("demo-key"), &fustorv1.GetRowRequest{View: "subs", Key: "k1"}); err != nil || got.GetRow().GetFields()["v"] != "one" {
		t.Fatalf("GetRow after the reload = %v, %v; the view should keep its rows", got, err)
	}
}
