package client_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
)

// pushRows plays a rows source (a database agent) against the real Fusion: a session of
// schema submissions, a snapshot of rows, then realtime rows.
func pushRows(t *testing.T, snapshot []*fustorv1.GenericRow, realtime []*fustorv1.GenericRow) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer rows-ingest-key"))
	defer cancel()
	sessions := fustorv1.NewSessionServiceClient(conn)
	sess, err := sessions.CreateSession(ctx, &fustorv1.CreateSessionRequest{AgentId: "rows-test", SchemaName: "submissions", SchemaVersion: 1})
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	defer func() {
		_, _ = sessions.CloseSession(ctx, &fustorv1.CloseSessionRequest{SessionId: sess.GetSessionId()})
	}()
	stream, err := fustorv1.NewPushServiceClient(conn).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(src fustorv1.MessageSource, rows []*fustorv1.GenericRow) *fustorv1.PushRequest {
		return &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{Source: src, SchemaName: "submissions",
			Rows: &fustorv1.EventBatch_Generic{Generic: &fustorv1.GenericBatch{Rows: rows}}}}}
	}
	msgs := []*fustorv1.PushRequest{
		{SessionId: sess.GetSessionId(), Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}},
		batch(fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, snapshot),
		{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}},
		batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, realtime),
	}
	for i, m := range msgs {
		m.Seq = uint64(i + 1)
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	for acked := 0; acked < len(msgs); {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if a := m.GetAck(); a != nil {
			if a.GetError() != "" || a.GetRowsRejected() != 0 {
				t.Fatalf("ack %v", a)
			}
			acked++
		}
	}
}

func row(key string, index uint64, state string) *fustorv1.GenericRow {
	return &fustorv1.GenericRow{Key: key, Index: index, Fields: map[string]string{"state": state}}
}

func TestRows(t *testing.T) {
	pushRows(t, []*fustorv1.GenericRow{row("s/1", 1, "open"), row("s/2", 1, "open"), row("s/3", 1, "open"), row("t/1", 1, "open")},
		[]*fustorv1.GenericRow{row("s/2", 2, "done"), {Key: "s/3", Delete: true, Index: 2}})
	c := newClient(t, client.WithKey("rows-key"))
	ctx := testCtx(t)

	got, err := c.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "s/2"})
	if err != nil || got.GetRow().GetFields()["state"] != "done" || got.GetRow().GetOrigin() != fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME {
		t.Fatalf("GetRow s/2 = %v, %v", got, err)
	}
	_, err = c.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "s/3"})
	if ce := (*client.Error)(nil); !errors.As(err, &ce) || status.Code(err) != codes.NotFound {
		t.Fatalf("GetRow of a deleted row = %v, want a NotFound *client.Error", err)
	}
	var keys []string
	for r, err := range c.Rows(ctx, &fustorv1.ListRowsRequest{View: "subs", Prefix: "s/", PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, r.GetKey())
	}
	if len(keys) != 2 || keys[0] != "s/1" || keys[1] != "s/2" {
		t.Fatalf("Rows s/ = %v", keys)
	}
	page, err := c.ListRows(ctx, &fustorv1.ListRowsRequest{View: "subs", WhereField: "state", WhereValue: "open"})
	if err != nil || len(page.GetRows()) != 2 || page.GetStats().GetRows() != 3 || page.GetStats().GetTombstones() != 1 {
		t.Fatalf("ListRows state=open = %v, %v", page, err)
	}
	// The fs queries on it, and row queries on an fs view, are FailedPrecondition.
	if _, err := c.Stat(ctx, &fustorv1.StatRequest{View: "subs", Path: "/"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Stat on a rows view = %v", err)
	}
	if _, err := newClient(t).GetRow(ctx, &fustorv1.GetRowRequest{View: "demo", Key: "x"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("GetRow on an fs view = %v", err)
	}
}
