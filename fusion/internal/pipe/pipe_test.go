package pipe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPipe(t *testing.T, queue int) (*Pipe, *view.Member) {
	t.Helper()
	reg := view.NewRegistry(nil, config.Config{Views: map[string]config.View{"v": {Driver: "fs", Schema: "fs"}}}, nil)
	v, _ := reg.Get("v")
	m, _ := v.Member("")
	return New(nil, "p", []*view.View{v}, queue), m
}

func TestFullQueueBlocksSubmit(t *testing.T) {
	p, _ := newPipe(t, 1)
	ctx := context.Background()
	if err := p.Submit(ctx, &Item{Kind: KindBatch}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := p.Submit(short, &Item{Kind: KindBatch}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second submit on a full queue: %v; want it to wait", err)
	}
}

func TestRunAppliesInOrderAndCommits(t *testing.T) {
	p, v := newPipe(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	results := make(chan Result, 3)
	sess := &session.Session{ID: "s"}
	v.SetLeader("s")
	items := []*Item{
		{Session: sess, Kind: KindBatch, Origin: view.OriginSnapshot, MaxIndex: 7,
			Rows: []fsbatch.Row{{Name: "a"}, {Name: "../x"}}},
		{Session: sess, Kind: KindSnapshotEnd},
		{Session: sess, Kind: KindBatch, Origin: view.OriginRealtime, MaxIndex: 5, Rows: []fsbatch.Row{{Name: "b"}}},
	}
	for _, it := range items {
		it.Done = func(r Result) { results <- r }
		if err := p.Submit(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	r1, r2, r3 := <-results, <-results, <-results
	if r1.Applied != 1 || r1.Rejected != 1 || r1.Committed != 7 || r2.Committed != 7 || r3.Committed != 7 {
		t.Fatalf("results %+v %+v %+v", r1, r2, r3)
	}
	if err := v.Ready(); err != nil {
		t.Fatalf("snapshot end did not make the view ready: %v", err)
	}
	st := p.Stats()
	if st.Batches != 2 || st.RowsApplied != 2 || st.RowsRejected != 1 {
		t.Fatalf("stats %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestApplyPanicIsRecovered(t *testing.T) {
	p, _ := newPipe(t, 1)
	// A snapshot end without a session dereferences nil: the loop must survive it.
	res := p.apply(&Item{Kind: KindSnapshotEnd, Rows: make([]fsbatch.Row, 3)})
	if res.Err == nil || res.Rejected != 3 || p.Stats().Panics != 1 {
		t.Fatalf("result %+v panics %d", res, p.Stats().Panics)
	}
}

func TestBatchOfAnotherSchemaIsDroppedAndCounted(t *testing.T) {
	p, m := newPipe(t, 1)
	if p.Accepts("kv") || !p.Accepts("fs") {
		t.Fatal("Accepts")
	}
	res := p.apply(&Item{Kind: KindBatch, Origin: view.OriginRealtime, Schema: "kv", Rows: []fsbatch.Row{{Name: "a"}}})
	if res.Rejected != 1 || res.Err == nil || !strings.Contains(res.Err.Error(), `schema "kv" is accepted by no view of pipe p: v (fs)`) || m.Driver.Len() != 0 {
		t.Fatalf("kv batch: %+v, %d nodes", res, m.Driver.Len())
	}
	if got := p.Dropped()["v"]; got != 1 {
		t.Fatalf("dropped %d; want 1", got)
	}
	// Nothing else is lost: the next fs batch applies.
	res = p.apply(&Item{Kind: KindBatch, Origin: view.OriginRealtime, Schema: "fs", Rows: []fsbatch.Row{{Name: "b"}}})
	if res.Applied != 1 || res.Err != nil || m.Driver.Len() != 1 || p.Dropped()["v"] != 1 {
		t.Fatalf("fs batch: %+v, %d nodes", res, m.Driver.Len())
	}
}

// A pipe feeds its own member of a forest and the fs views it lists (fan-out); another pipe's
// member of the same forest is not touched.
func TestPipeFeedsItsForestMemberAndItsViews(t *testing.T) {
	cfg := config.Config{
		Pipes: map[string]config.Pipe{"p1": {Views: []string{"fs1", "all"}}, "p2": {Views: []string{"all"}}},
		Views: map[string]config.View{"fs1": {Driver: config.DriverFS, Schema: "fs"}, "all": {Driver: config.DriverForestFS, Schema: "fs"}},
	}
	reg := view.NewRegistry(nil, cfg, nil)
	fs1, _ := reg.Get("fs1")
	all, _ := reg.Get("all")
	p := New(nil, "p1", []*view.View{fs1, all}, 4)
	m1, _ := all.Member("p1")
	m2, _ := all.Member("p2")
	f, _ := fs1.Member("")
	if len(p.Members) != 2 || p.Members[0] != f || p.Members[1] != m1 {
		t.Fatalf("members %v", p.Members)
	}
	sess := &session.Session{ID: "s"}
	m1.SetLeader("s")
	f.SetLeader("s")
	p.apply(&Item{Session: sess, Kind: KindSnapshotStart})
	if res := p.apply(&Item{Session: sess, Kind: KindBatch, Origin: view.OriginSnapshot, Rows: []fsbatch.Row{{Name: "a"}, {Name: "b"}}}); res.Applied != 2 {
		t.Fatalf("applied %+v", res)
	}
	p.apply(&Item{Session: sess, Kind: KindSnapshotEnd})
	if f.Driver.Len() != 2 || m1.Driver.Len() != 2 || m2.Driver.Len() != 0 {
		t.Fatalf("lens fs1 %d, all/p1 %d, all/p2 %d", f.Driver.Len(), m1.Driver.Len(), m2.Driver.Len())
	}
	if f.Ready() != nil || m1.Ready() != nil || m2.Ready() == nil || all.Ready() != nil {
		t.Fatal("readiness is per member")
	}
}
