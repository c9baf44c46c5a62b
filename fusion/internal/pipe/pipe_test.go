package pipe

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPipe(t *testing.T, queue int) (*Pipe, *view.View) {
	t.Helper()
	reg := view.NewRegistry(nil, map[string]config.View{"v": {Driver: "fs", Schema: "fs"}}, nil)
	v, _ := reg.Get("v")
	return New(nil, "p", []*view.View{v}, queue), v
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
