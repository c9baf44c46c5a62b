package app

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/mapping"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/pgtest"
)

func strp(s string) *string { return &s }

// peopleMapping renames, casts and adds a constant; age "x" fails its int cast.
func peopleMapping(onError string) mapping.Config {
	return mapping.Config{OnCastError: onError, Fields: []mapping.Rule{
		{To: "user", From: "full_name"},
		{To: "age", Type: "int"},
		{To: "active", From: "enabled", Type: "bool"},
		{To: "site", Value: strp("eu-1")},
	}}
}

// sqlConfig is an agent on srv's table people, each pipe to its own sender.
func sqlConfig(srv *pgtest.Server, pipes map[string]config.Pipe, senders map[string]config.Sender) config.Config {
	cfg := config.Default()
	cfg.AgentID = "sql-agent"
	cfg.Sources["people"] = config.Source{Driver: "sql", SQL: config.SQL{DSN: srv.DSN(), Table: "people", KeyColumns: []string{"id"},
		CursorColumn: "version", SoftDeleteColumn: "gone", SchemaName: "people", SchemaVersion: 2,
		PollInterval: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, QueryTimeout: 5 * time.Second}}
	cfg.Senders, cfg.Pipes = senders, pipes
	return cfg
}

func createPeople(srv *pgtest.Server) {
	srv.Exec(`CREATE TABLE people (id int PRIMARY KEY, full_name text, age text, enabled boolean, gone boolean NOT NULL DEFAULT false, version bigint NOT NULL)`,
		`INSERT INTO people VALUES (1, 'Ann', '0042', true, false, 1), (2, 'Bob', 'x', false, false, 2)`)
}

func runAgent(t *testing.T, cfg config.Config) *Agent {
	t.Helper()
	a, err := New(zaptest.NewLogger(t), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

// checkLines compares lines one by one on the keys of want.
func checkLines(t *testing.T, got []map[string]any, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		for k, v := range w {
			if !reflect.DeepEqual(got[i][k], v) {
				t.Errorf("line %d: %s = %v, want %v (line %v)", i+1, k, got[i][k], v, got[i])
			}
		}
		if _, ok := w["fields"]; w["event"] == "row" && !ok && got[i]["fields"] != nil {
			t.Errorf("line %d: fields %v, want none", i+1, got[i]["fields"])
		}
	}
}

// TestSQLThroughEchoWithMapping runs an agent whose sql source feeds two echo senders, one pipe
// dropping the field that fails its cast and one dropping the row, and checks the output line
// by line: the declared schema, the snapshot's generic rows as mapped (rename, cast, constant),
// then realtime (an insert, a soft delete), and the failures counted in the pipes' status.
func TestSQLThroughEchoWithMapping(t *testing.T) {
	srv := pgtest.Start(t)
	createPeople(srv)
	dir := t.TempDir()
	outField, outRow := filepath.Join(dir, "field.jsonl"), filepath.Join(dir, "row.jsonl")
	cfg := sqlConfig(srv, map[string]config.Pipe{
		"field": {Source: "people", Sender: "f", AuditInterval: time.Hour, TimeoutHint: time.Hour, FieldsMapping: peopleMapping("")},
		"row":   {Source: "people", Sender: "r", AuditInterval: time.Hour, TimeoutHint: time.Hour, FieldsMapping: peopleMapping(mapping.OnCastErrorDropRow)},
	}, map[string]config.Sender{"f": {Driver: "echo", Path: outField}, "r": {Driver: "echo", Path: outRow}})
	a := runAgent(t, cfg)

	session := func(task string) map[string]any {
		return map[string]any{"event": "create_session", "session": "echo-1", "agent_id": "sql-agent", "task_id": task, "schema": "people", "schema_version": 2.0}
	}
	ann := map[string]any{"event": "row", "key": "1", "index": 1.0, "fields": map[string]any{"user": "Ann", "age": "42", "active": "true", "site": "eu-1"}}
	bobNoAge := map[string]any{"event": "row", "key": "2", "index": 2.0, "fields": map[string]any{"user": "Bob", "active": "false", "site": "eu-1"}}
	cy := map[string]any{"event": "row", "key": "3", "index": 3.0, "fields": map[string]any{"user": "Cy", "age": "7", "site": "eu-1"}}
	annGone := map[string]any{"event": "row", "key": "1", "index": 4.0, "delete": true, "fields": map[string]any{"user": "Ann", "age": "42", "active": "true", "site": "eu-1"}}
	// drop_row sends Bob, who fails his cast, as a delete of his key without fields: a view
	// must not keep an older version of him.
	bobDropped := map[string]any{"event": "row", "key": "2", "index": 2.0, "delete": true}

	// Realtime starts with the session, from the table's last index on (its row sent again:
	// rows sharing a cursor value are never skipped), so its batches may come before, inside
	// or after the snapshot: split them out.
	wait := func(path string, walk, realtime int) (walkLines, rtRows []map[string]any) {
		eventually(t, "echo lines in "+filepath.Base(path), func() bool {
			walkLines, rtRows = nil, nil
			inRealtime := false
			for _, l := range readLines(t, path) {
				switch {
				case l["event"] == "heartbeat":
				case l["event"] == "batch" && l["origin"] == "realtime":
					if l["schema"] != "people" {
						t.Errorf("batch %v, want rows of people", l)
					}
					inRealtime = true
				case l["event"] == "row" && inRealtime:
					rtRows = append(rtRows, l)
				default: // a walk's batch and rows, a marker
					inRealtime = false
					walkLines = append(walkLines, l)
				}
			}
			return len(walkLines) >= walk && len(rtRows) >= realtime
		})
		return walkLines, rtRows
	}
	field, rt := wait(outField, 6, 1)
	checkLines(t, field, []map[string]any{
		session("field"),
		{"event": "snapshot_start"},
		{"event": "batch", "origin": "snapshot", "schema": "people", "rows": 2.0, "index": 1.0},
		ann, bobNoAge,
		{"event": "snapshot_end", "rows": 2.0},
	})
	checkLines(t, rt, []map[string]any{bobNoAge})
	row, rt := wait(outRow, 6, 1)
	checkLines(t, row, []map[string]any{
		session("row"),
		{"event": "snapshot_start"},
		{"event": "batch", "origin": "snapshot", "schema": "people", "rows": 2.0},
		ann, bobDropped,
		{"event": "snapshot_end", "rows": 2.0}, // what was sent, Bob's delete with it
	})
	checkLines(t, rt, []map[string]any{bobDropped})

	srv.Exec(`INSERT INTO people VALUES (3, 'Cy', '7', NULL, false, 3)`, `UPDATE people SET gone = true, version = 4 WHERE id = 1`)
	_, rt = wait(outField, 6, 3)
	checkLines(t, rt, []map[string]any{bobNoAge, cy, annGone})
	_, rt = wait(outRow, 6, 3)
	checkLines(t, rt, []map[string]any{bobDropped, cy, annGone})

	// Bob failed his cast twice on each pipe (snapshot, realtime's first poll).
	for _, tt := range []struct {
		pipe                          string
		failures, dropped, rows, sent uint64
	}{{"field", 2, 0, 5, 5}, {"row", 2, 2, 5, 5}} {
		st := a.Pipe(tt.pipe).Status()
		if st.CastFailures != tt.failures || st.RowsDropped != tt.dropped || st.MappedRows != tt.rows || st.EventsSent != tt.sent {
			t.Errorf("pipe %s: cast failures %d, dropped %d, mapped %d, sent %d; want %d, %d, %d, %d", tt.pipe,
				st.CastFailures, st.RowsDropped, st.MappedRows, st.EventsSent, tt.failures, tt.dropped, tt.rows, tt.sent)
		}
		c := a.Pipe(tt.pipe).Progress().GetCounters()
		if c["mapping_cast_failures"] != tt.failures || c["mapping_rows_dropped"] != tt.dropped || c["sql_polls"] == 0 {
			t.Errorf("pipe %s: heartbeat counters %v", tt.pipe, c)
		}
	}
}

// rowsFusion is a Fusion that records what a generic-schema session sends: its declaration,
// the markers and the batches, every one acknowledged with the highest row index seen.
type rowsFusion struct {
	fustorv1.UnimplementedSessionServiceServer
	fustorv1.UnimplementedPushServiceServer

	mu        sync.Mutex
	created   []*fustorv1.CreateSessionRequest
	beats     []*fustorv1.HeartbeatRequest
	msgs      []*fustorv1.PushRequest
	committed uint64
}

func (f *rowsFusion) CreateSession(_ context.Context, req *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, req)
	return &fustorv1.CreateSessionResponse{SessionId: fmt.Sprintf("s%d", len(f.created)), Role: fustorv1.Role_ROLE_LEADER,
		Timeout: durationpb.New(time.Second), CommittedIndex: f.committed}, nil
}

func (f *rowsFusion) Heartbeat(_ context.Context, req *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beats = append(f.beats, req)
	return &fustorv1.HeartbeatResponse{Role: fustorv1.Role_ROLE_LEADER}, nil
}

func (f *rowsFusion) CloseSession(context.Context, *fustorv1.CloseSessionRequest) (*fustorv1.CloseSessionResponse, error) {
	return &fustorv1.CloseSessionResponse{}, nil
}

func (f *rowsFusion) Push(stream fustorv1.PushService_PushServer) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		if m.GetPayload() == nil {
			continue
		}
		f.mu.Lock()
		f.msgs = append(f.msgs, m)
		for _, r := range m.GetBatch().GetGeneric().GetRows() {
			f.committed = max(f.committed, r.GetIndex())
		}
		ack := &fustorv1.Ack{Seq: m.GetSeq(), CommittedIndex: f.committed}
		f.mu.Unlock()
		if err := stream.Send(&fustorv1.PushResponse{Payload: &fustorv1.PushResponse_Ack{Ack: ack}}); err != nil {
			return nil
		}
	}
}

// seen returns what the fake has recorded so far.
func (f *rowsFusion) seen() (created []*fustorv1.CreateSessionRequest, beats []*fustorv1.HeartbeatRequest, msgs []*fustorv1.PushRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fustorv1.CreateSessionRequest(nil), f.created...), append([]*fustorv1.HeartbeatRequest(nil), f.beats...),
		append([]*fustorv1.PushRequest(nil), f.msgs...)
}

// startRowsFusion serves a rowsFusion on a loopback port until the test ends.
func startRowsFusion(t *testing.T) (*rowsFusion, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &rowsFusion{}
	gs := grpc.NewServer()
	fustorv1.RegisterSessionServiceServer(gs, f)
	fustorv1.RegisterPushServiceServer(gs, f)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-served })
	return f, ln.Addr().String()
}

// TestSQLDatabaseDownAtStart: with the database down when the agent starts, the session is
// created and heartbeats flow (no realtime reported), the snapshot waits, and once the
// database is up the snapshot runs in that same session.
func TestSQLDatabaseDownAtStart(t *testing.T) {
	srv := pgtest.Start(t)
	createPeople(srv)
	srv.Stop()
	f, addr := startRowsFusion(t)
	cfg := sqlConfig(srv, map[string]config.Pipe{"p": {Source: "people", Sender: "fusion", AuditInterval: time.Hour,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}},
		map[string]config.Sender{"fusion": {Address: addr, APIKey: "k"}})
	runAgent(t, cfg)
	eventually(t, "heartbeats with the database down", func() bool {
		_, beats, _ := f.seen()
		return len(beats) >= 2 && !beats[len(beats)-1].GetCanRealtime()
	})
	created, _, msgs := f.seen()
	if len(created) != 1 || len(msgs) != 0 {
		t.Fatalf("%d sessions, messages %v: want one session, nothing sent before the database is up", len(created), msgs)
	}
	srv.Restart()
	eventually(t, "the snapshot once the database is up", func() bool {
		_, _, msgs := f.seen()
		for _, m := range msgs {
			if e := m.GetSnapshotEnd(); e != nil && !e.GetFailed() && e.GetRows() == 2 {
				return true
			}
		}
		return false
	})
	if created, _, _ := f.seen(); len(created) != 1 {
		t.Errorf("%d sessions: the database's absence must not end the session", len(created))
	}
}

// TestSQLOverGRPC runs the sql source against a gRPC Fusion on a loopback port: the session
// declares the table's schema, the snapshot and the audits are framed by their markers and
// carry GenericBatch rows of that schema (an audit lists every row, so a row deleted from the
// table is simply absent), realtime carries the changes; through a database outage the
// session and its heartbeats go on, reporting no realtime, and realtime resumes after it.
func TestSQLOverGRPC(t *testing.T) {
	srv := pgtest.Start(t)
	createPeople(srv)
	f, addr := startRowsFusion(t)
	cfg := sqlConfig(srv, map[string]config.Pipe{"p": {Source: "people", Sender: "fusion", AuditInterval: 300 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}},
		map[string]config.Sender{"fusion": {Address: addr, APIKey: "k"}})
	a := runAgent(t, cfg)
	p := a.Pipe("p")

	// The snapshot and at least one audit, with Bob deleted from the table in between.
	eventually(t, "the snapshot", func() bool { return p.Status().Snapshots == 1 && !p.Status().SnapshotRunning })
	srv.Exec(`DELETE FROM people WHERE id = 2`)
	audits := p.Status().Audits
	eventually(t, "an audit after the delete", func() bool { return p.Status().Audits >= audits+2 })
	created, _, msgs := f.seen()
	if len(created) != 1 || created[0].GetSchemaName() != "people" || created[0].GetSchemaVersion() != 2 || !created[0].GetCapabilities().GetCanResume() {
		t.Fatalf("sessions created %v, want one declaring people v2 that can resume", created)
	}
	var walk string // the walk running: "snapshot" or "audit"
	var lastAudit []string
	var cur []string
	for _, m := range msgs {
		switch {
		case m.GetSnapshotStart() != nil, m.GetAuditStart() != nil:
			if walk != "" {
				t.Fatalf("a walk starts inside the %s", walk)
			}
			walk, cur = "snapshot", nil
			if m.GetAuditStart() != nil {
				walk = "audit"
			}
		case m.GetSnapshotEnd() != nil, m.GetAuditEnd() != nil:
			if m.GetSnapshotEnd().GetFailed() || m.GetAuditEnd().GetFailed() {
				t.Fatalf("failed walk: %v", m)
			}
			if walk == "audit" {
				lastAudit = cur
			}
			walk = ""
		case m.GetBatch() != nil:
			b := m.GetBatch()
			want := map[string]fustorv1.MessageSource{"snapshot": fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, "audit": fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT,
				"": fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME}[walk]
			realtime := b.GetSource() == fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME // may come inside a walk
			if b.GetSchemaName() != "people" || b.GetGeneric() == nil || (b.GetSource() != want && !realtime) {
				t.Fatalf("batch %v inside %q: want generic rows of people from %v", b, walk, want)
			}
			if realtime {
				continue
			}
			for _, r := range b.GetGeneric().GetRows() {
				cur = append(cur, r.GetKey())
			}
		}
	}
	if !reflect.DeepEqual(lastAudit, []string{"1"}) {
		t.Errorf("last complete audit listed %v, want [1]: Bob, deleted, is missing from it", lastAudit)
	}

	// The database goes away: the session stays, heartbeats report no realtime.
	srv.Stop()
	eventually(t, "a heartbeat without realtime", func() bool {
		_, beats, _ := f.seen()
		return len(beats) > 0 && !beats[len(beats)-1].GetCanRealtime()
	})
	_, before, _ := f.seen()
	eventually(t, "heartbeats during the outage", func() bool {
		_, beats, _ := f.seen()
		return len(beats) >= len(before)+2
	})
	srv.Restart()
	srv.Exec(`INSERT INTO people VALUES (9, 'Dee', '30', true, false, 9)`)
	eventually(t, "realtime after the outage", func() bool {
		_, _, msgs := f.seen()
		for _, m := range msgs {
			b := m.GetBatch()
			if b.GetSource() != fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME {
				continue
			}
			for _, r := range b.GetGeneric().GetRows() {
				if r.GetKey() == "9" && r.GetIndex() == 9 && r.GetFields()["full_name"] == "Dee" {
					return true
				}
			}
		}
		return false
	})
	if created, _, _ := f.seen(); len(created) != 1 {
		t.Errorf("%d sessions: the outage must not end the session", len(created))
	}
	eventually(t, "realtime reported again", func() bool {
		_, beats, _ := f.seen()
		return beats[len(beats)-1].GetCanRealtime()
	})
}
