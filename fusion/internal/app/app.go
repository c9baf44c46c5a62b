// Package app composes Fusion from its configuration: views, pipes, sessions, the receiver,
// the query and admin services, and the gRPC server; main only loads config and calls Run.
//
// The layers, top to bottom (layers_test.go checks the import rules):
//
//	app                        composition, metrics, the sentinel sweep
//	receiver, query, admin     the gRPC services
//	pipe                       per-pipe queue and apply loop
//	session, command, server   sessions and leadership, agent commands, the gRPC server
//	view                       View, Registry, readiness, the Driver interface
//	view/fs (drivers)          the data; imported by package view only
//	view/viewapi, errs         the contract's types and the domain errors; import nothing
package app

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/fusion/internal/admin"
	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/query"
	"github.com/fustor/fustor/fusion/internal/receiver"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/debughttp"
	"github.com/fustor/fustor/sdk/metrics"
)

// Options are test hooks; the zero value is production.
type Options struct {
	// Now is the physical clock (nil = time.Now).
	Now func() time.Time
	// SweepInterval is how often expired sessions are looked for (0 = 1 s).
	SweepInterval time.Duration
}

// Fusion is the running server.
type Fusion struct {
	log      *zap.Logger
	srv      *server.Server
	pipes    map[string]*pipe.Pipe
	sessions *session.Manager
	views    *view.Registry
	commands *command.Tracker
	sentinel map[string]time.Duration // pipe → sentinel interval
	sweep    time.Duration
	panics   atomic.Uint64
	debug    *debughttp.Debug // nil unless server.debug_listen is set
	metrics  *debughttp.Debug // nil unless server.metrics_listen is set
}

// New builds Fusion and binds its listener.
func New(log *zap.Logger, cfg config.Config, opts Options) (*Fusion, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate config: %w", err)
	}
	f := &Fusion{log: log, pipes: map[string]*pipe.Pipe{}, sweep: opts.SweepInterval,
		commands: command.NewTracker(1024), sentinel: map[string]time.Duration{}}
	if f.sweep == 0 {
		f.sweep = time.Second
	}
	f.views = view.NewRegistry(log, cfg, opts.Now)
	// Leadership and idleness are per member (Member.Key): one forest member's agent going
	// leaves the others as they are.
	f.sessions = session.NewManager(log, opts.Now, cfg.Server.MaxSessions, session.Hooks{
		LeaderChanged: func(key, id string) {
			if m, ok := f.views.ByKey(key); ok {
				m.SetLeader(id)
			}
		},
		ViewIdle: func(key string) {
			m, ok := f.views.ByKey(key)
			if v, err := f.views.Get(m.View); !ok || err != nil || !v.Cfg.Live {
				return
			}
			log.Info("live view reset: its last session ended", zap.String("view", m.View), zap.String("member", m.Name))
			m.Reset()
			for _, p := range f.pipes {
				if slices.Contains(p.Members, m) {
					p.ResetCommitted()
				}
			}
		},
	})
	infos := map[string]receiver.PipeInfo{}
	receivers := map[string]string{}
	for id, pc := range cfg.Pipes {
		var vs []*view.View
		for _, name := range pc.Views {
			v, err := f.views.Get(name)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		p := pipe.New(log, id, vs, pc.QueueSize)
		p.Commands = f.commands
		f.pipes[id] = p
		f.sentinel[id] = pc.SentinelInterval
		receivers[id] = pc.Receiver
		keys := make([]string, len(p.Members))
		for i, m := range p.Members {
			keys[i] = m.Key()
		}
		infos[id] = receiver.PipeInfo{Pipe: p, Schema: pc.Schema,
			Session: session.Pipe{ID: id, Views: keys, Timeout: pc.SessionTimeout}}
	}
	reg := newRegistry(f)
	srv, err := server.New(log, cfg.Server, server.NewKeys(&cfg), func() { f.panics.Add(1) }, server.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	f.srv = srv
	routes := metrics.Routes(reg)
	if cfg.Server.DebugListen != "" {
		if f.debug, err = debughttp.New(log, cfg.Server.DebugListen, routes); err != nil {
			srv.Close()
			return nil, err
		}
	}
	if cfg.Server.MetricsListen != "" {
		if f.metrics, err = debughttp.NewRoutes(log, cfg.Server.MetricsListen, routes); err != nil {
			srv.Close()
			if f.debug != nil {
				f.debug.Close()
			}
			return nil, err
		}
	}
	rcv := receiver.New(log, f.sessions, infos)
	fustorv1.RegisterSessionServiceServer(srv.GRPC(), rcv)
	fustorv1.RegisterPushServiceServer(srv.GRPC(), rcv)
	fustorv1.RegisterViewServiceServer(srv.GRPC(), query.New(f.views, f.sessions, f.commands))
	fustorv1.RegisterAdminServiceServer(srv.GRPC(), admin.New(f.pipes, receivers, f.sessions, f.views))
	return f, nil
}

// Addr returns the gRPC listen address.
func (f *Fusion) Addr() net.Addr { return f.srv.Addr() }

// MetricsAddr returns the metrics endpoint's address (nil unless server.metrics_listen is set).
func (f *Fusion) MetricsAddr() net.Addr {
	if f.metrics == nil {
		return nil
	}
	return f.metrics.Addr()
}

// Run serves until ctx is done; it returns nil on cancel.
func (f *Fusion) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range f.pipes {
		g.Go(func() error { return p.Run(gctx) })
	}
	g.Go(func() error { return f.sessions.Run(gctx, f.sweep) })
	for id, p := range f.pipes {
		if every := f.sentinel[id]; every > 0 {
			g.Go(func() error { return f.sentinelSweep(gctx, p, every) })
		}
	}
	g.Go(func() error { return f.srv.Run(gctx) })
	for _, d := range []*debughttp.Debug{f.debug, f.metrics} {
		if d != nil {
			g.Go(func() error { return d.Run(gctx) })
		}
	}
	err := g.Wait()
	f.sessions.CloseAll("fusion shutting down")
	return err
}

// maxSentinelPaths bounds one sentinel task.
const maxSentinelPaths = 1000

// sentinelSweep periodically sends each view's suspect paths to its leader session, which
// stats them and answers with sentinel feedback (DESIGN.md §4.3).
func (f *Fusion) sentinelSweep(ctx context.Context, p *pipe.Pipe, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, m := range p.Members {
			list, _ := m.Driver.Suspects("/", maxSentinelPaths)
			sess, err := f.sessions.Get(m.State().Leader)
			if len(list) == 0 || err != nil {
				continue
			}
			paths := make([]string, len(list))
			for i, s := range list {
				paths[i] = s.Entry.Path
			}
			sess.Command(&fustorv1.Command{Id: "sentinel-" + m.Key(), Kind: &fustorv1.Command_Sentinel{Sentinel: &fustorv1.SentinelCommand{Paths: paths}}})
		}
	}
}
