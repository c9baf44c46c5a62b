package echosender

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStreamLinesAndAcks pushes each kind of message through an echo stream and checks the
// line each prints and the Ack each gets.
func TestStreamLinesAndAcks(t *testing.T) {
	var buf bytes.Buffer
	e := NewWriter(&buf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := e.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enc := fsbatch.NewEncoder(0)
	enc.Add("/d", fsbatch.FlagDir, 0, 5, 10, 0)
	enc.Add("/d/f", 0, 7, 6, 12, 0)
	enc.Add("/d/gone", fsbatch.FlagDelete, 0, 0, 13, 0)
	fsb, idx := enc.Flush()
	msgs := []struct {
		req   *fustorv1.PushRequest
		lines []string // substrings of the lines printed, in order
		ack   *fustorv1.Ack
	}{
		{&fustorv1.PushRequest{SessionId: "s1", Seq: 1}, nil, nil},
		{&fustorv1.PushRequest{Seq: 2, Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}},
			[]string{`{"event":"snapshot_start","session":"s1","seq":2}`}, &fustorv1.Ack{Seq: 2}},
		{&fustorv1.PushRequest{Seq: 3, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME,
			SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: fsb}}}},
			[]string{`"event":"batch","session":"s1","seq":3,"origin":"realtime","schema":"fs","index":10,"rows":3`,
				`"path":"/d","dir":true,"mtime_ns":5,"index":10`, `"path":"/d/f","size":7,"mtime_ns":6,"index":12`, `"path":"/d/gone","delete":true,"index":13`},
			&fustorv1.Ack{Seq: 3, CommittedIndex: 13, RowsApplied: 3}},
		{&fustorv1.PushRequest{Seq: 4, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{SchemaName: "mysql", Index: 20,
			Rows: &fustorv1.EventBatch_Generic{Generic: &fustorv1.GenericBatch{Rows: []*fustorv1.GenericRow{{Key: "k1", Fields: map[string]string{"a": "1"}, Index: 20}}}}}}},
			[]string{`"schema":"mysql","index":20,"rows":1`, `"key":"k1","index":20,"fields":{"a":"1"}`}, &fustorv1.Ack{Seq: 4, CommittedIndex: 20, RowsApplied: 1}},
		{&fustorv1.PushRequest{Seq: 5, Payload: &fustorv1.PushRequest_AuditEnd{AuditEnd: &fustorv1.AuditEnd{Failed: true, Error: "boom"}}},
			[]string{`{"event":"audit_end","session":"s1","seq":5,"failed":true,"error":"boom"}`}, &fustorv1.Ack{Seq: 5, CommittedIndex: 20}},
	}
	for _, m := range msgs {
		before := buf.Len()
		if err := st.Send(m.req); err != nil {
			t.Fatalf("send seq %d: %v", m.req.GetSeq(), err)
		}
		printed := strings.Split(strings.TrimSuffix(buf.String()[before:], "\n"), "\n")
		if len(m.lines) == 0 {
			if buf.Len() != before {
				t.Errorf("seq %d printed %q, want nothing", m.req.GetSeq(), printed)
			}
			continue
		}
		if len(printed) != len(m.lines) {
			t.Fatalf("seq %d printed %d lines, want %d: %q", m.req.GetSeq(), len(printed), len(m.lines), printed)
		}
		for i, l := range printed {
			if !json.Valid([]byte(l)) || !strings.Contains(l, m.lines[i]) {
				t.Errorf("seq %d line %d = %s, want JSON containing %s", m.req.GetSeq(), i+1, l, m.lines[i])
			}
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if a := r.GetAck(); a.GetSeq() != m.ack.GetSeq() || a.GetCommittedIndex() != m.ack.GetCommittedIndex() || a.GetRowsApplied() != m.ack.GetRowsApplied() {
			t.Errorf("seq %d ack = %v, want %v", m.req.GetSeq(), a, m.ack)
		}
	}
	_ = st.CloseSend()
	if _, err := st.Recv(); err == nil {
		t.Error("Recv after CloseSend: no error")
	}
}

// TestSessionCalls checks the session lines and answers: the leader, the negotiated timeout.
func TestSessionCalls(t *testing.T) {
	var buf bytes.Buffer
	e := NewWriter(&buf)
	resp, err := e.CreateSession(context.Background(), &fustorv1.CreateSessionRequest{AgentId: "a", TaskId: "p", SchemaName: "fs", SchemaVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRole() != fustorv1.Role_ROLE_LEADER || resp.GetTimeout().AsDuration() != DefaultTimeout || resp.GetSessionId() != "echo-1" {
		t.Errorf("CreateSession = %v", resp)
	}
	if _, err := e.Heartbeat(context.Background(), &fustorv1.HeartbeatRequest{SessionId: "echo-1", CanRealtime: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.CloseSession(context.Background(), "echo-1"); err != nil {
		t.Fatal(err)
	}
	want := `{"event":"create_session","session":"echo-1","agent_id":"a","task_id":"p","schema":"fs","schema_version":1}
{"event":"heartbeat","session":"echo-1","can_realtime":true,"events_sent":0}
{"event":"close_session","session":"echo-1"}
`
	if buf.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", buf.String(), want)
	}
}
