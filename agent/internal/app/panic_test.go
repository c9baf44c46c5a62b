package app

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	agentsource "github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// panicOnceSource is a test driver: its first snapshot hands a row on and then panics, as a
// driver bug on one bad entry would; the next one completes. It watches nothing (a Watcher
// that waits), so its pipe reads a bus as an fs source's would.
type panicOnceSource struct {
	mu        sync.Mutex
	runs      int
	panicAt   time.Time
	restartAt time.Time
}

func (s *panicOnceSource) Snapshot(ctx context.Context, rel string, origin agentsource.Origin, emit func([]agentsource.Event) error) (agentsource.WalkStats, error) {
	s.mu.Lock()
	s.runs++
	run := s.runs
	if run == 2 {
		s.restartAt = time.Now()
	}
	s.mu.Unlock()
	if err := emit([]agentsource.Event{{Origin: origin, Path: "/", Flags: fsbatch.FlagDir, Index: 1}}); err != nil {
		return agentsource.WalkStats{}, err
	}
	if run == 1 {
		s.mu.Lock()
		s.panicAt = time.Now()
		s.mu.Unlock()
		var m map[string]int
		m["nil map"]++ // a real runtime panic, not a polite one
	}
	err := emit([]agentsource.Event{{Origin: origin, Path: "/f", Size: 3, Index: 2}})
	return agentsource.WalkStats{Dirs: 1, Files: 1}, err
}

func (s *panicOnceSource) Watch(ctx context.Context, _ func(agentsource.Event)) error {
	<-ctx.Done()
	return nil
}

func (s *panicOnceSource) times() (runs int, panicAt, restartAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs, s.panicAt, s.restartAt
}

// beatingFusion is fakeFusion with a short session timeout, so heartbeats come every 100 ms,
// and a record of each heartbeat's time and of the sessions created.
type beatingFusion struct {
	*fakeFusion
	mu      sync.Mutex
	created int
	beats   []time.Time
}

func (f *beatingFusion) CreateSession(context.Context, *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	f.mu.Lock()
	f.created++
	f.mu.Unlock()
	return &fustorv1.CreateSessionResponse{SessionId: "s1", Role: fustorv1.Role_ROLE_LEADER, Timeout: durationpb.New(200 * time.Millisecond)}, nil
}

func (f *beatingFusion) Heartbeat(context.Context, *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	f.mu.Lock()
	f.beats = append(f.beats, time.Now())
	f.mu.Unlock()
	return &fustorv1.HeartbeatResponse{Role: fustorv1.Role_ROLE_LEADER}, nil
}

func (f *beatingFusion) record() (created int, beats []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created, append([]time.Time(nil), f.beats...)
}

// serveFusionWith serves sessions and pushes on ln until the returned stop is called.
func serveFusionWith(sessions fustorv1.SessionServiceServer, push fustorv1.PushServiceServer, ln net.Listener) (stop func()) {
	srv := grpc.NewServer()
	fustorv1.RegisterSessionServiceServer(srv, sessions)
	fustorv1.RegisterPushServiceServer(srv, push)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	return func() { srv.Stop(); <-served }
}

// TestSnapshotPanicIsRecoveredAndHeartbeatsGoOn: a panic inside a snapshot walk is recovered
// (the test process survives), reported (an error log with the stack, the panics metric) and
// the snapshot restarted after the pipe's backoff, in the same session, while heartbeats keep
// their pace throughout (DESIGN.md §4.1 step 2, §8).
func TestSnapshotPanicIsRecoveredAndHeartbeatsGoOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &beatingFusion{fakeFusion: &fakeFusion{rows: map[fustorv1.MessageSource]int{}}}
	t.Cleanup(serveFusionWith(f, f.fakeFusion, ln))

	src := &panicOnceSource{}
	cfg := config.Default()
	cfg.AgentID = "test-agent"
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.Sources["src"] = config.Source{Driver: "fs", Root: t.TempDir()}
	cfg.Senders["fusion"] = config.Sender{Address: ln.Addr().String(), APIKey: "k"}
	// backoff_min is also the wait before a panicked walk restarts: long enough for several
	// heartbeats (every 100 ms) to fall between the panic and the restart.
	const restartAfter = 600 * time.Millisecond
	cfg.Pipes["p"] = config.Pipe{Source: "src", Sender: "fusion", BackoffMin: restartAfter, BackoffMax: time.Second}
	core, logs := observer.New(zap.InfoLevel)
	a, err := New(zap.New(core), cfg, Options{NewSource: func(string, config.Source) (agentsource.Snapshotter, error) { return src, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
		client.CloseIdleConnections()
	})

	eventually(t, "the restarted snapshot to end", func() bool { done, _, _ := f.state(); return done })
	runs, panicAt, restartAt := src.times()
	if runs != 2 {
		t.Fatalf("snapshot ran %d times, want 2 (the panicking run, then the restart)", runs)
	}
	if gap := restartAt.Sub(panicAt); gap < restartAfter/2 {
		t.Errorf("restarted %v after the panic, want about the backoff %v", gap, restartAfter)
	}
	// Heartbeats: at least a couple inside the restart's backoff, and never a gap much over
	// their 100 ms interval from the session's start to the end of the second snapshot.
	eventually(t, "a heartbeat after the restarted snapshot", func() bool {
		_, beats := f.record()
		return len(beats) > 0 && beats[len(beats)-1].After(restartAt)
	})
	created, beats := f.record()
	if created != 1 {
		t.Errorf("%d sessions created, want 1: the panic must not end the session", created)
	}
	between := 0
	for i, b := range beats {
		if b.After(panicAt) && b.Before(restartAt) {
			between++
		}
		if i > 0 && b.Sub(beats[i-1]) > time.Second {
			t.Errorf("heartbeat gap %v at %v", b.Sub(beats[i-1]), b)
		}
	}
	if between < 2 {
		t.Errorf("%d heartbeats between the panic and the restart, want >= 2 (every 100 ms over %v)", between, restartAfter)
	}
	entries := logs.FilterMessage(pipe.MsgWalkPanicked).All()
	if len(entries) != 1 {
		t.Fatalf("%d panic logs, want 1", len(entries))
	}
	if m := entries[0].ContextMap(); m["task"] != "snapshot" || !strings.Contains(m["panic"].(string), "nil map") || !strings.Contains(m["stack"].(string), "panicOnceSource") {
		t.Errorf("panic log %v", m)
	}
	waitMetrics(t, client, "http://"+a.MetricsAddr().String()+"/metrics", map[string]float64{
		`fustor_agent_panics_total{part="walk"}`:       1,
		`fustor_agent_panics_total{part="pipe"}`:       0,
		`fustor_agent_pipe_snapshots_total{pipe="p"}`:  2,
		`fustor_agent_pipe_sessions_total{pipe="p"}`:   1,
		`fustor_agent_pipe_session_up{pipe="p"}`:       1,
		`fustor_agent_reload_success`:                  1,
		`fustor_agent_reloads_total{result="applied"}`: 0,
	})
}
