package app

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// The hostile inputs of issue 22 ("bounded by construction"), each sent over a real push
// stream by a client holding a valid ingest key: the status it gets, the heap before and
// after, and a good agent's view and queries unchanged.

// wireCodec sends and receives a push stream's frames as they are, so a test can put any
// bytes on the wire. Named "proto": the server decodes them with its own codec.
type wireCodec struct{}

func (wireCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (wireCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = bytes.Clone(data); return nil }
func (wireCodec) Name() string                       { return "proto" }

// rawPush opens a push stream that sends frames as given and returns the status it ends with.
func (h *harness) rawPush(t *testing.T, frames ...[]byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(withKey("demo-ingest-key"), 30*time.Second)
	defer cancel()
	st, err := h.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Push", ServerStreams: true, ClientStreams: true},
		"/fustor.v1.PushService/Push", grpc.ForceCodec(wireCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := st.SendMsg(f); err != nil {
			break // the server ended the stream: its status comes from RecvMsg
		}
	}
	for {
		var m []byte
		if err := st.RecvMsg(&m); err != nil {
			return err
		}
	}
}

func marshal(t *testing.T, m *fustorv1.PushRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// heapNow returns the live heap after two collections: the second frees what sync.Pools
// (gRPC's buffers) kept through the first.
func heapNow() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// goodView is a view a good agent fed, and what a test checks it still answers.
type goodView struct {
	h    *harness
	a    *agent
	live uint64 // the size check last wrote /live with
}

func newGoodView(t *testing.T, h *harness) *goodView {
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/good/a": 7, "/good/b": 9})
	return &goodView{h: h, a: a}
}

// check asserts the good agent's data and queries are as it sent them, and its stream works.
func (g *goodView) check(t *testing.T, step string) {
	t.Helper()
	ctx := withKey("demo-key")
	st, err := g.h.views().GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/good"})
	if err != nil || st.GetFileCount() != 2 || st.GetTotalSize() != 16 {
		t.Fatalf("%s: the good view's stats %v, %v", step, st, err)
	}
	g.live++
	g.a.realtime(t, map[string]uint64{"/live": g.live}, time.Now())
	if e, err := g.h.views().Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/live"}); err != nil || e.GetEntry().GetSize() != g.live {
		t.Fatalf("%s: the good agent's stream after it: %v, %v", step, e, err)
	}
}

// TestUndecodablePushIsInvalidArgument (issue 22): bytes that are no PushRequest, as the
// first message or later, and a batch whose rows do not decode, end the stream with
// INVALID_ARGUMENT, counted; the heap is back where it was; the good view is unchanged.
func TestUndecodablePushIsInvalidArgument(t *testing.T) {
	h := start(t, nil)
	g := newGoodView(t, h)
	// A session of the attacker's own (a follower): its first message names it.
	sess, err := h.session().CreateSession(withKey("demo-ingest-key"), &fustorv1.CreateSessionRequest{AgentId: "hostile", SchemaName: "fs"})
	if err != nil {
		t.Fatal(err)
	}
	hello := marshal(t, &fustorv1.PushRequest{SessionId: sess.GetSessionId(), Seq: 1})
	garbage := bytes.Repeat([]byte{0xff}, 4<<20)
	// A name that is not UTF-8, as a proto3 string may not be: "XX" patched in the wire bytes.
	badName := marshal(t, &fustorv1.PushRequest{Seq: 2, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "fs",
		Rows: &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{ParentIds: []uint32{1}, Names: []string{"XX"}}}}}})
	badName = bytes.Replace(badName, []byte("XX"), []byte{0xc3, 0x28}, 1)
	// Columns that do not line up: 2 sizes for 1 row.
	misaligned := marshal(t, &fustorv1.PushRequest{Seq: 2, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "fs",
		Rows: &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{ParentIds: []uint32{1}, Names: []string{"x"}, Sizes: []uint64{1, 2}}}}}})
	tests := []struct {
		name   string
		frames [][]byte
		say    string
	}{
		{"garbage first message", [][]byte{garbage}, "not a valid fustor.v1.PushRequest"},
		{"garbage after the first", [][]byte{hello, garbage}, "not a valid fustor.v1.PushRequest"},
		{"a name that is not UTF-8", [][]byte{hello, badName}, "not a valid fustor.v1.PushRequest"},
		{"rows that do not decode", [][]byte{hello, misaligned}, "sizes has 2 values for 1 rows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Once first: gRPC's buffer pools keep what the first big frame needed.
			_ = h.rawPush(t, tt.frames...)
			before, bad := heapNow(), h.f.rcv.BadMessages()
			for range 5 {
				err := h.rawPush(t, tt.frames...)
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.say) || len(err.Error()) > 400 {
					t.Fatalf("%.400v; want INVALID_ARGUMENT saying %q", err, tt.say)
				}
			}
			if n := h.f.rcv.BadMessages() - bad; n != 5 {
				t.Fatalf("%d bad messages counted; want 5", n)
			}
			if grew := heapNow() - before; grew > 4<<20 {
				t.Fatalf("the heap grew %d KB", grew>>10)
			}
			g.check(t, tt.name)
		})
	}
}

// TestEndWithoutStartIsFailedPrecondition (issue 22): a SnapshotEnd or AuditEnd the session
// did not start ends the stream with FAILED_PRECONDITION after every earlier message was
// answered, and changes nothing: a view no snapshot filled is not made ready by one.
func TestEndWithoutStartIsFailedPrecondition(t *testing.T) {
	snapEnd := &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}
	auditEnd := &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_AuditEnd{AuditEnd: &fustorv1.AuditEnd{}}}
	tests := []struct {
		name     string
		snapshot bool // the leader completed a snapshot before
		end      *fustorv1.PushRequest
		say      string
	}{
		{"SnapshotEnd, no snapshot ever", false, snapEnd, "(SnapshotEnd) ends no open snapshot: send SnapshotStart first"},
		{"SnapshotEnd after a complete one", true, snapEnd, "(SnapshotEnd) ends no open snapshot: send SnapshotStart first"},
		{"AuditEnd, no audit", true, auditEnd, "(AuditEnd) ends no open audit: send AuditStart first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, nil)
			a := h.connect(t) // the leader
			if tt.snapshot {
				a.snapshot(t, map[string]uint64{"/good/a": 7})
			}
			// A realtime row before the end: answered and applied.
			if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
				Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "fs", Index: 5,
				Rows: &fustorv1.EventBatch_Fs{Fs: &fustorv1.FsBatch{ParentIds: []uint32{1}, Names: []string{"rt"}, Sizes: []uint64{3}, MtimeBase: 1}}}}}); err != nil {
				t.Fatal(err)
			}
			batchSeq := a.seq
			if err := a.send(proto.Clone(tt.end).(*fustorv1.PushRequest)); err != nil {
				t.Fatal(err)
			}
			acked := false
			var err error
			for {
				var m *fustorv1.PushResponse
				if m, err = a.stream.Recv(); err != nil {
					break
				}
				acked = acked || m.GetAck().GetSeq() == batchSeq
			}
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tt.say) {
				t.Fatalf("%v; want FAILED_PRECONDITION saying %q", err, tt.say)
			}
			if !acked {
				t.Fatal("the batch sent before the end was not answered")
			}
			_, serr := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/rt"})
			if !tt.snapshot {
				// Not ready: no snapshot completed, and the stray end did not pretend one had.
				if status.Code(serr) != codes.Unavailable {
					t.Fatalf("a view with no snapshot answers after a stray SnapshotEnd: %v", serr)
				}
				return
			}
			if serr != nil {
				t.Fatalf("the realtime row before the end: %v", serr)
			}
			if st, err := h.views().GetStats(withKey("demo-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"}); err != nil || st.GetFileCount() != 2 {
				t.Fatalf("the view after the stray end: %v, %v", st, err)
			}
		})
	}
}

// TestRowBoundsOverAStream (issue 22): rows with mtimes out of [1900, 2200) are rejected,
// the Ack saying so; files that would take a total past 2^63-1 bytes are rejected; the
// totals stay exact and the good rows are applied.
func TestRowBoundsOverAStream(t *testing.T) {
	h := start(t, nil)
	g := newGoodView(t, h)
	a := h.connect(t) // a follower: realtime rows are its to send
	at := func(y int) int64 { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() }
	// Row 1's mtime is the base, each next one a delta from the one before.
	mtimes := []int64{at(2026), at(1800), at(2300), at(1969)}
	deltas := make([]int64, len(mtimes))
	for i := range mtimes {
		if i > 0 {
			deltas[i] = mtimes[i] - mtimes[i-1]
		}
	}
	ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, &fustorv1.FsBatch{
		ParentIds: []uint32{1, 1, 1, 1}, Names: []string{"now", "1800", "2300", "1969"}, Sizes: []uint64{1, 1, 1, 1},
		MtimeBase: mtimes[0], MtimeDeltas: deltas}, 10)
	if ack.GetRowsApplied() != 2 || ack.GetRowsRejected() != 2 || !strings.Contains(ack.GetError(), "outside [1900-01-01, 2200-01-01): rejected") {
		t.Fatalf("mtimes: %+v", ack)
	}
	// Three files of 2^62 bytes: the third would take the view's total past 2^63-1.
	const big = 1 << 62
	ack = a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, &fustorv1.FsBatch{
		ParentIds: []uint32{1, 1, 1}, Names: []string{"big1", "big2", "big3"}, Sizes: []uint64{big - 1, big - 1, big}, MtimeBase: at(2026)}, 11)
	if ack.GetRowsApplied() != 1 || ack.GetRowsRejected() != 2 || !strings.Contains(ack.GetError(), "would pass 2^63-1 bytes: rejected") {
		t.Fatalf("totals: %+v", ack)
	}
	st, err := h.views().GetStats(withKey("demo-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"})
	// The good files (16 B), "now" and "1969" (1 B each), big1; big2 pushed the total over.
	if want := uint64(16 + 2 + big - 1 + g.live); err != nil || st.GetTotalSize() != want || st.GetTotalSize() > math.MaxInt64 {
		t.Fatalf("stats %v, %v; want a total of %d", st, err, want)
	}
	g.check(t, "after the rows")
}

// TestDirDeclarationsAreBounded (issue 22): a stream that declares two million directories
// is ended with RESOURCE_EXHAUSTED once its table passes server.max_push_dir_bytes; while
// open it holds no more than its bound, and after it Fusion's heap is back where it was.
func TestDirDeclarationsAreBounded(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Server.MaxPushDirs, c.Server.MaxPushDirBytes = 100_000, 1<<20 })
	g := newGoodView(t, h)
	a := h.connect(t)
	before := heapNow()
	const perBatch, nameLen = 20_000, 32
	var held int64
	var err error
	for i := range 100 { // 2,000,000 declarations of 32-byte names, 64 MB of names
		b := &fustorv1.FsBatch{Dirs: make([]*fustorv1.FsDir, perBatch)}
		for j := range perBatch {
			id := uint32(2 + i*perBatch + j)
			b.Dirs[j] = &fustorv1.FsDir{Id: id, ParentId: 1, Name: fmt.Sprintf("%0*d", nameLen, id)}
		}
		if err = a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "fs", Rows: &fustorv1.EventBatch_Fs{Fs: b}}}}); err != nil {
			break
		}
		var m *fustorv1.PushResponse
		if m, err = a.stream.Recv(); err != nil {
			break
		}
		if m.GetAck().GetSeq() != a.seq {
			t.Fatalf("batch %d: %v", i, m)
		}
		held = max(held, heapNow()-before)
	}
	if err == nil {
		t.Fatal("2,000,000 declarations accepted")
	}
	if _, rerr := a.stream.Recv(); status.Code(rerr) != codes.ResourceExhausted || !strings.Contains(rerr.Error(), "max_push_dir_bytes") {
		t.Fatalf("the stream ended with %v; want RESOURCE_EXHAUSTED naming max_push_dir_bytes", rerr)
	}
	// 1 MiB of names: 32,768 directories, each a Dir and a map entry besides its name.
	if held > 12<<20 {
		t.Fatalf("the open stream's table held %d MB", held>>20)
	}
	if grew := heapNow() - before; grew > 4<<20 {
		t.Fatalf("after the stream, the heap grew %d KB", grew>>10)
	}
	t.Logf("heap held by the open stream at its bound: %d KB", held>>10)
	g.check(t, "after the declarations")
}

// TestIdleSessionsAndStreamsAreBounded (issue 22): a session that never pushes ends after
// server.push_idle_timeout though it is heartbeated; a push stream silent after its first
// message is held only while its session lives, whose timeout_hint counts up to
// server.max_session_timeout: unrefreshed, it ends NOT_FOUND. The good agent, heartbeated,
// and its view are untouched.
func TestIdleSessionsAndStreamsAreBounded(t *testing.T) {
	h := start(t, func(c *config.Config) {
		c.Server.PushIdleTimeout, c.Server.MaxSessionTimeout = 300*time.Millisecond, time.Second
		p := c.Pipes["demo"]
		p.SessionTimeout = time.Second
		c.Pipes["demo"] = p
	})
	g := newGoodView(t, h)
	ingest := withKey("demo-ingest-key")
	create := func() *fustorv1.CreateSessionResponse {
		s, err := h.session().CreateSession(ingest, &fustorv1.CreateSessionRequest{AgentId: "hostile", SchemaName: "fs",
			TimeoutHint: durationOf(1000 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	never, silent := create(), create()
	if got := silent.GetTimeout().AsDuration(); got != time.Second {
		t.Fatalf("a hint of 1000h gave a timeout of %v; want max_session_timeout, 1s", got)
	}
	// The silent stream: a first message naming its session, then nothing, no heartbeats.
	ctx, cancel := context.WithCancel(ingest)
	defer cancel()
	st, err := fustorv1.NewPushServiceClient(h.conn).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&fustorv1.PushRequest{SessionId: silent.GetSessionId(), Seq: 1}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	// Heartbeat the good agent's session and the one that never pushes until both hostile
	// sessions are gone.
	neverGone := false
	var streamErr error
	for tick := time.NewTicker(50 * time.Millisecond); streamErr == nil || !neverGone; <-tick.C {
		if _, err := h.session().Heartbeat(ingest, &fustorv1.HeartbeatRequest{SessionId: g.a.id}); err != nil {
			t.Fatalf("the good agent's heartbeat: %v", err)
		}
		if _, err := h.session().Heartbeat(ingest, &fustorv1.HeartbeatRequest{SessionId: never.GetSessionId()}); status.Code(err) == codes.NotFound {
			neverGone = true
		} else if err != nil {
			t.Fatal(err)
		}
		select {
		case streamErr = <-ended:
		default:
		}
	}
	if status.Code(streamErr) != codes.NotFound {
		t.Fatalf("the silent stream ended with %v; want NOT_FOUND (its session expired)", streamErr)
	}
	g.check(t, "after the idle sessions")
}

// TestReloadAppliesIngestLimits: a reload puts new ingest limits in force without a restart
// (streams per key, path bytes), and says so.
func TestReloadAppliesIngestLimits(t *testing.T) {
	r := startReloadable(t, nil)
	a := r.connect(t)
	a.snapshot(t, map[string]uint64{"/f": 1})
	r.set(func(c *config.Config) { c.Server.MaxPushStreamsPerKey, c.Server.MaxPathBytes = 2, 64 })
	resp := r.reload(t)
	if !slices.ContainsFunc(resp.GetChanges(), func(c string) bool { return strings.HasPrefix(c, "ingest limits changed") }) ||
		slices.ContainsFunc(resp.GetChanges(), func(c string) bool { return strings.Contains(c, "next restart") }) {
		t.Fatalf("changes %q", resp.GetChanges())
	}
	// A new stream's rows are bounded by the new max_path_bytes.
	b := r.connect(t)
	long := strings.Repeat("n", 100)
	ack := b.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, &fustorv1.FsBatch{ParentIds: []uint32{1, 1},
		Names: []string{long, "short"}, MtimeBase: time.Now().UnixNano()}, 5)
	if ack.GetRowsApplied() != 1 || ack.GetRowsRejected() != 1 || !strings.Contains(ack.GetError(), "at most 64") {
		t.Fatalf("ack %+v", ack)
	}
	// The agent's stream is one of the key's two, b's (answered: admitted) the other; a third
	// is refused.
	third, err := fustorv1.NewPushServiceClient(r.conn).Push(withKey("demo-ingest-key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := third.Recv(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_push_streams_per_key") {
		t.Fatalf("a third stream: %v; want RESOURCE_EXHAUSTED", err)
	}
}
