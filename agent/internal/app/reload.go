package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	"github.com/fustor/fustor/agent/internal/sender"
)

// plan is a configuration checked whole and resolved into the parts it asks for.
type plan struct {
	cfg config.Config
	// groups are the source ids of each signature, sorted: ids naming one tree share a source.
	groups map[string][]string
	// sigOf is each source id's signature.
	sigOf    map[string]string
	backoffs map[string]sender.Backoff
}

// Validate checks a configuration as New and Reload would, building nothing: the config's own
// rules and the agent's (one source per tree, one pipe per tree and sender). The error joins
// every problem found (errors.Join), one per line.
func Validate(cfg config.Config) error {
	_, err := resolve(cfg)
	return err
}

// Errors splits an error from Validate, New or Reload into its problems, for one log line or
// printed line each.
func Errors(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e)
	}
	if err != nil {
		walk(err)
	}
	return out
}

// resolve normalises and validates cfg and groups its sources by signature. The maps of cfg
// are copied first, so the caller's value is left as it was.
func resolve(cfg config.Config) (*plan, error) {
	cfg.Sources, cfg.Senders, cfg.Pipes = maps.Clone(cfg.Sources), maps.Clone(cfg.Senders), maps.Clone(cfg.Pipes)
	if cfg.Sources == nil {
		cfg.Sources = map[string]config.Source{}
	}
	if cfg.Senders == nil {
		cfg.Senders = map[string]config.Sender{}
	}
	if cfg.Pipes == nil {
		cfg.Pipes = map[string]config.Pipe{}
	}
	cfg.Normalize()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, Errors(err)...)
	}
	// The plan's senders hold the key itself, api_key_file read here: a reload reads the file
	// again, and a rotated key then restarts its sender as any changed setting does. A sql
	// source's DSN and password files likewise.
	for id, s := range cfg.Sources {
		if s.Driver != "sql" {
			continue
		}
		if dsn, pw, err := s.SQL.Credentials(); err == nil {
			s.SQL.DSN, s.SQL.DSNFile, s.SQL.Password, s.SQL.PasswordFile = dsn, "", pw, ""
			cfg.Sources[id] = s
		}
	}
	for id, s := range cfg.Senders {
		if k, err := s.Key(); err == nil {
			s.APIKey, s.APIKeyFile = k, ""
			cfg.Senders[id] = s
		}
	}
	pl := &plan{cfg: cfg, groups: map[string][]string{}, sigOf: map[string]string{}, backoffs: senderBackoffs(cfg)}
	for _, id := range slices.Sorted(maps.Keys(cfg.Sources)) {
		sig, err := signature(cfg.Sources[id])
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: %w", id, err))
			continue
		}
		pl.groups[sig] = append(pl.groups[sig], id)
		pl.sigOf[id] = sig
	}
	// Two watchers on one tree would double the inotify watches and the events for nothing, so
	// ids with the same signature share one source; they must then agree on its settings.
	for _, sig := range slices.Sorted(maps.Keys(pl.groups)) {
		ids := pl.groups[sig]
		for _, id := range ids[1:] {
			if !sameSettings(cfg.Sources[ids[0]], cfg.Sources[id]) {
				errs = append(errs, fmt.Errorf("sources %s and %s watch the same tree %s with different settings", ids[0], id, sig))
			}
		}
	}
	// DESIGN.md §2: a <source, sender> pair runs at most one pipe; merged ids are one source.
	pairs := map[[2]string]string{} // {signature, sender} -> pipe id
	for _, id := range slices.Sorted(maps.Keys(cfg.Pipes)) {
		pc := cfg.Pipes[id]
		sig, ok := pl.sigOf[pc.Source]
		if !ok {
			continue // reported by Validate
		}
		pair := [2]string{sig, pc.Sender}
		if other, ok := pairs[pair]; ok {
			errs = append(errs, fmt.Errorf("pipes %s and %s both send the tree %s to sender %s: one pipe per source and sender", other, id, sig, pc.Sender))
		}
		pairs[pair] = id
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return pl, nil
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

// change is what moves the agent from its configuration to a plan's, all of it built (the
// resources acquired) before anything running is touched.
type change struct {
	pl *plan
	// stopSources, stopSenders, stopPipes: ids running now to stop (removed, or replaced by a
	// new one below).
	stopSources, stopSenders, stopPipes []string
	sources                             map[string]*source      // by signature, new
	senders                             map[string]*senderEntry // new
	pipes                               map[string]pipeEntry    // new, p unset: built at commit
	renamed                             map[string][]string     // kept sources whose ids change
	lines                               []func(log *zap.Logger) // one per change, logged at commit
}

// prepare diffs pl against what runs, by id: a source (by signature) whose settings changed,
// a sender whose settings changed, and a pipe whose settings, agent id, source or sender
// changed are replaced; what is unchanged is kept as it is, sessions included. Every new
// source and sender is created here; if one fails, those created are released and nothing
// running has changed. a.mu is held.
//
// A sender's reconnect backoff follows its pipes' (senderBackoffs) when it is created; a
// reload that changes only the pipes keeps the running sender's, so as not to restart every
// pipe on it.
func (a *Agent) prepare(pl *plan) (*change, error) {
	ch := &change{pl: pl, sources: map[string]*source{}, senders: map[string]*senderEntry{},
		pipes: map[string]pipeEntry{}, renamed: map[string][]string{}}
	note := func(msg string, fields ...zap.Field) {
		ch.lines = append(ch.lines, func(log *zap.Logger) { log.Info(msg, fields...) })
	}
	var err error
	defer func() {
		if err != nil {
			for _, s := range ch.senders {
				_ = s.s.Close()
			}
			for _, s := range ch.sources {
				s.close()
			}
		}
	}()
	for _, sig := range slices.Sorted(maps.Keys(a.sources)) {
		if _, ok := pl.groups[sig]; !ok {
			ch.stopSources = append(ch.stopSources, sig)
			note("source removed", zap.String("source", a.sources[sig].name()), zap.String("signature", sig))
		}
	}
	for _, sig := range slices.Sorted(maps.Keys(pl.groups)) {
		ids := pl.groups[sig]
		sc := pl.cfg.Sources[ids[0]]
		old, ok := a.sources[sig]
		if ok && sameSettings(old.cfg, sc) {
			if name := strings.Join(ids, ","); name != old.name() {
				ch.renamed[sig] = ids
				note("source ids changed", zap.String("from", old.name()), zap.String("to", name), zap.String("signature", sig))
			}
			continue
		}
		if len(ids) > 1 {
			a.log.Info("sources share one watcher and bus", zap.Strings("source_ids", ids), zap.String("signature", sig))
		}
		var s *source
		s, err = a.newSource(ids, sig, sc)
		if err != nil {
			return nil, fmt.Errorf("create source %s: %w", strings.Join(ids, ","), err)
		}
		ch.sources[sig] = s
		if ok {
			ch.stopSources = append(ch.stopSources, sig)
			note("source restarted: its settings changed", zap.String("source", strings.Join(ids, ",")), zap.String("signature", sig))
		} else {
			note("source added", zap.String("source", strings.Join(ids, ",")), zap.String("signature", sig))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(a.senders)) {
		if _, ok := pl.cfg.Senders[id]; !ok {
			ch.stopSenders = append(ch.stopSenders, id)
			note("sender removed", zap.String("sender", id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(pl.cfg.Senders)) {
		sc := pl.cfg.Senders[id]
		old, ok := a.senders[id]
		if ok && old.cfg == sc {
			continue
		}
		var s closableSender
		s, err = newSender(sc, pl.backoffs[id], a.log.Named("sender").With(zap.String("sender", id)))
		if err != nil {
			return nil, fmt.Errorf("create sender %s: %w", id, err)
		}
		ch.senders[id] = &senderEntry{cfg: sc, s: s}
		if ok {
			ch.stopSenders = append(ch.stopSenders, id)
			note("sender changed", zap.String("sender", id), zap.String("address", sc.Address))
		} else {
			note("sender added", zap.String("sender", id), zap.String("address", sc.Address))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(a.pipes)) {
		if _, ok := pl.cfg.Pipes[id]; !ok {
			ch.stopPipes = append(ch.stopPipes, id)
			note("pipe removed", zap.String("pipe", id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(pl.cfg.Pipes)) {
		pc := pl.cfg.Pipes[id]
		sig := pl.sigOf[pc.Source]
		e := pipeEntry{cfg: pipeConfig(id, pl.cfg.AgentID, sig, pl.cfg.Sources[pc.Source], pc), sender: pc.Sender, sig: sig}
		e.cfg.StateDir = pl.cfg.StateDir
		old, ok := a.pipes[id]
		why := ""
		switch {
		case !ok:
		case old.sig != e.sig || old.sender != e.sender || !reflect.DeepEqual(old.cfg, e.cfg):
			why = "its settings changed"
		case ch.sources[sig] != nil:
			why = "its source restarted"
		case ch.senders[e.sender] != nil:
			why = "its sender changed"
		default:
			continue // unchanged: it keeps running, and keeps its session
		}
		ch.pipes[id] = e
		if ok {
			ch.stopPipes = append(ch.stopPipes, id)
			note("pipe restarted: "+why, zap.String("pipe", id))
		} else {
			note("pipe added", zap.String("pipe", id), zap.String("source", pc.Source), zap.String("sender", pc.Sender))
		}
	}
	return ch, nil
}

// commit applies a prepared change: it stops what goes (pipes first, then the sources and
// senders they used), then starts what comes (sources and senders first, then the pipes on
// them). Nothing else is touched. logChanges logs one line per change (not at start, where
// everything is new). a.mu is held, or the agent is not shared yet.
func (a *Agent) commit(ch *change, logChanges bool) {
	for _, id := range ch.stopPipes {
		e := a.pipes[id]
		a.reg.stop(partKey(kindPipe, id))
		if s := a.sources[e.sig]; s != nil {
			s.removePipe(e.p)
		}
		delete(a.pipes, id)
	}
	for _, sig := range ch.stopSources {
		a.reg.stop(partKey(kindSource, sig))
		a.sources[sig].close()
		delete(a.sources, sig)
	}
	for _, id := range ch.stopSenders {
		_ = a.senders[id].s.Close()
		delete(a.senders, id)
	}
	for sig, ids := range ch.renamed {
		s := a.sources[sig]
		s.mu.Lock()
		s.ids = ids
		s.mu.Unlock()
	}
	for _, sig := range slices.Sorted(maps.Keys(ch.sources)) {
		s := ch.sources[sig]
		a.sources[sig] = s
		a.startPart(partKey(kindSource, sig), func(ctx context.Context) error { return a.watch(ctx, s) })
	}
	maps.Copy(a.senders, ch.senders)
	plog := a.pipeLogger()
	for _, id := range slices.Sorted(maps.Keys(ch.pipes)) {
		e := ch.pipes[id]
		src := a.sources[e.sig]
		if src.rows != nil {
			e.p = pipe.NewRows(plog, e.cfg, src.rows, a.senders[e.sender].s, src.canRealtime)
		} else {
			e.p = pipe.New(plog, e.cfg, src.src, src.bus, a.senders[e.sender].s, src.canRealtime)
		}
		a.pipes[id] = &e
		src.addPipe(e.p)
		a.startPart(partKey(kindPipe, id), e.p.Run)
	}
	a.cfg = ch.pl.cfg
	if logChanges {
		for _, line := range ch.lines {
			line(a.log)
		}
	}
}

// startPart adds a part; its key is free, as commit stopped any previous holder first.
func (a *Agent) startPart(key string, run func(context.Context) error) {
	if err := a.reg.start(key, run); err != nil {
		a.log.Error("part not started", zap.String("part", key), zap.Error(err))
	}
}

// Reload moves the running agent to cfg. The configuration is validated whole first: if it is
// invalid, or a new source or sender cannot be created, nothing changes, every problem is
// logged (one line each) and returned. Otherwise only what changed by id is started, stopped
// or restarted, one log line per change; unchanged pipes keep their sessions. Listeners, log
// settings and the debug endpoints are fixed at start: a change to them is logged and ignored.
func (a *Agent) Reload(cfg config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	pl, err := resolve(cfg)
	if err == nil {
		var ch *change
		ch, err = a.prepare(pl)
		if err == nil {
			for _, f := range fixedAtStart(a.cfg, pl.cfg) {
				a.log.Warn("reload cannot change this setting; restart the agent to apply it", zap.String("key", f))
			}
			a.commit(ch, true)
			a.reloads.record(a.opts.Now(), true)
			a.log.Info("reload applied", zap.Int("changes", len(ch.lines)))
			return nil
		}
	}
	a.reloads.record(a.opts.Now(), false)
	for _, e := range Errors(err) {
		a.log.Error("reload refused; the running configuration is kept", zap.Error(e))
	}
	return fmt.Errorf("reload config: %w", err)
}

// fixedAtStart names the settings that differ between old and new but apply only at start.
func fixedAtStart(old, new config.Config) []string {
	var out []string
	if old.DebugListen != new.DebugListen {
		out = append(out, "debug_listen")
	}
	if old.MetricsListen != new.MetricsListen {
		out = append(out, "metrics_listen")
	}
	if old.Log != new.Log {
		out = append(out, "log")
	}
	if old.PIDFile != new.PIDFile {
		out = append(out, "pid_file")
	}
	return out
}

// reloadStats is what the metrics say of reloads.
type reloadStats struct {
	mu                 sync.Mutex
	ok                 bool
	at                 time.Time // zero: no reload yet
	succeeded, refused uint64
}

func (r *reloadStats) record(at time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ok, r.at = ok, at
	if ok {
		r.succeeded++
	} else {
		r.refused++
	}
}

func (r *reloadStats) get() (ok bool, at time.Time, succeeded, refused uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.at, r.succeeded, r.refused
}

// RefuseReload records and logs a reload that failed before it had a configuration to check
// (the file could not be read): nothing changes.
func (a *Agent) RefuseReload(err error) {
	a.reloads.record(a.opts.Now(), false)
	a.log.Error("reload refused; the running configuration is kept", zap.Error(err))
}
