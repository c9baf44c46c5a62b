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
	"errors"
	"fmt"
	"google.golang.org/grpc"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/fusion/internal/admin"
	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/gateway"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/query"
	"github.com/fustor/fustor/fusion/internal/receiver"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/debughttp"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/metrics"
)

// Options are test hooks and the reload source; the zero value is production without reload.
type Options struct {
	// Now is the physical clock (nil = time.Now).
	Now func() time.Time
	// SweepInterval is how often expired sessions are looked for (0 = 1 s).
	SweepInterval time.Duration
	// Load reads the configuration again for a reload (SIGHUP, AdminService.Reload); nil
	// means this Fusion cannot reload.
	Load func() (config.Config, error)
	// HealthInterval is how often each view's health status is brought up to date (0 = 250 ms).
	HealthInterval time.Duration
}

// Fusion is the running server. Its pipes, views and keys are a runtime registry (parts.go):
// a reload starts, stops or changes them by id while everything else keeps running.
type Fusion struct {
	log      *zap.Logger
	srv      *server.Server
	keys     *server.Keys
	sessions *session.Manager
	views    *view.Registry
	commands *command.Tracker
	query    *query.Service
	sweep    time.Duration
	health   time.Duration
	load     func() (config.Config, error)
	panics   atomic.Uint64
	debug    *debughttp.Debug // nil unless server.debug_listen is set
	metrics  *debughttp.Debug // nil unless server.metrics_listen is set
	gateway  *gateway.Gateway // nil unless server.http_listen is set

	rcv  *receiver.Receiver
	rt   parts
	ckpt *checkpoints
	now  func() time.Time
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
	keys, err := cfg.Keys()
	if err != nil {
		return nil, fmt.Errorf("resolve api keys: %w", err)
	}
	f := &Fusion{log: log, sweep: opts.SweepInterval, health: opts.HealthInterval, load: opts.Load,
		commands: command.NewTracker(1024)}
	if f.sweep == 0 {
		f.sweep = time.Second
	}
	if f.health == 0 {
		f.health = 250 * time.Millisecond
	}
	f.views = view.NewRegistry(log, cfg, opts.Now)
	// Leadership and idleness are per member (Member.Key): one forest member's agent going
	// leaves the others as they are.
	f.sessions = session.NewManager(log, opts.Now, cfg.Server.MaxSessions, session.Hooks{
		LeaderChanged: func(key, id string) {
			m, ok := f.views.ByKey(key)
			if !ok {
				return
			}
			m.SetLeader(id)
			if s, err := f.sessions.Get(id); err == nil && s.Info.Resumes {
				m.Resumed(id)
			}
		},
		ViewIdle: f.memberIdle,
	})
	f.query = query.New(f.views, f.sessions, f.commands)
	f.rt.init(f, cfg, keys)
	for _, id := range slices.Sorted(maps.Keys(cfg.Pipes)) {
		if err := f.rt.addLocked(id, cfg); err != nil {
			return nil, err
		}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	f.now = now
	f.ckpt = &checkpoints{log: log.Named("checkpoint"), dir: cfg.Server.StateDir, every: cfg.Server.CheckpointInterval, now: now}
	if f.ckpt.every > 0 {
		for _, v := range f.views.All() {
			f.ckpt.restore(v.Members())
		}
		f.ckpt.restorePipes(f.rt.pipeList())
	}
	f.rcv = receiver.New(log, f.sessions, &f.rt)
	f.setIngestLimits(cfg.Server)
	reg := newRegistry(f)
	f.keys = server.NewKeys(keys)
	srv, err := server.New(log, cfg.Server, f.keys, func() { f.panics.Add(1) }, server.NewMetrics(reg),
		grpc.ForceServerCodecV2(receiver.Codec())) // an undecodable push is INVALID_ARGUMENT
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
	if cfg.Server.HTTPListen != "" {
		if cfg.Server.TLS.ClientAuth == config.ClientAuthRequire {
			err = errors.New("start http gateway: it calls the gRPC listener without a client certificate, which server.tls.client_auth \"require\" refuses; use verify_if_given or leave server.http_listen empty")
		} else {
			gc := gateway.Config{Listen: cfg.Server.HTTPListen, GRPCAddr: srv.Addr(),
				GRPCTLS: cfg.Server.TLS.Enabled(), MaxRecvMsgBytes: cfg.Server.MaxRecvMsgBytes, Registerer: reg}
			if !cfg.Server.HTTPPlaintext {
				gc.GetCertificate = srv.GetCertificate()
			}
			f.gateway, err = gateway.New(log.Named("gateway"), gc)
		}
		if err != nil {
			srv.Close()
			for _, d := range []*debughttp.Debug{f.debug, f.metrics} {
				if d != nil {
					d.Close()
				}
			}
			return nil, err
		}
	}
	fustorv1.RegisterSessionServiceServer(srv.GRPC(), f.rcv)
	fustorv1.RegisterPushServiceServer(srv.GRPC(), f.rcv)
	fustorv1.RegisterViewServiceServer(srv.GRPC(), f.query)
	fustorv1.RegisterAdminServiceServer(srv.GRPC(), admin.New(f, f.sessions, f.views))
	return f, nil
}

// setIngestLimits puts the server's ingest bounds in force (at start and on each reload): the
// receiver's for push streams and rows, the session manager's for sessions.
func (f *Fusion) setIngestLimits(s config.Server) {
	f.rcv.SetLimits(receiver.Limits{FirstMessage: s.PushFirstMessageTimeout, StreamsPerKey: s.MaxPushStreamsPerKey,
		Rows: fsbatch.Limits{MaxPathBytes: s.MaxPathBytes, MaxDepth: s.MaxPathDepth, MaxNameBytes: s.MaxNameBytes,
			MaxDirs: s.MaxPushDirs, MaxDirBytes: s.MaxPushDirBytes}})
	f.sessions.SetLimits(session.Limits{PushIdle: s.PushIdleTimeout, MaxTimeout: s.MaxSessionTimeout})
}

// ingestLimits is the part of the server's settings setIngestLimits applies.
func ingestLimits(s config.Server) config.Server {
	return config.Server{PushFirstMessageTimeout: s.PushFirstMessageTimeout, MaxPushStreamsPerKey: s.MaxPushStreamsPerKey,
		MaxPathBytes: s.MaxPathBytes, MaxPathDepth: s.MaxPathDepth, MaxNameBytes: s.MaxNameBytes,
		MaxPushDirs: s.MaxPushDirs, MaxPushDirBytes: s.MaxPushDirBytes, PushIdleTimeout: s.PushIdleTimeout, MaxSessionTimeout: s.MaxSessionTimeout}
}

// memberIdle marks a live view's member stale when its last session ended: it keeps its tree
// and answers, flagged, and the next leader's snapshot reconciles it (DESIGN.md §5.1). The
// committed index stays: it still says what the tree holds.
func (f *Fusion) memberIdle(key string) {
	m, ok := f.views.ByKey(key)
	if !ok {
		return
	}
	if v, err := f.views.Get(m.View); err != nil || !v.Cfg.Live {
		return
	}
	f.log.Info("view member stale: its last session ended; it keeps answering, flagged stale, until a leader's snapshot",
		zap.String("view", m.View), zap.String("member", m.Name))
	m.MarkStale(f.now())
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

// HTTPAddr returns the HTTP gateway's address (nil unless server.http_listen is set).
func (f *Fusion) HTTPAddr() net.Addr {
	if f.gateway == nil {
		return nil
	}
	return f.gateway.Addr()
}

// Run serves until ctx is done; it returns nil on cancel. The pipes run under it, each with
// its own context, so a reload can stop one without touching the others.
func (f *Fusion) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	f.rt.start(gctx)
	g.Go(func() error { return f.sessions.Run(gctx, f.sweep) })
	g.Go(func() error { return f.srv.Run(gctx) })
	g.Go(func() error { return f.healthLoop(gctx) })
	g.Go(func() error { return f.logProgress(gctx, 30*time.Second) })
	g.Go(func() error { return f.ckpt.run(gctx, f.views.All, f.rt.pipeList) })
	for _, d := range []*debughttp.Debug{f.debug, f.metrics} {
		if d != nil {
			g.Go(func() error { return d.Run(gctx) })
		}
	}
	if f.gateway != nil {
		g.Go(func() error { return f.gateway.Run(gctx) })
	}
	err := g.Wait()
	// Before the sessions close: a live view's last session ending would reset it.
	if f.ckpt.every > 0 {
		f.ckpt.all(f.views.All(), f.rt.pipeList(), "")
	}
	f.sessions.CloseAll("fusion shutting down")
	f.rt.stopAll()
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
			if m.Driver == nil {
				continue // a rows view has no suspects
			}
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
