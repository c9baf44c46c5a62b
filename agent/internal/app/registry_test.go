package app

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// runningSet records which parts are inside their run, for the registry tests.
type runningSet struct {
	mu      sync.Mutex
	running map[string]int // key -> runs in progress
	started map[string]int // key -> runs begun
	changed chan struct{}
}

func newRunningSet() *runningSet {
	return &runningSet{running: map[string]int{}, started: map[string]int{}, changed: make(chan struct{}, 100)}
}

func (r *runningSet) enter(k string) {
	r.mu.Lock()
	r.running[k]++
	r.started[k]++
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *runningSet) leave(k string) {
	r.mu.Lock()
	r.running[k]--
	r.mu.Unlock()
}

func (r *runningSet) get(k string) (running, started int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[k], r.started[k]
}

// untilCancelled is a part that runs until stopped.
func (r *runningSet) untilCancelled(k string) func(context.Context) error {
	return func(ctx context.Context) error {
		r.enter(k)
		defer r.leave(k)
		<-ctx.Done()
		return nil
	}
}

// TestRegistryStartStopOneLeavesOthersRunning: stopping or starting one part never touches
// another; parts added before begin start at begin; stop is idempotent.
func TestRegistryStartStopOneLeavesOthersRunning(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		stop  []string
		add   []string // started once running
	}{
		{"stop one of three", []string{"pipe/a", "pipe/b", "source/x"}, []string{"pipe/b"}, nil},
		{"stop twice, add one", []string{"pipe/a", "pipe/b"}, []string{"pipe/a", "pipe/a"}, []string{"pipe/c"}},
		{"stop an unknown part", []string{"pipe/a"}, []string{"pipe/zzz"}, nil},
		{"replace a part under its key", []string{"pipe/a", "pipe/b"}, []string{"pipe/a"}, []string{"pipe/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := newRunningSet()
			r := newRegistry(zap.NewNop(), 1, 1, nil)
			for _, k := range tt.parts {
				if err := r.start(k, rs.untilCancelled(k)); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r.begin(ctx)
			for range tt.parts {
				<-rs.changed
			}
			for _, k := range tt.stop {
				r.stop(k)
				if n, _ := rs.get(k); n != 0 {
					t.Fatalf("%s still running after stop", k)
				}
			}
			for _, k := range tt.add {
				if err := r.start(k, rs.untilCancelled(k)); err != nil {
					t.Fatal(err)
				}
				<-rs.changed
			}
			for _, k := range tt.parts {
				n, started := rs.get(k)
				stopped := slices.Contains(tt.stop, k)
				readded := slices.Contains(tt.add, k)
				switch {
				case !stopped && (n != 1 || started != 1):
					t.Errorf("%s: %d running, %d started; want 1 and 1 (untouched)", k, n, started)
				case stopped && readded && (n != 1 || started != 2):
					t.Errorf("%s: %d running, %d started; want 1 and 2 (replaced)", k, n, started)
				case stopped && !readded && n != 0:
					t.Errorf("%s: %d running after stop", k, n)
				}
			}
			if err := r.start(tt.parts[len(tt.parts)-1], rs.untilCancelled("dup")); err == nil && !slices.Contains(tt.stop, tt.parts[len(tt.parts)-1]) {
				t.Error("starting a part under a key in use succeeded")
			}
			r.stopAll()
			for _, k := range append(tt.parts, tt.add...) {
				if n, _ := rs.get(k); n != 0 {
					t.Errorf("%s running after stopAll", k)
				}
			}
			if len(r.keys()) != 0 {
				t.Errorf("keys after stopAll: %v", r.keys())
			}
		})
	}
}

// TestRegistryRestartsAPanickingPart: a part that panics or fails is restarted after the
// backoff, the panic counted by kind and logged with its stack; its neighbour is untouched.
func TestRegistryRestartsAPanickingPart(t *testing.T) {
	tests := []struct {
		name       string
		fail       func()
		wantPanics uint64
		wantLog    string
	}{
		{"panic", func() { panic("boom") }, 1, "part panicked; restarting it"},
		{"error", nil, 0, "part failed; restarting it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			waited := make(chan struct{}, 10)
			r := newRegistry(zap.New(core), 5, 10, nil)
			rs := newRunningSet()
			var mu sync.Mutex
			runs := 0
			r.start("pipe/bad", func(ctx context.Context) error {
				mu.Lock()
				runs++
				n := runs
				mu.Unlock()
				if n == 1 {
					if tt.fail != nil {
						tt.fail()
					}
					return errors.New("broken")
				}
				waited <- struct{}{}
				<-ctx.Done()
				return nil
			})
			r.start("pipe/good", rs.untilCancelled("pipe/good"))
			ctx, cancel := context.WithCancel(context.Background())
			r.begin(ctx)
			<-waited // the bad part runs again
			<-rs.changed
			if n, started := rs.get("pipe/good"); n != 1 || started != 1 {
				t.Errorf("good part: %d running, %d started", n, started)
			}
			if got := r.panicCounts()[kindPipe]; got != tt.wantPanics {
				t.Errorf("panics %d, want %d", got, tt.wantPanics)
			}
			entries := logs.FilterMessage(tt.wantLog).All()
			if len(entries) != 1 || entries[0].ContextMap()["part"] != "pipe/bad" {
				t.Errorf("log %q: %v", tt.wantLog, entries)
			}
			if tt.wantPanics > 0 && entries[0].ContextMap()["stack"] == "" {
				t.Error("panic logged without its stack")
			}
			cancel()
			r.stopAll()
		})
	}
}
