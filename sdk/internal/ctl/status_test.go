package ctl

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// walking is a leader session of view (a leadership key) reporting a walk; walks is Fusion's
// count of the walks it ended.
func walking(key string, w *fustorv1.WalkProgress, walks uint64) *fustorv1.SessionInfo {
	return &fustorv1.SessionInfo{SessionId: "s-" + key, AgentId: "agent-" + key, Role: fustorv1.Role_ROLE_LEADER, Views: []string{key},
		Counters: map[string]uint64{"snapshots": walks}, Progress: &fustorv1.Progress{SnapshotRunning: w != nil, Walk: w}}
}

func snap(dirs, files, total uint64) *fustorv1.WalkProgress {
	return &fustorv1.WalkProgress{Kind: "snapshot", Dirs: dirs, Files: files, Elapsed: durationpb.New(10 * time.Second),
		EntriesPerSecond: float64(dirs+files) / 10, EstimatedTotal: total}
}

func fsView(id string, nodes uint64, led, complete bool) *fustorv1.AdminViewInfo {
	return &fustorv1.AdminViewInfo{Id: id, Driver: "fs", Nodes: nodes, Meta: &fustorv1.ViewMeta{View: id, AuthoritativeSession: led, SnapshotComplete: complete}}
}

// TestRenderStatus: what `fustorctl status` prints for each state a view can be in, on a
// terminal (a bar) and without one (plain figures).
func TestRenderStatus(t *testing.T) {
	for _, tc := range []struct {
		name     string
		views    []*fustorv1.AdminViewInfo
		sessions []*fustorv1.SessionInfo
		tty      bool
		want     []string // lines, in order
	}{
		{"bar at 0 %", []*fustorv1.AdminViewInfo{fsView("demo", 1000, true, true)}, []*fustorv1.SessionInfo{walking("demo", snap(0, 0, 1000), 1)}, true, []string{
			"demo: ready, leader agent-demo (session s-demo), 1000 nodes",
			"  snapshot [....................]   0%  dirs 0  files 0 of ~1000 (last walk)  0/s  elapsed 10s",
		}},
		{"bar at 50 %", []*fustorv1.AdminViewInfo{fsView("demo", 1000, true, true)}, []*fustorv1.SessionInfo{walking("demo", snap(100, 400, 1000), 1)}, true, []string{
			"demo: ready, leader agent-demo (session s-demo), 1000 nodes",
			"  snapshot [##########..........]  50%  dirs 100  files 400 of ~1000 (last walk)  50/s  elapsed 10s  eta 10s",
		}},
		{"bar at 100 %, tree grown past the estimate", []*fustorv1.AdminViewInfo{fsView("demo", 1000, true, true)}, []*fustorv1.SessionInfo{walking("demo", snap(100, 1100, 1000), 1)}, true, []string{
			"demo: ready, leader agent-demo (session s-demo), 1000 nodes",
			"  snapshot [####################] 100%  dirs 100  files 1100 of ~1000 (last walk)  120/s  elapsed 10s  eta 0s",
		}},
		{"total from the view's nodes, no terminal", []*fustorv1.AdminViewInfo{fsView("demo", 2000, true, true)}, []*fustorv1.SessionInfo{walking("demo", snap(10, 490, 0), 1)}, false, []string{
			"demo: ready, leader agent-demo (session s-demo), 2000 nodes",
			"  snapshot  25%  dirs 10  files 490 of ~2000 (view)  50/s  elapsed 10s  eta 30s",
		}},
		{"first snapshot: total unknown", []*fustorv1.AdminViewInfo{fsView("demo", 500, true, false)}, []*fustorv1.SessionInfo{walking("demo", snap(10, 490, 0), 0)}, true, []string{
			"demo: not ready: first snapshot running, leader agent-demo (session s-demo), 500 nodes",
			"  snapshot  dirs 10  files 490  50/s  elapsed 10s  (total unknown: no earlier walk)",
		}},
		{"no agent", []*fustorv1.AdminViewInfo{fsView("demo", 0, false, false)}, nil, true, []string{
			"demo: not ready: no leader (no agent connected), 0 nodes",
		}},
		{"leader without a snapshot yet", []*fustorv1.AdminViewInfo{fsView("demo", 0, true, false)}, []*fustorv1.SessionInfo{walking("demo", nil, 0)}, false, []string{
			"demo: not ready: waiting for the leader's first snapshot, leader agent-demo (session s-demo), 0 nodes",
		}},
		{"forest: one line per member", []*fustorv1.AdminViewInfo{{Id: "all", Driver: "forest-fs", Nodes: 3000, Meta: &fustorv1.ViewMeta{View: "all",
			Members: []*fustorv1.MemberStatus{
				{Member: "storage-1", AuthoritativeSession: true, SnapshotComplete: true, Ready: true},
				{Member: "storage-2", Ready: false, Reason: "member \"storage-2\" of view \"all\" has no leader session"},
			}}}}, []*fustorv1.SessionInfo{walking("all/storage-1", &fustorv1.WalkProgress{Kind: "audit", Dirs: 5, Files: 195,
			Elapsed: durationpb.New(2 * time.Second), EntriesPerSecond: 100, EstimatedTotal: 800}, 3)}, true, []string{
			"all: forest of 2 members, not ready: a member is not ready, 3000 nodes",
			"  storage-1: ready, leader agent-all/storage-1 (session s-all/storage-1)",
			"    audit [#####...............]  25%  dirs 5  files 195 of ~800 (last walk)  100/s  elapsed 2s  eta 6s",
			"  storage-2: not ready: no leader (no agent connected)",
		}},
		{"followers are not leaders", []*fustorv1.AdminViewInfo{fsView("demo", 0, false, false)}, []*fustorv1.SessionInfo{{SessionId: "f", Role: fustorv1.Role_ROLE_FOLLOWER, Views: []string{"demo"}}}, true, []string{
			"demo: not ready: no leader (no agent connected), 0 nodes",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			renderStatus(&b, buildStatus(tc.views, tc.sessions), tc.tty)
			if got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestStatusJSON: --json is one document with each view's state and its walk's figures; the
// percentage and ETA are there only when a total is known.
func TestStatusJSON(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodes    uint64
		complete bool
		walk     *fustorv1.WalkProgress
		want     string
	}{
		{"known total", 1000, true, snap(100, 400, 1000),
			`{"views":[{"view":"demo","driver":"fs","nodes":1000,"ready":true,"leader":{"agent":"agent-demo","session":"s-demo"},` +
				`"walk":{"kind":"snapshot","dirs":100,"files":400,"elapsed_seconds":10,"entries_per_second":50,"total":1000,"total_from":"last_walk","percent":50,"eta_seconds":10}}]}`},
		{"unknown total", 600, false, snap(100, 400, 0),
			`{"views":[{"view":"demo","driver":"fs","nodes":600,"ready":false,"reason":"first snapshot running","leader":{"agent":"agent-demo","session":"s-demo"},` +
				`"walk":{"kind":"snapshot","dirs":100,"files":400,"elapsed_seconds":10,"entries_per_second":50}}]}`},
		{"no walk", 600, true, nil,
			`{"views":[{"view":"demo","driver":"fs","nodes":600,"ready":true,"leader":{"agent":"agent-demo","session":"s-demo"}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startStatusServer(t, statusState{views: []*fustorv1.AdminViewInfo{fsView("demo", tc.nodes, true, tc.complete)},
				sessions: []*fustorv1.SessionInfo{walking("demo", tc.walk, 1)}})
			code, out, errOut := run(addr, "--key", "admin", "status", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var got, want any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not one JSON document: %v\n%s", err, out)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if string(g) != string(w) {
				t.Fatalf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// TestStatusWatch: --watch asks again until the walk ends, and shows the end as 100 % done
// once Fusion counted the walk's end marker — even when the last heartbeat still shows it.
func TestStatusWatch(t *testing.T) {
	views := []*fustorv1.AdminViewInfo{fsView("demo", 1000, true, true)}
	addr := startStatusServer(t,
		statusState{views: views, sessions: []*fustorv1.SessionInfo{walking("demo", snap(100, 400, 1000), 1)}},
		statusState{views: views, sessions: []*fustorv1.SessionInfo{walking("demo", snap(100, 800, 1000), 2)}}, // ended; stale heartbeat
	)
	code, out, errOut := run(addr, "--key", "admin", "status", "--watch")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "demo: ready, leader agent-demo (session s-demo), 1000 nodes\n" +
		"  snapshot  50%  dirs 100  files 400 of ~1000 (last walk)  50/s  elapsed 10s  eta 10s\n" +
		"demo: ready, leader agent-demo (session s-demo), 1000 nodes\n" +
		"  snapshot done 100%\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

// TestMarkDone: a walk is done when its leader's count of ended walks grows; a walk whose
// session went away is forgotten, not called done. --watch goes on while a walk runs or a
// view with a leader is not ready yet, and not for a view without an agent.
func TestMarkDone(t *testing.T) {
	views := []*fustorv1.AdminViewInfo{fsView("demo", 1000, true, true)}
	for _, tc := range []struct {
		name        string
		view        *fustorv1.AdminViewInfo
		next        *fustorv1.SessionInfo
		wantRunning bool
		wantDone    bool
	}{
		{"still running", views[0], walking("demo", snap(1, 2, 0), 1), true, false},
		{"ended", views[0], walking("demo", nil, 2), false, true},
		{"ended, stale heartbeat", views[0], walking("demo", snap(1, 2, 0), 2), false, true},
		{"session gone", fsView("demo", 1000, false, true), nil, false, false},
		{"vanished without an end", views[0], walking("demo", nil, 1), false, false},
		{"new leader, first snapshot due", fsView("demo", 0, true, false), walking("demo", nil, 0), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]*seenWalk{}
			if !markDone(buildStatus(views, []*fustorv1.SessionInfo{walking("demo", snap(1, 1, 0), 1)}), seen) {
				t.Fatal("a running walk not seen running")
			}
			var next []*fustorv1.SessionInfo
			if tc.next != nil {
				next = append(next, tc.next)
			}
			doc := buildStatus([]*fustorv1.AdminViewInfo{tc.view}, next)
			running := markDone(doc, seen)
			done := doc.Views[0].Walk != nil && doc.Views[0].Walk.Done
			if running != tc.wantRunning || done != tc.wantDone {
				t.Fatalf("running %v, done %v; want %v, %v", running, done, tc.wantRunning, tc.wantDone)
			}
		})
	}
}

// TestMarkDoneUnreportedSnapshot: a first snapshot no heartbeat caught (shorter than the
// heartbeat interval) is still shown done once it ended and the view became ready.
func TestMarkDoneUnreportedSnapshot(t *testing.T) {
	seen := map[string]*seenWalk{}
	if !markDone(buildStatus([]*fustorv1.AdminViewInfo{fsView("demo", 10, true, false)}, []*fustorv1.SessionInfo{walking("demo", nil, 0)}), seen) {
		t.Fatal("a view waiting for its first snapshot is not watched")
	}
	// Fusion counted the end before its pipe applied the walk: done, but watched on.
	doc := buildStatus([]*fustorv1.AdminViewInfo{fsView("demo", 900, true, false)}, []*fustorv1.SessionInfo{walking("demo", nil, 1)})
	if !markDone(doc, seen) || !doc.Views[0].Walk.GetDone() || doc.Views[0].Reason != reasonApplying {
		t.Fatalf("walk %+v, reason %q; want the snapshot done, being applied, and watched on", doc.Views[0].Walk, doc.Views[0].Reason)
	}
	doc = buildStatus([]*fustorv1.AdminViewInfo{fsView("demo", 1000, true, true)}, []*fustorv1.SessionInfo{walking("demo", nil, 1)})
	if markDone(doc, seen) || !doc.Views[0].Walk.GetDone() {
		t.Fatalf("walk %+v; want the first snapshot done and nothing left to watch", doc.Views[0].Walk)
	}
}

// GetDone is nil-safe, as the generated getters are.
func (w *walkStatus) GetDone() bool { return w != nil && w.Done }

// statusState is one answer of the status server: its views and sessions.
type statusState struct {
	views    []*fustorv1.AdminViewInfo
	sessions []*fustorv1.SessionInfo
}

// statusAdmin is an AdminService answering from a script of states: each ListViews moves to
// the next state (the last one stays), and ListSessions answers from the same one.
type statusAdmin struct {
	fustorv1.UnimplementedAdminServiceServer
	mu     sync.Mutex
	states []statusState
	at     int
}

func (a *statusAdmin) ListViews(context.Context, *fustorv1.AdminServiceListViewsRequest) (*fustorv1.AdminServiceListViewsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at < len(a.states)-1 {
		a.at++
	}
	return &fustorv1.AdminServiceListViewsResponse{Views: a.states[a.at].views}, nil
}

func (a *statusAdmin) ListSessions(context.Context, *fustorv1.ListSessionsRequest) (*fustorv1.ListSessionsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &fustorv1.ListSessionsResponse{Sessions: a.states[max(a.at, 0)].sessions}, nil
}

func startStatusServer(t *testing.T, states ...statusState) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	fustorv1.RegisterAdminServiceServer(g, &statusAdmin{states: states, at: -1})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}
