package pipe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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

// TestSuperviseRecoversAPanickingWalk: a walk that panics is recovered (the test binary would
// die otherwise), logged with its stack and restarted after the backoff, as often as it panics.
func TestSuperviseRecoversAPanickingWalk(t *testing.T) {
	tests := []struct {
		name   string
		panics int32
	}{
		{"once", 1},
		{"three times, backing off", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			var waits []time.Duration
			after := func(d time.Duration) <-chan time.Time {
				waits = append(waits, d) // supervise calls it from this goroutine only
				c := make(chan time.Time, 1)
				c <- time.Time{}
				return c
			}
			p := New(zap.New(core), Config{ID: "p", BackoffMin: 10 * time.Millisecond, BackoffMax: 25 * time.Millisecond, After: after}, nil, nil, nil, nil)
			s := &session{p: p}
			var runs atomic.Int32
			s.supervise(context.Background(), "snapshot", func(ctx context.Context) {
				if runs.Add(1) <= tt.panics {
					panic("bad entry")
				}
			})
			if got := runs.Load(); got != tt.panics+1 {
				t.Fatalf("runs %d, want %d", got, tt.panics+1)
			}
			entries := logs.FilterMessage(MsgWalkPanicked).All()
			if len(entries) != int(tt.panics) {
				t.Fatalf("logged %d panics, want %d", len(entries), tt.panics)
			}
			ctx := entries[0].ContextMap()
			if ctx["panic"] != "bad entry" || ctx["task"] != "snapshot" || !strings.Contains(fmt.Sprint(ctx["stack"]), "supervise") {
				t.Errorf("panic log fields %v", ctx)
			}
			want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond}[:tt.panics]
			if !slices.Equal(waits, want) {
				t.Errorf("backoffs %v, want %v", waits, want)
			}
		})
	}
}

// TestSuperviseStopsBackingOffOnCancel: cancelling during the backoff after a panic returns at
// once instead of restarting the walk.
func TestSuperviseStopsBackingOffOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	after := func(time.Duration) <-chan time.Time {
		cancel()
		return nil // never fires: only the cancel ends the wait
	}
	p := New(nil, Config{ID: "p", BackoffMin: time.Hour, BackoffMax: time.Hour, After: after}, nil, nil, nil, nil)
	s := &session{p: p}
	runs := 0
	s.supervise(ctx, "snapshot", func(context.Context) {
		runs++
		panic("always")
	})
	if runs != 1 {
		t.Fatalf("runs %d", runs)
	}
}
