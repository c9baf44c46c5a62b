// Package app composes the agent from its configuration: one source (and, for a source
// watched through the bus, one watcher and event bus) per source signature (DESIGN.md §4.2),
// shared by every source id naming the same tree; one sender per sender; one AgentPipe per
// pipe. main only loads config and runs it.
//
// It is the one package that names the drivers — source/fs, source/journal and sender/grpc —
// and hands them to the pipe as the contracts of agent/internal/source and
// agent/internal/sender (layers_test.go checks that nothing else imports them).
package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	"github.com/fustor/fustor/agent/internal/sender"
	grpcsender "github.com/fustor/fustor/agent/internal/sender/grpc"
	agentsource "github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs"
	"github.com/fustor/fustor/agent/internal/source/journal"
	"github.com/fustor/fustor/sdk/debughttp"
	"github.com/fustor/fustor/sdk/metrics"
)

// Options are test hooks; the zero value is production.
type Options struct {
	// WatchRetry is how long a failed watcher waits before retrying (0 = 30 s).
	WatchRetry time.Duration
}

type source struct {
	// ids are the configured source ids sharing this source, sorted.
	ids   []string
	uri   string
	watch bool
	src   agentsource.Snapshotter
	// watcher is set for a source whose realtime goes through the bus (fs): it feeds bus.
	watcher  agentsource.Watcher
	bus      *bus.Bus[agentsource.Event]
	realtime atomic.Bool
	// pipes are every pipe on any of ids: an overflow asks each of them for an audit.
	pipes []*pipe.Pipe
}

// name is how logs refer to the source.
func (s *source) name() string { return strings.Join(s.ids, ",") }

// counters are the source's counters (none for a source without any).
func (s *source) counters() map[string]uint64 {
	if c, ok := s.src.(agentsource.Counters); ok {
		return c.Counters()
	}
	return nil
}

// Agent is the running agent.
type Agent struct {
	log     *zap.Logger
	sources map[string]*source // by signature
	senders []*grpcsender.GRPC
	pipes   map[string]*pipe.Pipe
	retry   time.Duration
	debug   *debughttp.Debug // nil unless debug_listen is set
	metrics *debughttp.Debug // nil unless metrics_listen is set
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
	// Two watchers on one tree would double the inotify watches and the events for nothing, so
	// ids with the same signature share one source; they must then agree on its settings.
	groups := map[string][]string{} // signature -> source ids, sorted
	for _, id := range slices.Sorted(maps.Keys(cfg.Sources)) {
		sig, err := signature(cfg.Sources[id])
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", id, err)
		}
		groups[sig] = append(groups[sig], id)
	}
	var errs []error
	for _, sig := range slices.Sorted(maps.Keys(groups)) {
		ids := groups[sig]
		for _, id := range ids[1:] {
			if !sameSettings(cfg.Sources[ids[0]], cfg.Sources[id]) {
				errs = append(errs, fmt.Errorf("sources %s and %s watch the same tree %s with different settings", ids[0], id, sig))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byID := map[string]*source{}
	for _, sig := range slices.Sorted(maps.Keys(groups)) {
		ids := groups[sig]
		if len(ids) > 1 {
			log.Info("sources share one watcher and bus", zap.Strings("source_ids", ids), zap.String("signature", sig))
		}
		s, err := newSource(log.With(zap.String("source", strings.Join(ids, ","))), ids, sig, cfg.Sources[ids[0]])
		if err != nil {
			return nil, fmt.Errorf("create source %s: %w", strings.Join(ids, ","), err)
		}
		a.sources[sig] = s
		for _, id := range ids {
			byID[id] = s
		}
	}
	// Created after the sources (which hold no resources) so a failing source leaks no listener.
	// The collector reads a.sources and a.pipes only at scrape time, once Run serves.
	routes := metrics.Routes(newRegistry(a))
	if cfg.DebugListen != "" {
		d, err := debughttp.New(log, cfg.DebugListen, routes)
		if err != nil {
			return nil, err
		}
		a.debug = d
	}
	if cfg.MetricsListen != "" {
		m, err := debughttp.NewRoutes(log, cfg.MetricsListen, routes)
		if err != nil {
			a.close()
			return nil, err
		}
		a.metrics = m
	}
	senders := map[string]*grpcsender.GRPC{}
	backoffs := senderBackoffs(cfg)
	for id, sc := range cfg.Senders {
		s, err := grpcsender.NewGRPC(sc, backoffs[id])
		if err != nil {
			a.close()
			return nil, fmt.Errorf("create sender %s: %w", id, err)
		}
		senders[id] = s
		a.senders = append(a.senders, s)
	}
	// DESIGN.md §2: a <source, sender> pair runs at most one pipe; merged ids are one source.
	pairs := map[[2]string]string{} // {signature, sender} -> pipe id
	for _, id := range slices.Sorted(maps.Keys(cfg.Pipes)) {
		pc := cfg.Pipes[id]
		src := byID[pc.Source]
		pair := [2]string{src.uri, pc.Sender}
		if other, ok := pairs[pair]; ok {
			a.close()
			return nil, fmt.Errorf("pipes %s and %s both send the tree %s to sender %s: one pipe per source and sender", other, id, src.uri, pc.Sender)
		}
		pairs[pair] = id
		p := pipe.New(log, pipeConfig(id, cfg.AgentID, src.uri, pc), src.src, src.bus, senders[pc.Sender], src.realtime.Load)
		a.pipes[id] = p
		src.pipes = append(src.pipes, p)
	}
	// A queue overflow is a known loss of realtime events: every pipe on the source, whichever
	// of its ids the pipe names, audits.
	for _, src := range a.sources {
		o, ok := src.watcher.(agentsource.OverflowNotifier)
		if !ok {
			continue
		}
		o.SetOnOverflow(func() {
			for _, p := range src.pipes {
				p.RequestAudit()
			}
		})
	}
	return a, nil
}

// senderBackoffs returns, per sender, the smallest reconnect backoff of the pipes it carries:
// they share its connection, so the most eager one decides how soon it is retried. A sender
// no pipe uses keeps gRPC's defaults (zero).
func senderBackoffs(cfg config.Config) map[string]sender.Backoff {
	out := map[string]sender.Backoff{}
	for _, pc := range cfg.Pipes {
		b, ok := out[pc.Sender]
		if !ok {
			b = sender.Backoff{Min: pc.BackoffMin, Max: pc.BackoffMax}
		}
		out[pc.Sender] = sender.Backoff{Min: min(b.Min, pc.BackoffMin), Max: min(b.Max, pc.BackoffMax)}
	}
	return out
}

// pipeConfig is a pipe's settings from its normalised configuration (every optional one set).
func pipeConfig(id, agentID, uri string, pc config.Pipe) pipe.Config {
	return pipe.Config{ID: id, AgentID: agentID, SourceURI: uri,
		BatchSize: pc.BatchSize, TimeoutHint: pc.TimeoutHint, BackoffMin: pc.BackoffMin, BackoffMax: pc.BackoffMax,
		AuditInterval: pc.AuditInterval, StuckAfter: pc.StuckAfter,
		AuditRollingShare: *pc.AuditRollingShare, AuditDeepEvery: *pc.AuditDeepEvery, OverflowAuditDelay: *pc.OverflowAuditDelay}
}

// Pipe returns a pipe by id (for status and tests).
func (a *Agent) Pipe(id string) *pipe.Pipe { return a.pipes[id] }

// MetricsAddr returns the metrics endpoint's address (nil unless metrics_listen is set).
func (a *Agent) MetricsAddr() net.Addr {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.Addr()
}

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
	for _, d := range []*debughttp.Debug{a.debug, a.metrics} {
		if d != nil {
			g.Go(func() error { return d.Run(gctx) })
		}
	}
	return g.Wait()
}

// watch keeps the realtime watcher running; while it is down the pipes run degraded
// (can_realtime=false) and snapshots keep the view eventually consistent.
func (a *Agent) watch(ctx context.Context, s *source) error {
	if s.watcher == nil {
		return nil // a log source delivers realtime per session (Follow)
	}
	if !s.watch {
		a.log.Info("realtime disabled by configuration; running degraded", zap.String("source", s.name()))
		<-ctx.Done()
		return nil
	}
	for {
		s.realtime.Store(true)
		err := s.watcher.Watch(ctx, func(ev agentsource.Event) {
			if s.bus.Publish(ev) > 0 {
				// The index comes from a monotonic clock: this is a bug, counted in bus_rejected.
				a.log.Error("event index regressed; rejected by the bus", zap.String("source", s.name()), zap.String("path", ev.Path))
			}
		})
		s.realtime.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Error("realtime watching failed; running degraded", zap.String("source", s.name()), zap.Duration("retry_in", a.retry), zap.Error(err))
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
	for _, d := range []*debughttp.Debug{a.debug, a.metrics} {
		if d != nil {
			d.Close()
		}
	}
	for _, s := range a.senders {
		_ = s.Close()
	}
}

// signature identifies what a source reads (DESIGN.md §4.2: driver, uri, credential; neither
// driver has a credential): the driver and the cleaned absolute root or journal path, so
// "/mnt/x" and "/mnt/x/" are one tree. It doubles as the source URI sent to Fusion.
func signature(sc config.Source) (string, error) {
	p := sc.Root
	if sc.Driver == "journal" {
		p = sc.Path
	}
	abs, err := filepath.Abs(p) // Abs cleans the path
	if err != nil {
		return "", err
	}
	return sc.Driver + "://" + abs, nil
}

// sameSettings reports whether two sources with one signature agree on everything else, so
// sharing one source between them changes neither. DeepEqual covers fields added later too;
// Excludes is compared apart so that an empty list equals a missing one.
func sameSettings(x, y config.Source) bool {
	if !slices.Equal(x.Excludes, y.Excludes) {
		return false
	}
	x.Root, x.Path, x.Excludes = "", "", nil
	y.Root, y.Path, y.Excludes = "", "", nil
	return reflect.DeepEqual(x, y)
}

func newSource(log *zap.Logger, ids []string, sig string, sc config.Source) (*source, error) {
	if sc.Driver == "journal" {
		j, err := journal.New(log, sc.Path)
		if err != nil {
			return nil, err
		}
		s := &source{ids: ids, uri: sig, src: j}
		s.realtime.Store(true)
		return s, nil
	}
	f, err := fs.New(log, fs.Config{Root: sc.Root, Excludes: sc.Excludes, ModifyThrottle: sc.ModifyThrottle,
		Workers: sc.ScanWorkers, HotThreshold: sc.HotThreshold, MaxWatches: sc.MaxWatches})
	if err != nil {
		return nil, err
	}
	return &source{ids: ids, uri: sig, src: f, watcher: f, bus: bus.New(sc.BusCapacity, func(e agentsource.Event) uint64 { return e.Index }), watch: !sc.DisableRealtime}, nil
}
