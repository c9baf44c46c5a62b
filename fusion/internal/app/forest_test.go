package app

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// forestConfig: three storages, each with its own pipe (s1..s3, ingest keys ingest-1..3)
// feeding its own fs view (fs1..fs3) and one forest view "all" whose members are labelled
// storage-1..3.
func forestConfig(c *config.Config) {
	c.Receivers["default"] = config.Receiver{}
	all := config.View{Driver: config.DriverForestFS, Schema: "fs", Live: true, QueryKeys: []string{"demo-key"}, Members: map[string]string{}}
	r := c.Receivers["default"]
	for i := 1; i <= 3; i++ {
		pid, vid := fmt.Sprintf("s%d", i), fmt.Sprintf("fs%d", i)
		c.Pipes[pid] = config.Pipe{Receiver: "default", Views: []string{vid, "all"}}
		c.Views[vid] = config.View{Driver: config.DriverFS, Schema: "fs", Live: true, QueryKeys: []string{"demo-key"}}
		all.Members[pid] = fmt.Sprintf("storage-%d", i)
		r.APIKeys = append(r.APIKeys, config.APIKey{Key: fmt.Sprintf("ingest-%d", i), Pipe: pid})
	}
	c.Receivers["default"] = r
	c.Views["all"] = all
	delete(c.Pipes, "demo")
	delete(c.Views, "demo")
	c.Normalize()
}

// submission returns n files of size each under /sub/x.
func submission(n int, size uint64) map[string]uint64 {
	out := map[string]uint64{}
	for i := range n {
		out[fmt.Sprintf("/sub/x/f%02d", i)] = size
	}
	return out
}

func TestForestAnswersPerMember(t *testing.T) {
	h := start(t, forestConfig)
	a1, a2, a3 := h.connectWith(t, "ingest-1"), h.connectWith(t, "ingest-2"), h.connectWith(t, "ingest-3")
	a1.snapshot(t, submission(100, 10))
	a2.snapshot(t, submission(50, 10))
	a3.snapshot(t, submission(100, 20))
	q, ctx := h.views(), withKey("demo-key")

	// Where is f07? In all three members, labelled.
	find, err := q.Find(ctx, &fustorv1.FindRequest{View: "all", Path: "/", Name: "f07"})
	if err != nil {
		t.Fatal(err)
	}
	var where []string
	for _, e := range find.GetEntries() {
		where = append(where, e.GetMember()+":"+e.GetPath())
	}
	if strings.Join(where, ",") != "storage-1:/sub/x/f07,storage-2:/sub/x/f07,storage-3:/sub/x/f07" || len(find.GetMembers()) != 3 {
		t.Fatalf("find f07: %v, members %v", where, find.GetMembers())
	}
	// A per-member limit and a total limit.
	find, err = q.Find(ctx, &fustorv1.FindRequest{View: "all", Path: "/", Glob: "f*", MemberLimit: 10, Limit: 25})
	if err != nil {
		t.Fatal(err)
	}
	if len(find.GetEntries()) != 25 || !find.GetTruncated() {
		t.Fatalf("glob with limits: %d entries, truncated %v", len(find.GetEntries()), find.GetTruncated())
	}
	for _, mm := range find.GetMembers() {
		if mm.GetMatches() > 10 || !mm.GetTruncated() {
			t.Errorf("member %v over its limit or not truncated", mm)
		}
	}

	// Stats: per member, and the best by file count (a tie: the first by name) and by size.
	stats, err := q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "all", Path: "/sub/x"})
	if err != nil {
		t.Fatal(err)
	}
	if stats.GetBest() != "storage-1" || !strings.Contains(stats.GetBestReason(), "tie") || stats.GetFileCount() != 250 || len(stats.GetMembers()) != 3 {
		t.Fatalf("stats by file count: best %s (%s), %d files, %d members", stats.GetBest(), stats.GetBestReason(), stats.GetFileCount(), len(stats.GetMembers()))
	}
	stats, err = q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "all", Path: "/sub/x", BestBy: fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE})
	if err != nil {
		t.Fatal(err)
	}
	if stats.GetBest() != "storage-3" || stats.GetMembers()[2].GetTotalSize() != 2000 || !stats.GetMembers()[2].GetBest() {
		t.Fatalf("stats by size: best %s, %v", stats.GetBest(), stats.GetMembers())
	}

	// Stat and ListDirectory answer per member; f70 is not on storage-2.
	st, err := q.Stat(ctx, &fustorv1.StatRequest{View: "all", Path: "/sub/x/f70"})
	if err != nil {
		t.Fatal(err)
	}
	if ms := st.GetMembers(); len(ms) != 3 || !ms[0].GetFound() || ms[1].GetFound() || !ms[2].GetFound() || ms[2].GetEntry().GetSize() != 20 {
		t.Fatalf("stat per member %v", ms)
	}
	ls, err := q.ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: "all", Path: "/sub/x", PageSize: 60})
	if err != nil {
		t.Fatal(err)
	}
	if ms := ls.GetMembers(); len(ms) != 3 || len(ms[0].GetEntries()) != 60 || ms[0].GetNextPageToken() == "" || len(ms[1].GetEntries()) != 50 {
		t.Fatalf("listing per member %v", ms)
	}

	// One member alone answers as an fs view would; the fs views got the same rows.
	one, err := q.Find(ctx, &fustorv1.FindRequest{View: "all", Member: "storage-2", Path: "/", Glob: "f*"})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.GetEntries()) != 50 || one.GetEntries()[0].GetMember() != "" || one.GetMeta().GetMember() != "storage-2" {
		t.Fatalf("member storage-2: %d entries, meta %v", len(one.GetEntries()), one.GetMeta())
	}
	fs1, err := q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "fs1", Path: "/"})
	if err != nil || fs1.GetFileCount() != 100 {
		t.Fatalf("fs1: %v, %v", fs1, err)
	}

	// The best member's tree alone.
	tree, err := q.GetTree(ctx, &fustorv1.GetTreeRequest{View: "all", Path: "/sub", BestOnly: true, BestBy: fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE})
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := tree.Recv()
	if err != nil || chunk.GetMeta().GetMember() != "storage-3" || len(chunk.GetEntries()) != 101 {
		t.Fatalf("best tree: %v entries, meta %v, %v", len(chunk.GetEntries()), chunk.GetMeta(), err)
	}

	for _, tt := range []struct {
		view, member string
		code         codes.Code
	}{{"all", "nope", codes.NotFound}, {"fs1", "storage-1", codes.InvalidArgument}} {
		_, err := q.Stat(ctx, &fustorv1.StatRequest{View: tt.view, Member: tt.member, Path: "/"})
		if status.Code(err) != tt.code {
			t.Errorf("Stat(%s, member %q) = %v; want %v", tt.view, tt.member, err, tt.code)
		}
	}
	if _, err := q.Find(ctx, &fustorv1.FindRequest{View: "all", Path: "/", Name: "f07", PackedPaths: true}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("packed paths over members: %v", err)
	}

	// Storage 2's agent goes: its member keeps answering from the tree it kept, flagged stale
	// with the reason; the others are as they were.
	a2.cancel()
	if _, err := h.session().CloseSession(withKey("ingest-2"), &fustorv1.CloseSessionRequest{SessionId: a2.id}); err != nil {
		t.Fatal(err)
	}
	stats, err = q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "all", Path: "/sub/x"})
	if err != nil {
		t.Fatal(err)
	}
	ms := stats.GetMeta().GetMembers()
	if len(ms) != 3 || !ms[1].GetStale() || !ms[1].GetReady() || !strings.Contains(ms[1].GetReason(), `member "storage-2"`) ||
		ms[0].GetStale() || ms[2].GetStale() || !stats.GetMeta().GetStale() || len(stats.GetMembers()) != 3 {
		t.Fatalf("after storage-2 left: %v, %d members answered", ms, len(stats.GetMembers()))
	}
	st, err = q.Stat(ctx, &fustorv1.StatRequest{View: "all", Member: "storage-2", Path: "/sub/x/f00"})
	if err != nil || !st.GetMeta().GetStale() {
		t.Fatalf("storage-2 alone: %v, %v; want its file, flagged stale", st, err)
	}
}

// A batch of a schema no view of its pipe accepts is dropped and counted; nothing else is lost.
func TestBatchOfUnacceptedSchemaIsDropped(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.enc.Add("/x", 0, 1, 1, 1, 0)
	b, idx := a.enc.Flush()
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
		Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "kv", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: b}}}}); err != nil {
		t.Fatal(err)
	}
	ack := a.ack(t)
	if ack.GetRowsRejected() != 1 || !strings.Contains(ack.GetError(), `schema "kv" is accepted by no view of pipe demo: demo (fs)`) {
		t.Fatalf("ack %v", ack)
	}
	if got := h.f.rt.pipes["demo"].p.Dropped()["demo"]; got != 1 {
		t.Fatalf("dropped %d; want 1", got)
	}
	a.snapshot(t, map[string]uint64{"/y": 1})
	if st, err := h.views().GetStats(withKey("demo-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"}); err != nil || st.GetFileCount() != 1 {
		t.Fatalf("after the drop: %v, %v", st, err)
	}
}
