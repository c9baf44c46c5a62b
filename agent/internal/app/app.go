// Package app composes the agent from its configuration: one fs source, watcher and event bus
// per source; one sender per sender; one AgentPipe per pipe. main only loads config and runs it.
package app

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	"github.com/fustor/fustor/agent/internal/sender"
	"github.com/fustor/fustor/agent/internal/source/fs"
	"github.com/fustor/fustor/agent/internal/source/journal"
	"github.com/fustor/fustor/sdk/debughttp"
)

// Options are test hooks; the zero value is production.
type Options struct {
	// WatchRetry is how long a failed watcher waits before retrying (0 = 30 s).
	WatchRetry time.Duration
}

type source struct {
	id    string
	uri   string
	watch bool
	src   pipe.Source
	// fs is set for the fs driver: its watcher feeds the bus.
	fs       *fs.Source
	bus      *bus.Bus[fs.Event]
	realtime atomic.Bool
}

// Agent is the running agent.
type Agent struct {
	log     *zap.Logger
	sources map[string]*source
	senders []*sender.GRPC
	pipes   map[string]*pipe.Pipe
	retry   time.Duration
	debug   *debughttp.Debug // nil unless debug_listen is set
}

// New builds the agent; nothing runs until Run.
func New(log *zap.Logger, cfg config.Config, opts Options) (*Agent, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate config: %w", err)
	}
	a := &Agent{log: log, sources: map[string]*source{}, pipes: map[string]*pipe.Pipe{}, retry: opts.WatchRetry}
	if a.retry == 0 {
		a.retry = 30 * time.Second
	}
	if cfg.DebugListen != "" {
		d, err := debughttp.New(log, cfg.DebugListen)
		if err != nil {
			return nil, err
		}
		a.debug = d
	}
	for id, sc := range cfg.Sources {
		s, err := newSource(log.With(zap.String("source", id)), id, sc)
		if err != nil {
			return nil, fmt.Errorf("create source %s: %w", id, err)
		}
		a.sources[id] = s
	}
	senders := map[string]*sender.GRPC{}
	for id, sc := range cfg.Senders {
		s, err := sender.NewGRPC(sc)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("create sender %s: %w", id, err)
		}
		senders[id] = s
		a.senders = append(a.senders, s)
	}
	for id, pc := range cfg.Pipes {
		src := a.sources[pc.Source]
		a.pipes[id] = pipe.New(log, pipe.Config{ID: id, AgentID: cfg.AgentID, SourceURI: src.uri,
			BatchSize: pc.BatchSize, TimeoutHint: pc.TimeoutHint, BackoffMin: pc.BackoffMin, BackoffMax: pc.BackoffMax, AuditInterval: pc.AuditInterval, StuckAfter: pc.StuckAfter},
			src.src, src.bus, senders[pc.Sender], src.realtime.Load)
	}
	// A queue overflow is a known loss of realtime events: every pipe on the source audits.
	for _, src := range a.sources {
		if src.fs == nil {
			continue
		}
		var ps []*pipe.Pipe
		for _, id := range slices.Sorted(maps.Keys(cfg.Pipes)) {
			if cfg.Pipes[id].Source == src.id {
				ps = append(ps, a.pipes[id])
			}
		}
		src.fs.SetOnOverflow(func() {
			for _, p := range ps {
				p.RequestAudit()
			}
		})
	}
	return a, nil
}

// Pipe returns a pipe by id (for status and tests).
func (a *Agent) Pipe(id string) *pipe.Pipe { return a.pipes[id] }

// Run runs every watcher and pipe until ctx is done; it returns nil on cancel.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	g, gctx := errgroup.WithContext(ctx)
	for _, id := range slices.Sorted(maps.Keys(a.sources)) {
		s := a.sources[id]
		g.Go(func() error { return a.watch(gctx, s) })
	}
	for _, id := range slices.Sorted(maps.Keys(a.pipes)) {
		p := a.pipes[id]
		g.Go(func() error { return p.Run(gctx) })
	}
	if a.debug != nil {
		g.Go(func() error { return a.debug.Run(gctx) })
	}
	return g.Wait()
}

// watch keeps the realtime watcher running; while it is down the pipes run degraded
// (can_realtime=false) and snapshots keep the view eventually consistent.
func (a *Agent) watch(ctx context.Context, s *source) error {
	if s.fs == nil {
		return nil // a log source delivers realtime per session (Follow)
	}
	if !s.watch {
		a.log.Info("realtime disabled by configuration; running degraded", zap.String("source", s.id))
		<-ctx.Done()
		return nil
	}
	for {
		s.realtime.Store(true)
		err := s.fs.Watch(ctx, func(ev fs.Event) {
			if s.bus.Publish(ev) > 0 {
				// The index comes from a monotonic clock: this is a bug, counted in bus_rejected.
				a.log.Error("event index regressed; rejected by the bus", zap.String("source", s.id), zap.String("path", ev.Path))
			}
		})
		s.realtime.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Error("realtime watching failed; running degraded", zap.String("source", s.id), zap.Duration("retry_in", a.retry), zap.Error(err))
		t := time.NewTimer(a.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (a *Agent) close() {
	if a.debug != nil {
		a.debug.Close()
	}
	for _, s := range a.senders {
		_ = s.Close()
	}
}

func newSource(log *zap.Logger, id string, sc config.Source) (*source, error) {
	if sc.Driver == "journal" {
		j, err := journal.New(log, sc.Path)
		if err != nil {
			return nil, err
		}
		s := &source{id: id, uri: "journal://" + sc.Path, src: j}
		s.realtime.Store(true)
		return s, nil
	}
	f, err := fs.New(log, fs.Config{Root: sc.Root, Excludes: sc.Excludes, ModifyThrottle: sc.ModifyThrottle,
		Workers: sc.ScanWorkers, HotThreshold: sc.HotThreshold, MaxWatches: sc.MaxWatches})
	if err != nil {
		return nil, err
	}
	return &source{id: id, uri: "fs://" + sc.Root, src: f, fs: f, bus: bus.New(sc.BusCapacity, func(e fs.Event) uint64 { return e.Index }), watch: !sc.DisableRealtime}, nil
}
