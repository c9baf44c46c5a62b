package app

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/source/fs"
	"github.com/fustor/fustor/agent/internal/source/journal"
	s3source "github.com/fustor/fustor/agent/internal/source/s3"
	sqlsource "github.com/fustor/fustor/agent/internal/source/sql"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// fakeFusion is the smallest Fusion an agent pipe runs against: one leader session, every
// batch acknowledged with its index. Fusion itself lives in another module's internal
// packages, which the agent cannot import.
type fakeFusion struct {
	fustorv1.UnimplementedSessionServiceServer
	fustorv1.UnimplementedPushServiceServer

	mu           sync.Mutex
	snapshotDone bool
	rows         map[fustorv1.MessageSource]int
	committed    uint64
}

func (f *fakeFusion) CreateSession(context.Context, *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	return &fustorv1.CreateSessionResponse{SessionId: "s1", Role: fustorv1.Role_ROLE_LEADER, Timeout: durationpb.New(30 * time.Second)}, nil
}

func (f *fakeFusion) Heartbeat(context.Context, *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	return &fustorv1.HeartbeatResponse{Role: fustorv1.Role_ROLE_LEADER}, nil
}

func (f *fakeFusion) CloseSession(context.Context, *fustorv1.CloseSessionRequest) (*fustorv1.CloseSessionResponse, error) {
	return &fustorv1.CloseSessionResponse{}, nil
}

func (f *fakeFusion) Push(stream fustorv1.PushService_PushServer) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		if m.GetSnapshotEnd() != nil {
			f.snapshotDone = true
		}
		b := m.GetBatch()
		if b != nil {
			f.rows[b.GetSource()] += len(b.GetFs().GetNames())
			f.committed = max(f.committed, b.GetIndex())
		}
		committed := f.committed
		f.mu.Unlock()
		if b != nil {
			if err := stream.Send(&fustorv1.PushResponse{Payload: &fustorv1.PushResponse_Ack{Ack: &fustorv1.Ack{Seq: m.GetSeq(), CommittedIndex: committed}}}); err != nil {
				return nil
			}
		}
	}
}

// state returns what the fake has seen so far.
func (f *fakeFusion) state() (snapshotDone bool, realtimeRows int, committed uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshotDone, f.rows[fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME], f.committed
}

// startFakeFusion serves a fakeFusion on a loopback port until the test ends.
func startFakeFusion(t *testing.T) (*fakeFusion, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFusion{rows: map[fustorv1.MessageSource]int{}}
	srv := grpc.NewServer()
	fustorv1.RegisterSessionServiceServer(srv, f)
	fustorv1.RegisterPushServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f, ln.Addr().String()
}

// eventually polls cond until it holds, failing the test after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// scrape returns the samples of a Prometheus text exposition by series, e.g.
// `fustor_agent_pipe_rows_sent_total{pipe="p"}`, and the status code.
func scrape(t *testing.T, c *http.Client, url string) (map[string]float64, int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			samples[line[:i]] = v
		}
	}
	return samples, resp.StatusCode, string(body)
}

// waitMetrics scrapes until every wanted series has its value, and returns the last scrape.
func waitMetrics(t *testing.T, c *http.Client, url string, want map[string]float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	var body string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		got, _, body = scrape(t, c, url)
		var missing []string
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				missing = append(missing, k+" "+strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
		if len(missing) == 0 {
			return got
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("metrics never showed %q\n%s", missing, body)
		}
	}
}

// TestMetricsEndpoint runs a real agent against a fake Fusion: a snapshot of a small tree with
// one excluded file, then a directory created in real time. The pipe, source and bus figures
// on /metrics must say exactly that.
func TestMetricsEndpoint(t *testing.T) {
	f, addr := startFakeFusion(t)
	root := t.TempDir()
	for _, p := range []string{"a/one.txt", "a/two.txt", "b.txt", "x.tmp"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.AgentID = "test-agent"
	cfg.MetricsListen, cfg.DebugListen = "127.0.0.1:0", "127.0.0.1:0"
	// A negative hot threshold sends the just-written files in the snapshot's order.
	cfg.Sources["src"] = config.Source{Driver: "fs", Root: root, Excludes: []string{"*.tmp"}, HotThreshold: -1}
	cfg.Senders["fusion"] = config.Sender{Address: addr, APIKey: "k"}
	cfg.Pipes["p"] = config.Pipe{Source: "src", Sender: "fusion", BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
	a, err := New(nil, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	client := &http.Client{Transport: &http.Transport{}}
	// Cleanups run last-in first-out: the agent stops (closing its session) before the fake.
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
		client.CloseIdleConnections()
	})
	url := "http://" + a.MetricsAddr().String() + "/metrics"

	eventually(t, "the snapshot to reach fusion", func() bool { done, _, _ := f.state(); return done })
	// The snapshot is root, /a and three files; x.tmp is excluded. Both directories watched.
	waitMetrics(t, client, url, map[string]float64{
		`fustor_agent_pipe_rows_sent_total{pipe="p"}`:                               5,
		`fustor_agent_source_watches{source="src"}`:                                 2,
		`fustor_agent_source_events_total{source="src"}`:                            0,
		`fustor_agent_pipe_snapshot_running{pipe="p"}`:                              0,
		`fustor_agent_source_entries_skipped_total{reason="excluded",source="src"}`: 1,
	})

	if err := os.Mkdir(filepath.Join(root, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the realtime row to reach fusion", func() bool { _, n, _ := f.state(); return n == 1 })
	_, _, committed := f.state()
	got := waitMetrics(t, client, url, map[string]float64{
		`fustor_agent_pipe_info{pipe="p",source="src"}`:                               1,
		`fustor_agent_pipe_session_up{pipe="p"}`:                                      1,
		`fustor_agent_pipe_leader{pipe="p"}`:                                          1,
		`fustor_agent_pipe_sessions_total{pipe="p"}`:                                  1,
		`fustor_agent_pipe_session_failures_total{pipe="p"}`:                          0,
		`fustor_agent_pipe_rows_sent_total{pipe="p"}`:                                 6,
		`fustor_agent_pipe_snapshots_total{pipe="p"}`:                                 1,
		`fustor_agent_pipe_audits_total{pipe="p"}`:                                    0,
		`fustor_agent_pipe_recovery_audits_total{pipe="p"}`:                           0,
		`fustor_agent_pipe_audit_running{pipe="p"}`:                                   0,
		`fustor_agent_pipe_committed_index{pipe="p"}`:                                 float64(committed),
		`fustor_agent_source_realtime{source="src"}`:                                  1,
		`fustor_agent_source_watches{source="src"}`:                                   3,
		`fustor_agent_source_events_total{source="src"}`:                              1,
		`fustor_agent_source_walk_rows_total{source="src"}`:                           5,
		`fustor_agent_source_queue_overflows_total{source="src"}`:                     0,
		`fustor_agent_source_dirs_left_to_audit{source="src"}`:                        0,
		`fustor_agent_source_entries_skipped_total{reason="excluded",source="src"}`:   1,
		`fustor_agent_source_entries_skipped_total{reason="permission",source="src"}`: 0,
		`fustor_agent_bus_published_total{source="src"}`:                              1,
		`fustor_agent_bus_lost_total{source="src"}`:                                   0,
		// The pipe's realtime and its anchor (kept across sessions, for a resume after a
		// restart of Fusion).
		`fustor_agent_bus_subscribers{source="src"}`: 2,
	})
	if committed == 0 {
		t.Error("fusion acknowledged no index")
	}
	if got["go_goroutines"] == 0 || got["process_start_time_seconds"] == 0 {
		t.Error("the Go and process collectors are missing")
	}

	// A queue overflow (what the watcher's overflow handler calls) is repaired by a deep audit
	// at once, counted apart.
	a.Pipe("p").RequestAudit()
	waitMetrics(t, client, url, map[string]float64{
		`fustor_agent_pipe_audits_total{pipe="p"}`:          1,
		`fustor_agent_pipe_recovery_audits_total{pipe="p"}`: 1,
	})

	// The metrics endpoint serves /metrics only; the debug endpoint serves it besides profiles.
	if _, code, _ := scrape(t, client, "http://"+a.MetricsAddr().String()+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("metrics endpoint /debug/pprof/: status %d, want 404", code)
	}
	dbg, code, _ := scrape(t, client, "http://"+a.debug.Addr().String()+"/metrics")
	if code != http.StatusOK || dbg[`fustor_agent_pipe_session_up{pipe="p"}`] != 1 {
		t.Errorf("debug endpoint /metrics: status %d, session_up %v", code, dbg[`fustor_agent_pipe_session_up{pipe="p"}`])
	}
}

// TestCollectorCoversEveryCounter: every figure a source reports in its heartbeat must be
// exposed, so a counter added to a source cannot silently miss the metrics.
func TestCollectorCoversEveryCounter(t *testing.T) {
	c := newCollector(&Agent{})
	fsrc, err := fs.New(nil, fs.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	jsrc, err := journal.New(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	s3src, err := s3source.New(nil, s3source.Config{Endpoint: "http://127.0.0.1:1", Bucket: "b", ListInterval: time.Second, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sqlsrc, err := sqlsource.New(nil, sqlsource.Config{DSN: "postgres://u@127.0.0.1:1/db", Table: "t", KeyColumns: []string{"id"}, CursorColumn: "v"})
	if err != nil {
		t.Fatal(err)
	}
	defer sqlsrc.Close()
	for name, counters := range map[string]map[string]uint64{"fs": fsrc.Counters(), "journal": jsrc.Counters(), "s3": s3src.Counters(), "sql": sqlsrc.Counters()} {
		for k := range counters {
			if _, ok := c.bySourceKey[k]; !ok && !strings.HasPrefix(k, skippedPrefix) {
				t.Errorf("%s source counter %q is not exposed", name, k)
			}
		}
	}
}
