// Package app composes the agent from its configuration: one source (and, for a source
// watched through the bus, one watcher and event bus) per source signature (DESIGN.md §4.2),
// shared by every source id naming the same tree; one sender per sender; one AgentPipe per
// pipe. main only loads config and runs it.
//
// The running parts — each source's watcher loop and each pipe — are kept in a locked
// registry (registry.go), each with its own context and restarted with backoff if it panics
// or fails, so Reload (reload.go) can start, stop or restart one by id while the others, and
// their sessions, run on.
//
// It is the one package that names the drivers — source/fs, source/journal, source/s3, source/sql, sender/grpc and sender/echo —
// and hands them to the pipe as the contracts of agent/internal/source and
// agent/internal/sender (layers_test.go checks that nothing else imports them).
package app

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	agentsender "github.com/fustor/fustor/agent/internal/sender"
	echosender "github.com/fustor/fustor/agent/internal/sender/echo"
	grpcsender "github.com/fustor/fustor/agent/internal/sender/grpc"
	agentsource "github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs"
	"github.com/fustor/fustor/agent/internal/source/journal"
	s3source "github.com/fustor/fustor/agent/internal/source/s3"
	sqlsource "github.com/fustor/fustor/agent/internal/source/sql"
	"github.com/fustor/fustor/sdk/debughttp"
	"github.com/fustor/fustor/sdk/metrics"
)

// Options are test hooks; the zero value is production.
type Options struct {
	// WatchRetry is how long a failed watcher waits before retrying (0 = 30 s).
	WatchRetry time.Duration
	// PartRestart is the first wait before a part (watcher loop, pipe) that panicked or failed
	// is restarted; it doubles up to 30 s (0 = 1 s).
	PartRestart time.Duration
	// NewSource, when set, builds the source of a signature instead of its driver (nil = use
	// the driver): tests plug in sources that misbehave. A source that is a Watcher gets a bus.
	NewSource func(sig string, sc config.Source) (agentsource.Snapshotter, error)
	// Now is the clock of reload times (nil = time.Now).
	Now func() time.Time
}

type source struct {
	sig string
	// cfg is the settings every id of the source agrees on.
	cfg   config.Source
	uri   string
	watch bool
	src   agentsource.Snapshotter
	// rows is set instead of src for a source of a generic schema (sql).
	rows agentsource.RowSnapshotter
	// watcher is set for a source whose realtime goes through the bus (fs): it feeds bus.
	watcher  agentsource.Watcher
	bus      *bus.Bus[agentsource.Event]
	realtime atomic.Bool

	mu sync.Mutex
	// ids are the configured source ids sharing this source, sorted; a reload may change them.
	ids []string
	// pipes are every pipe on any of ids: an overflow asks each of them for an audit.
	pipes []*pipe.Pipe
}

// name is how logs and metrics refer to the source.
func (s *source) name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.ids, ",")
}

// pipeList returns the pipes on the source now.
func (s *source) pipeList() []*pipe.Pipe {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pipes)
}

func (s *source) addPipe(p *pipe.Pipe) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pipes = append(s.pipes, p)
}

func (s *source) removePipe(p *pipe.Pipe) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pipes = slices.DeleteFunc(s.pipes, func(q *pipe.Pipe) bool { return q == p })
}

// canRealtime reports whether the source delivers realtime now: its watcher runs and, for a
// source that can tell (an object store), sees changes.
func (s *source) canRealtime() bool {
	if r, ok := s.driver().(agentsource.RealtimeReporter); ok && !r.Realtime() {
		return false
	}
	return s.realtime.Load()
}

// counters are the source's counters (none for a source without any).
func (s *source) counters() map[string]uint64 {
	if c, ok := s.driver().(agentsource.Counters); ok {
		return c.Counters()
	}
	return nil
}

// driver is the source's driver, whichever kind it is, for its optional interfaces.
func (s *source) driver() any {
	if s.rows != nil {
		return s.rows
	}
	return s.src
}

// close releases what the driver holds (a database pool); the pipes on it have stopped.
func (s *source) close() {
	if c, ok := s.driver().(io.Closer); ok {
		_ = c.Close()
	}
}

// senderEntry is one configured sender and its connection.
type senderEntry struct {
	cfg config.Sender
	s   closableSender
}

// closableSender is a sender driver: the contract plus the release of its connection or file.
type closableSender interface {
	agentsender.Sender
	Close() error
}

// newSender builds the sender driver of sc.
func newSender(sc config.Sender, b agentsender.Backoff, log *zap.Logger) (closableSender, error) {
	if sc.Driver == "echo" {
		return echosender.New(sc.Path)
	}
	return grpcsender.NewGRPC(sc, b, log)
}

// pipeEntry is one configured pipe: what it was built from, to tell on reload whether it
// changed, and the pipe itself.
type pipeEntry struct {
	cfg    pipe.Config
	sender string
	sig    string
	p      *pipe.Pipe
}

// Agent is the running agent.
type Agent struct {
	log     *zap.Logger
	opts    Options
	retry   time.Duration
	reg     *registry
	debug   *debughttp.Debug // nil unless debug_listen is set
	metrics *debughttp.Debug // nil unless metrics_listen is set
	// walkPanics counts the snapshot and audit walks the pipes recovered from a panic.
	walkPanics atomic.Uint64
	reloads    reloadStats

	// mu guards the configuration and the parts built from it; Reload holds it throughout,
	// so reloads apply one at a time and the metrics collector never sees half of one.
	mu      sync.Mutex
	cfg     config.Config
	sources map[string]*source // by signature
	senders map[string]*senderEntry
	pipes   map[string]*pipeEntry
}

// New builds the agent; nothing runs until Run.
func New(log *zap.Logger, cfg config.Config, opts Options) (*Agent, error) {
	if log == nil {
		log = zap.NewNop()
	}
	pl, err := resolve(cfg)
	if err != nil {
		return nil, fmt.Errorf("validate config: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Agent{log: log, opts: opts, retry: opts.WatchRetry, sources: map[string]*source{},
		senders: map[string]*senderEntry{}, pipes: map[string]*pipeEntry{}}
	if a.retry == 0 {
		a.retry = 30 * time.Second
	}
	restart := opts.PartRestart
	if restart == 0 {
		restart = time.Second
	}
	a.reg = newRegistry(log, restart, 30*time.Second, nil)
	// The collector reads the parts only at scrape time, under a.mu.
	routes := metrics.Routes(newPromRegistry(a))
	if pl.cfg.DebugListen != "" {
		d, err := debughttp.New(log, pl.cfg.DebugListen, routes)
		if err != nil {
			return nil, err
		}
		a.debug = d
	}
	if pl.cfg.MetricsListen != "" {
		m, err := debughttp.NewRoutes(log, pl.cfg.MetricsListen, routes)
		if err != nil {
			a.close()
			return nil, err
		}
		a.metrics = m
	}
	ch, err := a.prepare(pl)
	if err != nil {
		a.close()
		return nil, err
	}
	a.commit(ch, false)
	return a, nil
}

// pipeConfig is a pipe's settings from its normalised configuration (every optional one set).
func pipeConfig(id, agentID, uri string, sc config.Source, pc config.Pipe) pipe.Config {
	schema, version := config.SchemaOf(sc)
	return pipe.Config{ID: id, AgentID: agentID, SourceURI: uri, Schema: schema, SchemaVersion: version, FieldsMapping: pc.FieldsMapping,
		BatchSize: pc.BatchSize, TimeoutHint: pc.TimeoutHint, BackoffMin: pc.BackoffMin, BackoffMax: pc.BackoffMax,
		AuditInterval: pc.AuditInterval, StuckAfter: pc.StuckAfter,
		AuditRollingShare: *pc.AuditRollingShare, AuditDeepEvery: *pc.AuditDeepEvery, OverflowAuditDelay: *pc.OverflowAuditDelay,
		AuditStateSaveInterval: pc.AuditStateSaveInterval}
}

// Pipe returns a pipe by id, nil if there is none (for status and tests).
func (a *Agent) Pipe(id string) *pipe.Pipe {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.pipes[id]; e != nil {
		return e.p
	}
	return nil
}

// MetricsAddr returns the metrics endpoint's address (nil unless metrics_listen is set).
func (a *Agent) MetricsAddr() net.Addr {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.Addr()
}

// Run runs every watcher and pipe until ctx is done; it returns nil on cancel. Parts added by
// Reload meanwhile run too; each part's failure is its own (it is restarted), never Run's.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	g, gctx := errgroup.WithContext(ctx)
	for _, d := range []*debughttp.Debug{a.debug, a.metrics} {
		if d != nil {
			g.Go(func() error { return d.Run(gctx) })
		}
	}
	a.reg.begin(gctx)
	<-gctx.Done()
	a.reg.stopAll()
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
	// A panic in the watcher ends this run; the registry restarts it, degraded meanwhile.
	defer s.realtime.Store(false)
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

// close releases what New acquired: the listeners and every sender's connection.
func (a *Agent) close() {
	for _, d := range []*debughttp.Debug{a.debug, a.metrics} {
		if d != nil {
			d.Close()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.senders {
		_ = s.s.Close()
	}
	for _, s := range a.sources {
		s.close()
	}
}

// pipeLogger is a pipe's logger: it counts the walks the pipe recovered from a panic, which
// the pipe reports only by logging pipe.MsgWalkPanicked.
func (a *Agent) pipeLogger() *zap.Logger {
	return a.log.WithOptions(zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == pipe.MsgWalkPanicked {
			a.walkPanics.Add(1)
		}
		return nil
	}))
}

// signature identifies what a source reads (DESIGN.md §4.2: driver, uri, credential; neither
// driver has a credential): the driver and the cleaned absolute root or journal path, so
// "/mnt/x" and "/mnt/x/" are one tree. It doubles as the source URI sent to Fusion.
func signature(sc config.Source) (string, error) {
	if sc.Driver == "sql" {
		dsn, _, err := sc.SQL.Credentials()
		if err != nil {
			return "", err
		}
		return sqlsource.URI(dsn, sc.SQL.Table)
	}
	if sc.Driver == "s3" {
		return s3source.URI(sc.S3.Endpoint, sc.S3.Bucket, sc.S3.Prefix), nil
	}
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

// newSource builds the source of one signature; nothing runs until its watcher loop starts.
func (a *Agent) newSource(ids []string, sig string, sc config.Source) (*source, error) {
	log := a.log.With(zap.String("source", strings.Join(ids, ",")))
	s := &source{sig: sig, cfg: sc, ids: ids, uri: sig}
	var src agentsource.Snapshotter
	if a.opts.NewSource != nil {
		got, err := a.opts.NewSource(sig, sc)
		if err != nil {
			return nil, err
		}
		src = got
	}
	switch {
	case src != nil:
	case sc.Driver == "sql":
		c := sc.SQL
		dsn, password, err := c.Credentials()
		if err != nil {
			return nil, err
		}
		sv, err := sqlsource.New(log, sqlsource.Config{Dialect: c.Dialect, DSN: dsn, Password: password, Table: c.Table,
			KeyColumns: c.KeyColumns, CursorColumn: c.CursorColumn, Columns: c.Columns, SoftDeleteColumn: c.SoftDeleteColumn,
			SchemaName: c.SchemaName, SchemaVersion: c.SchemaVersion, PollInterval: c.PollInterval, BackoffMax: c.BackoffMax,
			QueryTimeout: c.QueryTimeout, PageSize: c.PageSize})
		if err != nil {
			return nil, err
		}
		s.rows = sv
		s.realtime.Store(true) // it polls its table per session (FollowRows)
		return s, nil
	case sc.Driver == "s3":
		c := sc.S3
		sv, err := s3source.New(log, s3source.Config{Endpoint: c.Endpoint, Bucket: c.Bucket, Prefix: c.Prefix, Region: c.Region,
			PathStyle: c.PathStyle, AccessKey: c.AccessKey, SecretKey: c.SecretKey, SessionToken: c.SessionToken,
			CredentialsFile: c.CredentialsFile, Profile: c.Profile, ListInterval: c.ListInterval, BackoffMax: c.BackoffMax,
			MaxRetries: c.MaxRetries, PageSize: c.PageSize, Workers: sc.ScanWorkers, Excludes: sc.Excludes})
		if err != nil {
			return nil, err
		}
		src = sv
	case sc.Driver == "journal":
		j, err := journal.New(log, sc.Path)
		if err != nil {
			return nil, err
		}
		src = j
	default:
		f, err := fs.New(log, fs.Config{Root: sc.Root, Excludes: sc.Excludes, ModifyThrottle: sc.ModifyThrottle,
			Workers: sc.ScanWorkers, HotThreshold: sc.HotThreshold, MaxWatches: sc.MaxWatches})
		if err != nil {
			return nil, err
		}
		src = f
	}
	s.src = src
	if w, ok := src.(agentsource.Watcher); ok {
		s.watcher, s.watch = w, !sc.DisableRealtime
		s.bus = bus.New(sc.BusCapacity, func(e agentsource.Event) uint64 { return e.Index })
	} else {
		s.realtime.Store(true) // a log source follows its log per session
	}
	// A queue overflow is a known loss of realtime events: every pipe on the source, whichever
	// of its ids the pipe names, audits.
	if o, ok := src.(agentsource.OverflowNotifier); ok {
		o.SetOnOverflow(func() {
			for _, p := range s.pipeList() {
				p.RequestAudit()
			}
		})
	}
	return s, nil
}

// parts returns the sources and pipes now, sorted (signature, id), for the metrics collector.
func (a *Agent) parts() ([]*source, []*pipeEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	srcs := make([]*source, 0, len(a.sources))
	for _, k := range slices.Sorted(maps.Keys(a.sources)) {
		srcs = append(srcs, a.sources[k])
	}
	pipes := make([]*pipeEntry, 0, len(a.pipes))
	for _, k := range slices.Sorted(maps.Keys(a.pipes)) {
		pipes = append(pipes, a.pipes[k])
	}
	return srcs, pipes
}
