package app

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestWalkFields: the logged figures of a walk, with a percentage and an ETA only when a total
// is known — the agent's estimate first, else the tree's nodes.
func TestWalkFields(t *testing.T) {
	walk := func(dirs, files, total uint64) *fustorv1.WalkProgress {
		return &fustorv1.WalkProgress{Kind: "snapshot", Dirs: dirs, Files: files, Elapsed: durationpb.New(10 * time.Second),
			EntriesPerSecond: float64(dirs+files) / 10, EstimatedTotal: total}
	}
	for _, tc := range []struct {
		name      string
		w         *fustorv1.WalkProgress
		nodes     uint64
		wantTotal uint64
		wantFrom  string
		wantPct   float64
		wantETA   time.Duration // -1: none
	}{
		{"unknown total", walk(10, 90, 0), 0, 0, "", 0, 0},
		{"agent's estimate", walk(10, 90, 400), 1000, 400, "last_walk", 25, 30 * time.Second},
		{"the view's nodes", walk(10, 90, 0), 1000, 1000, "view_nodes", 10, 90 * time.Second},
		{"past the total", walk(10, 990, 500), 0, 500, "last_walk", 100, 0},
		{"no rate yet: no eta", walk(0, 0, 500), 0, 500, "last_walk", 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := zapcore.NewMapObjectEncoder()
			for _, f := range walkFields(tc.w, tc.nodes) {
				f.AddTo(enc)
			}
			m := enc.Fields
			if m["kind"] != "snapshot" || m["dirs"] != tc.w.GetDirs() || m["files"] != tc.w.GetFiles() || m["elapsed"] != 10*time.Second {
				t.Fatalf("fields %v", m)
			}
			if tc.wantTotal == 0 {
				if _, ok := m["percent"]; ok {
					t.Fatalf("fields %v: a percentage without a total", m)
				}
				return
			}
			if eta, ok := m["eta"]; tc.wantETA < 0 && ok {
				t.Fatalf("fields %v: an eta without a rate", m)
			} else if tc.wantETA >= 0 && eta != tc.wantETA {
				t.Fatalf("fields %v; want eta %v", m, tc.wantETA)
			}
			if m["total"] != tc.wantTotal || m["total_from"] != tc.wantFrom || m["percent"] != tc.wantPct {
				t.Fatalf("fields %v; want total %d from %s, %v %%, eta %v", m, tc.wantTotal, tc.wantFrom, tc.wantPct, tc.wantETA)
			}
		})
	}
}

// TestLogProgress: a real Fusion with two agent sessions on one view, both reporting a walk
// in their heartbeats: the leader's walk is logged, the follower's is not, and the loop
// returns nil when cancelled.
func TestLogProgress(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	cfg := config.Demo()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = time.Second
	cfg.Server.HTTPListen = ""
	f, err := New(zap.New(core), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.Run(ctx) }()
	conn, err := grpc.NewClient(f.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = conn.Close()
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	sc := fustorv1.NewSessionServiceClient(conn)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer demo-ingest-key")
	var ids []string
	for i, agent := range []string{"leader-agent", "follower-agent"} {
		resp, err := sc.CreateSession(actx, &fustorv1.CreateSessionRequest{AgentId: agent, SchemaName: "fs", SchemaVersion: 1,
			TimeoutHint: durationpb.New(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if want := []fustorv1.Role{fustorv1.Role_ROLE_LEADER, fustorv1.Role_ROLE_FOLLOWER}[i]; resp.GetRole() != want {
			t.Fatalf("%s is %v; want %v", agent, resp.GetRole(), want)
		}
		walk := &fustorv1.WalkProgress{Kind: "snapshot", Dirs: 3, Files: 97, Elapsed: durationpb.New(2 * time.Second), EntriesPerSecond: 50, EstimatedTotal: 400}
		if _, err := sc.Heartbeat(actx, &fustorv1.HeartbeatRequest{SessionId: resp.GetSessionId(), CanRealtime: true,
			Progress: &fustorv1.Progress{SnapshotRunning: true, Walk: walk}}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetSessionId())
	}
	lctx, lcancel := context.WithCancel(context.Background())
	logged := make(chan error, 1)
	go func() { logged <- f.logProgress(lctx, 10*time.Millisecond) }()
	// Wait for two rounds: had the follower been logged, it would be by then.
	for logs.FilterMessage("walk progress").Len() < 2 {
		select {
		case err := <-logged:
			t.Fatalf("logProgress returned %v before it was cancelled", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	lcancel()
	if err := <-logged; err != nil {
		t.Fatalf("logProgress on cancel: %v; want nil", err)
	}
	for _, e := range logs.FilterMessage("walk progress").All() {
		m := e.ContextMap()
		if m["session"] != ids[0] || m["agent"] != "leader-agent" || m["view"] != "demo" || m["kind"] != "snapshot" ||
			m["files"] != uint64(97) || m["percent"] != float64(25) || m["eta"] != 6*time.Second {
			t.Fatalf("logged %v; want the leader's snapshot at 25 %%, eta 6s", m)
		}
	}
}
