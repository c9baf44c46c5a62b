package app

import (
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Part kinds, the first segment of a part's key ("pipe/<id>", "source/<signature>") and the
// label of the panics metric.
const (
	kindSource = "source"
	kindPipe   = "pipe"
)

// partKey is a part's key in the registry.
func partKey(kind, id string) string { return kind + "/" + id }

// part is one supervised piece of the running agent: a source's watcher loop or a pipe. It has
// a context of its own, so stopping it never touches another part.
type part struct {
	key    string
	run    func(context.Context) error
	cancel context.CancelFunc // nil until launched
	done   chan struct{}      // closed when its goroutine has returned
}

// registry holds the running parts by key, under a lock, so Reload can start and stop them one
// by one while the others run. A part that panics or fails is restarted with backoff; one that
// returns nil on its own is done (a journal source has no watcher loop to keep).
type registry struct {
	log *zap.Logger
	// restartMin and restartMax bound the backoff between restarts of a failing part.
	restartMin, restartMax time.Duration
	after                  func(time.Duration) <-chan time.Time

	mu     sync.Mutex
	ctx    context.Context // nil until begin: parts added before are launched then
	parts  map[string]*part
	panics map[string]uint64 // by kind
}

func newRegistry(log *zap.Logger, restartMin, restartMax time.Duration, after func(time.Duration) <-chan time.Time) *registry {
	if after == nil {
		after = time.After
	}
	return &registry{log: log, restartMin: restartMin, restartMax: max(restartMax, restartMin), after: after,
		parts: map[string]*part{}, panics: map[string]uint64{}}
}

// begin launches every part added so far under ctx, and every part added later.
func (r *registry) begin(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx = ctx
	for _, k := range slices.Sorted(maps.Keys(r.parts)) {
		r.launch(r.parts[k])
	}
}

// start adds a part and launches it if the registry runs. A key in use is a bug of the caller
// (it must stop the old part first), reported rather than leaking the old one.
func (r *registry) start(key string, run func(context.Context) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.parts[key]; ok {
		return fmt.Errorf("start part %s: already running", key)
	}
	p := &part{key: key, run: run}
	r.parts[key] = p
	if r.ctx != nil {
		r.launch(p)
	}
	return nil
}

// launch runs p on a goroutine of its own; r.mu is held.
func (r *registry) launch(p *part) {
	ctx, cancel := context.WithCancel(r.ctx)
	p.cancel, p.done = cancel, make(chan struct{})
	go r.supervise(ctx, p)
}

// stop cancels one part and waits for it to return; the others keep running. Unknown keys are
// ignored, so stopping is idempotent.
func (r *registry) stop(key string) {
	r.mu.Lock()
	p := r.parts[key]
	delete(r.parts, key)
	r.mu.Unlock()
	wait(p)
}

// stopAll stops every part, all cancelled at once, and waits for them.
func (r *registry) stopAll() {
	r.mu.Lock()
	ps := slices.Collect(maps.Values(r.parts))
	clear(r.parts)
	r.mu.Unlock()
	for _, p := range ps {
		if p.cancel != nil {
			p.cancel()
		}
	}
	for _, p := range ps {
		wait(p)
	}
}

func wait(p *part) {
	if p == nil || p.cancel == nil {
		return
	}
	p.cancel()
	<-p.done
}

// keys returns the keys of the parts held, sorted.
func (r *registry) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.parts))
}

// panicCounts returns the panics recovered so far, by part kind.
func (r *registry) panicCounts() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.panics)
}

// supervise runs p until its context is cancelled: a panic is recovered and counted, and a
// panic or an error restarts it after a backoff (restartMin doubling to restartMax, back to
// restartMin once a run lasted longer than restartMax), so a broken part can neither take the
// agent down nor spin.
func (r *registry) supervise(ctx context.Context, p *part) {
	defer close(p.done)
	kind, _, _ := strings.Cut(p.key, "/")
	backoff := time.Duration(0)
	for {
		began := time.Now()
		pv, stack, err := protect(ctx, p.run)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > r.restartMax {
			backoff = 0
		}
		backoff = min(max(backoff*2, r.restartMin), r.restartMax)
		switch {
		case stack != nil:
			r.mu.Lock()
			r.panics[kind]++
			r.mu.Unlock()
			r.log.Error("part panicked; restarting it", zap.String("part", p.key), zap.String("panic", fmt.Sprint(pv)),
				zap.ByteString("stack", stack), zap.Duration("retry_in", backoff))
		case err != nil:
			r.log.Error("part failed; restarting it", zap.String("part", p.key), zap.Duration("retry_in", backoff), zap.Error(err))
		default:
			return // nothing more to do, e.g. the watcher loop of a source without a watcher
		}
		select {
		case <-ctx.Done():
			return
		case <-r.after(backoff):
		}
	}
}

// protect calls run, turning a panic into its value and stack (stack is nil without one).
func protect(ctx context.Context, run func(context.Context) error) (pv any, stack []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			pv, stack = v, debug.Stack()
		}
	}()
	return nil, nil, run(ctx)
}
