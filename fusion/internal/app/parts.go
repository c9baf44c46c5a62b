package app

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/receiver"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// parts is what a reload changes (DESIGN.md §7): the configuration in force and the running
// pipes, each with its own context and loop, looked up by the receiver on every session. The
// views live in the view registry, which a reload updates in place; the keys in server.Keys.
type parts struct {
	f *Fusion

	mu  sync.RWMutex
	cfg config.Config
	// keys are cfg's keys as resolved when it was applied: env: and file: settings are read
	// at each reload, so the digests, not the settings, tell whether the keys changed.
	keys  config.KeySet
	pipes map[string]*pipeRun
	ctx   context.Context // Run's; nil until Run starts the pipes
	// list is the running pipes, replaced whenever pipes changes: read without mu by session
	// hooks, which a reload's ending of sessions runs while it holds mu.
	list atomic.Pointer[[]*pipe.Pipe]

	reload       sync.Mutex // one reload at a time
	lastReloadOK atomic.Bool
	lastReloadNs atomic.Int64
}

// pipeRun is one running FusionPipe: its loop and sentinel sweep under their own context.
type pipeRun struct {
	p      *pipe.Pipe
	info   receiver.PipeInfo
	cancel context.CancelFunc
	done   chan struct{}
}

func (rt *parts) init(f *Fusion, cfg config.Config, keys config.KeySet) {
	rt.f, rt.cfg, rt.keys, rt.pipes = f, cfg, keys, map[string]*pipeRun{}
}

// Pipe returns a running pipe by id (receiver.Pipes).
func (rt *parts) Pipe(id string) (receiver.PipeInfo, bool) {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	pr, ok := rt.pipes[id]
	if !ok {
		return receiver.PipeInfo{}, false
	}
	return pr.info, true
}

// pipeList returns the running pipes.
func (rt *parts) pipeList() []*pipe.Pipe {
	if l := rt.list.Load(); l != nil {
		return *l
	}
	return nil
}

// listChangedLocked republishes pipeList after a change of pipes.
func (rt *parts) listChangedLocked() {
	l := make([]*pipe.Pipe, 0, len(rt.pipes))
	for _, pr := range rt.pipes {
		l = append(l, pr.p)
	}
	rt.list.Store(&l)
}

// Pipes returns the running pipes and their receivers (admin.Runtime).
func (f *Fusion) Pipes() (map[string]*pipe.Pipe, map[string]string) {
	f.rt.mu.RLock()
	defer f.rt.mu.RUnlock()
	pipes, receivers := map[string]*pipe.Pipe{}, map[string]string{}
	for id, pr := range f.rt.pipes {
		pipes[id], receivers[id] = pr.p, f.rt.cfg.Pipes[id].Receiver
	}
	return pipes, receivers
}

// addLocked builds pipe id of cfg over the views now in the registry, and starts it when Run
// has. Callers hold mu (or run before Run).
func (rt *parts) addLocked(id string, cfg config.Config) error {
	pc := cfg.Pipes[id]
	var vs []*view.View
	for _, name := range pc.Views {
		v, err := rt.f.views.Get(name)
		if err != nil {
			return fmt.Errorf("build pipe %s: %w", id, err)
		}
		vs = append(vs, v)
	}
	p := pipe.New(rt.f.log, id, vs, pc.QueueSize)
	p.Commands = rt.f.commands
	keys := make([]string, len(p.Members))
	for i, m := range p.Members {
		keys[i] = m.Key()
	}
	pr := &pipeRun{p: p, info: receiver.PipeInfo{Pipe: p, Schema: pc.Schema,
		Session: session.Pipe{ID: id, Views: keys, Timeout: pc.SessionTimeout}}}
	rt.pipes[id] = pr
	rt.listChangedLocked()
	if rt.ctx != nil {
		rt.startLocked(pr, pc.SentinelInterval)
	}
	return nil
}

func (rt *parts) startLocked(pr *pipeRun, sentinel time.Duration) {
	ctx, cancel := context.WithCancel(rt.ctx)
	pr.cancel, pr.done = cancel, make(chan struct{})
	go func() {
		defer close(pr.done)
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return rt.supervise(gctx, pr.p.ID, "loop", pr.p.Run) })
		if sentinel > 0 {
			g.Go(func() error {
				return rt.supervise(gctx, pr.p.ID, "sentinel", func(ctx context.Context) error { return rt.f.sentinelSweep(ctx, pr.p, sentinel) })
			})
		}
		_ = g.Wait() // both return nil on cancel
	}()
}

// supervise runs one of a pipe's loops until ctx ends: a panic that escapes it is recovered,
// logged with its stack and counted, and the loop starts again after a pause (DESIGN.md §8).
func (rt *parts) supervise(ctx context.Context, pipeID, what string, run func(context.Context) error) error {
	for {
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					rt.f.panics.Add(1)
					rt.f.log.Error("pipe part panicked; restarting it", zap.String("pipe", pipeID), zap.String("part", what),
						zap.Any("panic", r), zap.Stack("stack"))
					err = fmt.Errorf("%s of pipe %s panicked: %v", what, pipeID, r)
				}
			}()
			return run(ctx)
		}()
		if err == nil || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// start runs every pipe under ctx (Fusion.Run's).
func (rt *parts) start(ctx context.Context) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.ctx = ctx
	for id, pr := range rt.pipes {
		rt.startLocked(pr, rt.cfg.Pipes[id].SentinelInterval)
	}
}

// stopLocked ends a pipe's sessions (their agents reconnect to what the pipe is now), stops
// its loop and forgets it.
func (rt *parts) stopLocked(id, reason string) {
	pr := rt.pipes[id]
	delete(rt.pipes, id)
	rt.listChangedLocked()
	rt.f.sessions.ClosePipe(id, reason)
	if pr != nil && pr.cancel != nil {
		pr.cancel()
		<-pr.done
	}
}

// stopAll waits for every pipe after Run's context ended.
func (rt *parts) stopAll() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, pr := range rt.pipes {
		if pr.cancel != nil {
			pr.cancel()
			<-pr.done
		}
	}
}

// Reload reads the configuration again and applies what changed by id: views, pipes,
// receivers' keys. An invalid configuration changes nothing and is answered with every error.
func (f *Fusion) Reload(ctx context.Context) (*fustorv1.ReloadResponse, error) {
	if f.load == nil {
		return nil, fmt.Errorf("%w: this fusion was started without a configuration to read again", errs.ErrPrecondition)
	}
	f.rt.reload.Lock()
	defer f.rt.reload.Unlock()
	cfg, err := f.load()
	var keys config.KeySet
	if err == nil {
		cfg.Normalize()
		err = cfg.Validate()
	}
	if err == nil {
		// Validate read the key files too; one that changed since is read as it is now.
		keys, err = cfg.Keys()
	}
	f.rt.lastReloadNs.Store(time.Now().UnixNano())
	if err != nil {
		f.rt.lastReloadOK.Store(false)
		f.log.Error("reload refused: the configuration is invalid; nothing changed", zap.Error(err))
		return nil, fmt.Errorf("%w: the new configuration is refused, nothing changed: %w", errs.ErrInvalidArgument, err)
	}
	resp := f.apply(cfg, keys)
	f.rt.lastReloadOK.Store(true)
	for _, c := range resp.Changes {
		f.log.Info("reload applied", zap.String("change", c))
	}
	if len(resp.Changes) == 0 {
		f.log.Info("reload applied: nothing changed")
	}
	return resp, nil
}

// apply moves the running Fusion to cfg (normalised and valid): pipes removed or changed are
// stopped (their sessions end), views are updated in place (trees kept), pipes added or
// changed are started, keys replaced by keys (cfg's, resolved). Untouched pipes keep their
// loops and sessions.
func (f *Fusion) apply(cfg config.Config, keys config.KeySet) *fustorv1.ReloadResponse {
	rt := &f.rt
	rt.mu.Lock()
	defer rt.mu.Unlock()
	old := rt.cfg
	resp := &fustorv1.ReloadResponse{}
	if !reflect.DeepEqual(ingestLimits(old.Server), ingestLimits(cfg.Server)) {
		f.setIngestLimits(cfg.Server)
		resp.Changes = append(resp.Changes, "ingest limits changed: in force for new push streams, and for sessions at the next sweep")
	}
	if !reflect.DeepEqual(withoutKeys(old.Server), withoutKeys(cfg.Server)) || old.Log != cfg.Log {
		resp.Changes = append(resp.Changes, "server or log settings changed: they take effect at the next restart")
	}
	for _, id := range slices.Sorted(maps.Keys(old.Pipes)) {
		switch {
		case !hasPipe(cfg, id):
			resp.Removed = append(resp.Removed, id)
			resp.Changes = append(resp.Changes, "pipe removed: "+id)
			rt.stopLocked(id, "the pipe was removed by a configuration reload")
		case pipeChanged(old, cfg, id):
			resp.PipesChanged = append(resp.PipesChanged, id)
			resp.Changes = append(resp.Changes, "pipe changed: "+id+" (restarted; its sessions reconnect)")
			rt.stopLocked(id, "the pipe was changed by a configuration reload")
		}
	}
	ch := f.views.Apply(cfg)
	resp.ViewsAdded, resp.ViewsRemoved, resp.ViewsChanged = ch.Added, ch.Removed, ch.Changed
	resp.Changes = append(resp.Changes, ch.Details...)
	for _, id := range slices.Sorted(maps.Keys(cfg.Pipes)) {
		_, running := rt.pipes[id]
		if running {
			continue
		}
		if !hasPipe(old, id) {
			resp.Added = append(resp.Added, id)
			resp.Changes = append(resp.Changes, "pipe added: "+id)
		}
		if err := rt.addLocked(id, cfg); err != nil {
			// Validate checked every view a pipe names and Apply made them: unreachable.
			f.log.Error("reload could not start a pipe", zap.String("pipe", id), zap.Error(err))
			resp.Changes = append(resp.Changes, fmt.Sprintf("pipe %s not started: %v", id, err))
		}
	}
	if !reflect.DeepEqual(rt.keys, keys) {
		resp.Changes = append(resp.Changes, "api keys changed")
	}
	f.keys.Replace(keys)
	rt.cfg, rt.keys = cfg, keys
	return resp
}

func hasPipe(c config.Config, id string) bool { _, ok := c.Pipes[id]; return ok }

// pipeChanged reports whether pipe id must restart: its settings changed, a view it feeds
// was rebuilt (another driver) or now accepts another schema or schema version (a session
// opened for the old one must not go on feeding it), or its member of a forest was renamed.
func pipeChanged(old, cfg config.Config, id string) bool {
	if !reflect.DeepEqual(old.Pipes[id], cfg.Pipes[id]) {
		return true
	}
	for _, v := range cfg.Pipes[id].Views {
		ov, nv := old.Views[v], cfg.Views[v]
		if ov.Driver != nv.Driver || ov.Schema != nv.Schema || ov.SchemaVersion != nv.SchemaVersion || old.MemberName(v, id) != cfg.MemberName(v, id) {
			return true
		}
	}
	return false
}

// withoutKeys leaves out of s what a reload applies: the admin keys and the ingest limits.
func withoutKeys(s config.Server) config.Server {
	s.AdminKeys = nil
	s.PushFirstMessageTimeout, s.MaxPushStreamsPerKey = 0, 0
	s.MaxPathBytes, s.MaxPathDepth, s.MaxNameBytes, s.MaxPushDirs, s.MaxPushDirBytes = 0, 0, 0, 0, 0
	s.PushIdleTimeout, s.MaxSessionTimeout = 0, 0
	return s
}

// healthLoop keeps the gRPC health service true (DESIGN.md §7): the server is SERVING once
// every pipe runs, and each view's service "fustor.v1.ViewService/<view>" is SERVING while
// the view can answer (at least one member ready), NOT_SERVING otherwise; a view a reload
// removed is unknown again. The server's shutdown sets everything NOT_SERVING.
func (f *Fusion) healthLoop(ctx context.Context) error {
	f.srv.SetServing("", true)
	t := time.NewTicker(f.health)
	defer t.Stop()
	known := map[string]bool{}
	for {
		seen := map[string]bool{}
		for _, v := range f.views.All() {
			svc, ok := "fustor.v1.ViewService/"+v.Name, v.Ready() == nil
			seen[svc] = true
			if prev, was := known[svc]; !was || prev != ok {
				f.srv.SetServing(svc, ok)
				known[svc] = ok
			}
		}
		for svc := range known {
			if !seen[svc] {
				f.srv.ForgetService(svc)
				delete(known, svc)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
