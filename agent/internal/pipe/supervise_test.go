package pipe

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSuperviseRestartsAStuckWalk(t *testing.T) {
	p := New(nil, Config{ID: "p", StuckAfter: 40 * time.Millisecond}, nil, nil, nil, nil)
	s := &session{p: p}
	var runs atomic.Int32
	s.supervise(context.Background(), "snapshot", func(ctx context.Context) {
		if runs.Add(1) == 1 {
			<-ctx.Done() // stuck: no progress until cancelled
			return
		}
		for range 5 { // healthy: progress, then done
			s.progressed()
		}
	})
	if runs.Load() != 2 || p.Status().StuckRestarts != 1 {
		t.Fatalf("runs %d, stuck restarts %d", runs.Load(), p.Status().StuckRestarts)
	}
}

func TestSuperviseLeavesAProgressingWalkAlone(t *testing.T) {
	p := New(nil, Config{ID: "p", StuckAfter: 200 * time.Millisecond}, nil, nil, nil, nil)
	s := &session{p: p}
	runs := 0
	s.supervise(context.Background(), "audit", func(ctx context.Context) {
		runs++
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			s.progressed()
			time.Sleep(10 * time.Millisecond) // a slow but moving walk
		}
	})
	if runs != 1 || p.Status().StuckRestarts != 0 {
		t.Fatalf("runs %d, stuck restarts %d", runs, p.Status().StuckRestarts)
	}
}

func TestSuperviseStopsWithItsContext(t *testing.T) {
	p := New(nil, Config{ID: "p", StuckAfter: 20 * time.Millisecond}, nil, nil, nil, nil)
	s := &session{p: p}
	ctx, cancel := context.WithCancel(context.Background())
	runs := 0
	s.supervise(ctx, "snapshot", func(c context.Context) {
		runs++
		cancel() // the session ends while the walk is stuck
		<-c.Done()
	})
	if runs != 1 {
		t.Fatalf("runs %d", runs)
	}
}
