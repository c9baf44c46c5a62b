// Package pipe runs an AgentPipe (DESIGN.md §4.1): the control loop that keeps a session with
// Fusion, heartbeats, streams realtime events from the bus, and runs the snapshot when leader.
//
// It is written against contracts only: the source's (agent/internal/source: events, walks,
// capabilities found by interface), the bus's, and the transport's (agent/internal/sender). It
// names no driver — no source/fs, source/journal or sender/grpc; agent/internal/app wires them
// in, and agent/internal/app/layers_test.go keeps it so.
package pipe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/mapping"
	"github.com/fustor/fustor/agent/internal/sender"
	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// errObsoleted means Fusion no longer knows the session: create a new one at once.
var errObsoleted = errors.New("session obsoleted")

// Config is one pipe's settings.
type Config struct {
	ID, AgentID, SourceURI string
	// Schema and SchemaVersion are the data contract the pipe declares at CreateSession, which
	// Fusion checks against its pipe and views (routing by schema; "" = "fs", 0 = 1).
	Schema                 string
	SchemaVersion          uint32
	BatchSize              int
	TimeoutHint            time.Duration
	BackoffMin, BackoffMax time.Duration
	// AuditInterval is the leader's audit period (0 = no audits).
	AuditInterval time.Duration
	// StuckAfter restarts a snapshot or audit that handed no rows on for this long (0 = never).
	StuckAfter time.Duration
	// AuditRollingShare is the part of the silent directories each audit lists in full anyway,
	// so files rewritten in place are found within ceil(1/share) audits (source.AuditOptions.Share;
	// 0 = pure true silence). Taken as is: the agent's config holds the default.
	AuditRollingShare float64
	// AuditDeepEvery makes every Nth audit of the pipe deep (0 = never).
	AuditDeepEvery int
	// OverflowAuditDelay is the least time from the end of one recovery audit (RequestAudit)
	// to the start of the next; requests inside it coalesce into one audit run when it is up
	// (0 = none: each runs as soon as the audit before it ends). Taken as is: the agent's
	// config holds the default.
	OverflowAuditDelay time.Duration
	// Now is the clock (nil = time.Now).
	Now func() time.Time
	// After is the timer the recovery audit's delay waits on (nil = time.After).
	After func(time.Duration) <-chan time.Time
	// StateDir is the agent's state directory: the pipe keeps its audit cache there across
	// restarts (agent/internal/state), so the first audit after a restart skips the
	// directories that did not change. "" = keep nothing.
	StateDir string
	// AuditStateSaveInterval: 0 saves the audit cache after every completed audit; more saves
	// it at most that often (and at a graceful stop); negative keeps none (nothing saved or read).
	AuditStateSaveInterval time.Duration
	// CriticalAfter is the number of failures in a row after which each failure is logged at
	// error level as critical (default 5).
	CriticalAfter int
	// FieldsMapping projects the rows of a generic-schema source (NewRows) before they are
	// sent; empty = pass-through. An fs pipe has none.
	FieldsMapping mapping.Config
}

// Pipe is one AgentPipe.
type Pipe struct {
	log *zap.Logger
	cfg Config
	src source.Snapshotter
	// rows is the source of a generic-schema pipe (NewRows; src is nil then), mapping its
	// fields_mapping, mappingErr why that did not compile.
	rows       source.RowSnapshotter
	mapping    *mapping.Mapping
	mappingErr error
	// castWarnedAt throttles the warnings of failed casts (unix ns of the last one);
	// boundWarnedAt those of rows over Fusion's bounds (rowBounds).
	castWarnedAt, boundWarnedAt atomic.Int64
	// rowsBadKey and rowsOversize count the rows over Fusion's bounds: left out (their key
	// cannot be sent) and sent as deletes of their key (too large).
	rowsBadKey, rowsOversize atomic.Uint64
	caps                     source.Capabilities
	bus                      *bus.Bus[source.Event]
	snd                      sender.Sender
	canRealtime              func() bool

	sessions, eventsSent, snapshots, failures, audits atomic.Uint64
	recoveryAudits                                    atomic.Uint64
	stuckRestarts                                     atomic.Uint64
	auditCycle                                        atomic.Uint64 // audits started, numbering them
	auditReq                                          chan struct{}
	walkProgress                                      atomic.Int64
	walks                                             walkMeter
	committed                                         atomic.Uint64
	snapshotRunning, auditRunning, connected          atomic.Bool
	role                                              atomic.Int32
	stateSaves, stateSaveFailures                     atomic.Uint64
	stateRefused, stateRestores                       atomic.Uint64
	st                                                auditState
	mu                                                sync.Mutex
	sessionID                                         string
	lastAudit                                         source.WalkStats

	// anchor follows the bus at the last index Fusion acknowledged as committed (anchorAt),
	// for a source whose realtime comes through the bus: after a restart of Fusion that
	// restored its views, the events since are still in the bus and are sent again instead of
	// a snapshot. covered is true once the anchor has followed the bus since a snapshot Fusion
	// applied (from its own session's start, or through resumed sessions since).
	anchorMu sync.Mutex
	anchor   *bus.Subscriber[source.Event]
	anchorAt uint64
	covered  bool
}

// resumeAfter returns the index the pipe can resume after without a snapshot (ok false: it
// cannot: no anchor, or none covered by an applied snapshot).
func (p *Pipe) resumeAfter() (idx uint64, ok bool) {
	p.anchorMu.Lock()
	defer p.anchorMu.Unlock()
	return p.anchorAt, p.anchor != nil && p.covered && p.anchorAt > 0
}

// advanceAnchor moves the anchor past what Fusion committed; a lost position loses coverage.
func (p *Pipe) advanceAnchor(committed uint64) {
	p.anchorMu.Lock()
	defer p.anchorMu.Unlock()
	if p.anchor == nil || committed <= p.anchorAt {
		return
	}
	if p.anchor.Skip(committed) {
		p.covered = false
	}
	p.anchorAt = committed
}

// anchorCovered records that Fusion applied the snapshot of a session the anchor followed.
func (p *Pipe) anchorCovered() {
	p.anchorMu.Lock()
	defer p.anchorMu.Unlock()
	if p.anchor != nil {
		p.covered = true
	}
}

// resumeBus returns a subscriber at the anchor, past committed, if the pipe can resume there:
// the anchor is covered and still holds every event after committed.
func (p *Pipe) resumeBus(committed uint64) (*bus.Subscriber[source.Event], bool) {
	p.anchorMu.Lock()
	defer p.anchorMu.Unlock()
	if p.anchor == nil || !p.covered || committed < p.anchorAt {
		return nil, false
	}
	if p.anchor.Skip(committed) {
		p.covered = false
		return nil, false
	}
	p.anchorAt = committed
	return p.anchor.Clone(), true
}

// newAnchor starts following the bus from now, uncovered until this session's snapshot is
// applied (the caller subscribes its realtime at the same time, before the snapshot).
func (p *Pipe) newAnchor() {
	p.anchorMu.Lock()
	defer p.anchorMu.Unlock()
	if p.anchor != nil {
		p.anchor.Close()
	}
	p.anchor, p.anchorAt, p.covered = p.bus.Subscribe(), 0, false
}

// closeAnchor stops following the bus (the pipe stops).
func (p *Pipe) closeAnchor() {
	p.anchorMu.Lock()
	defer p.anchorMu.Unlock()
	if p.anchor != nil {
		p.anchor.Close()
		p.anchor = nil
	}
}

// New returns a pipe on src, which every source is (it can walk); what else it can do is
// found from the interfaces it implements (source.Describe): realtime from its own log
// (source.Resumer) or from b, fed by the agent's watcher; audits (source.Auditor, else the
// leader runs none); the sentinel (source.Sentineler, else it answers with no items); counters
// (source.Counters). canRealtime reports whether the source's watcher runs (nil = always).
func New(log *zap.Logger, cfg Config, src source.Snapshotter, b *bus.Bus[source.Event], snd sender.Sender, canRealtime func() bool) *Pipe {
	if log == nil {
		log = zap.NewNop()
	}
	if canRealtime == nil {
		canRealtime = func() bool { return true }
	}
	if cfg.CriticalAfter == 0 {
		cfg.CriticalAfter = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var caps source.Capabilities
	if src != nil {
		caps = source.Describe(src)
	}
	return &Pipe{log: log.With(zap.String("pipe", cfg.ID)), cfg: cfg, src: src, caps: caps, bus: b, snd: snd,
		canRealtime: canRealtime, auditReq: make(chan struct{}, 1)}
}

func (p *Pipe) now() time.Time { return p.cfg.Now() }

// ID returns the pipe's configured id.
func (p *Pipe) ID() string { return p.cfg.ID }

// Status is a pipe's state for operators and tests.
type Status struct {
	SessionID  string
	Role       fustorv1.Role
	Sessions   uint64
	EventsSent uint64
	Snapshots  uint64
	Audits     uint64
	// RecoveryAudits counts the deep audits completed for a known loss of realtime events
	// (RequestAudit); they count in Audits too.
	RecoveryAudits  uint64
	StuckRestarts   uint64
	Committed       uint64
	SnapshotRunning bool
	AuditRunning    bool
	// Failures counts sessions that could not be created or ended in an error.
	Failures uint64
	// Connected is true from a session's creation until it ends.
	Connected bool
	// LastAudit is the walk of the last completed audit: how many directories it listed
	// (Dirs - Silent) and found silent.
	LastAudit source.WalkStats
	// MappedRows, RowsDropped and CastFailures are the fields_mapping's counters (generic-schema
	// pipes): rows it saw, rows drop_row left out, values that failed their cast.
	MappedRows, RowsDropped, CastFailures uint64
	// RowsBadKey and RowsOversize count rows over Fusion's bounds (generic-schema pipes): left
	// out for a key that cannot be sent, sent as a delete of their key for being too large.
	RowsBadKey, RowsOversize uint64
	// AuditStateSaves and AuditStateSaveFailures count the saves of the audit cache to the
	// state directory; AuditStateRefused counts saved files refused (corrupt, truncated, of
	// another version: moved aside); AuditStateRestores counts leaderships that started
	// from a saved cache.
	AuditStateSaves, AuditStateSaveFailures, AuditStateRefused, AuditStateRestores uint64
}

// Status returns the pipe's state.
func (p *Pipe) Status() Status {
	p.mu.Lock()
	id, last := p.sessionID, p.lastAudit
	p.mu.Unlock()
	ms := p.mapping.Stats()
	return Status{MappedRows: ms.Rows, RowsDropped: ms.RowsDropped, CastFailures: ms.CastFailures,
		RowsBadKey: p.rowsBadKey.Load(), RowsOversize: p.rowsOversize.Load(), LastAudit: last, AuditStateSaves: p.stateSaves.Load(), AuditStateSaveFailures: p.stateSaveFailures.Load(),
		AuditStateRefused: p.stateRefused.Load(), AuditStateRestores: p.stateRestores.Load(), SessionID: id, Role: fustorv1.Role(p.role.Load()), Sessions: p.sessions.Load(),
		EventsSent: p.eventsSent.Load(), Snapshots: p.snapshots.Load(), Audits: p.audits.Load(), RecoveryAudits: p.recoveryAudits.Load(), StuckRestarts: p.stuckRestarts.Load(), Committed: p.committed.Load(),
		SnapshotRunning: p.snapshotRunning.Load(), AuditRunning: p.auditRunning.Load(), Failures: p.failures.Load(), Connected: p.connected.Load()}
}

// Run keeps a session alive until ctx is done; it never gives up (DESIGN.md §4.1 step 7).
func (p *Pipe) Run(ctx context.Context) error {
	if p.mappingErr != nil {
		return fmt.Errorf("pipe %s: %w", p.cfg.ID, p.mappingErr)
	}
	p.loadState()
	// A graceful stop saves what a save interval still holds back; the sessions, and with them
	// every walk that could touch it, have ended by then.
	defer p.flushState()
	defer p.closeAnchor()
	backoff := p.cfg.BackoffMin
	inARow := 0
	for {
		established, err := p.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if established {
			backoff, inARow = p.cfg.BackoffMin, 0
		}
		if errors.Is(err, errObsoleted) {
			p.log.Info("session obsoleted; creating a new one", zap.Error(err))
			continue
		}
		inARow++
		p.failures.Add(1)
		if inARow >= p.cfg.CriticalAfter {
			p.log.Error("critical: pipe keeps failing", zap.Int("in_a_row", inARow), zap.Duration("retry_in", backoff), zap.Error(err))
		} else {
			p.log.Warn("session failed; retrying", zap.Int("in_a_row", inARow), zap.Duration("retry_in", backoff), zap.Error(err))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, p.cfg.BackoffMax)
		if r, ok := p.snd.(sender.BackoffResetter); ok {
			r.ResetConnectBackoff()
		}
	}
}

// outItem is work for the stream's sender goroutine, which alone owns the encoder and Send.
type outItem struct {
	origin fustorv1.MessageSource
	// events are an fs source's rows, rows a generic source's, mapped (the other is nil).
	events    []source.Event
	rows      []*fustorv1.GenericRow
	commandID string // set on on-demand rows answering a scan command
	control   *fustorv1.PushRequest
}

// session is the state of one session's run.
type session struct {
	p       *Pipe
	id      string
	timeout time.Duration
	out     chan outItem
	roleCh  chan struct{}
	cmds    chan *fustorv1.Command
	resumed bool // realtime continues from the committed index: no snapshot needed
	resnap  atomic.Bool
	snapEnd atomic.Uint64 // seq of the last SnapshotEnd sent (0: none)
	// positioned, when set, is closed once realtime knows where it starts (a generic source's
	// last index, read from the source): the snapshot waits for it. nil: known from the start.
	positioned chan struct{}
}

func (p *Pipe) runSession(ctx context.Context) (established bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resumeAfter, canResumeBus := p.resumeAfter()
	if p.caps.Resume {
		canResumeBus, resumeAfter = false, 0
	}
	resp, err := p.snd.CreateSession(cctx, &fustorv1.CreateSessionRequest{
		AgentId: p.cfg.AgentID, TaskId: p.cfg.ID, TimeoutHint: durationpb.New(p.cfg.TimeoutHint),
		SchemaName: cmp.Or(p.cfg.Schema, "fs"), SchemaVersion: cmp.Or(p.cfg.SchemaVersion, 1), SourceUri: p.cfg.SourceURI,
		Capabilities: &fustorv1.Capabilities{CanRealtime: p.canRealtime(), CanResume: p.caps.Resume || canResumeBus},
		ResumeAfter:  resumeAfter,
	})
	cancel()
	if err != nil {
		return false, fmt.Errorf("create session: %w", err)
	}
	p.sessions.Add(1)
	p.connected.Store(true)
	defer p.connected.Store(false)
	p.committed.Store(resp.GetCommittedIndex())
	p.role.Store(int32(resp.GetRole()))
	p.mu.Lock()
	p.sessionID = resp.GetSessionId()
	p.mu.Unlock()
	p.log.Info("session created", zap.String("session", resp.GetSessionId()), zap.Stringer("role", resp.GetRole()),
		zap.Duration("timeout", resp.GetTimeout().AsDuration()), zap.Uint64("committed_index", resp.GetCommittedIndex()))

	s := &session{p: p, id: resp.GetSessionId(), timeout: resp.GetTimeout().AsDuration(),
		out: make(chan outItem, 16), roleCh: make(chan struct{}, 1), cmds: make(chan *fustorv1.Command, 16)}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := p.snd.Push(sctx)
	if err != nil {
		p.closeSession(s.id)
		return true, fmt.Errorf("open push stream: %w", err)
	}
	// Where realtime starts decides whether a snapshot is needed (DESIGN.md §4.1 step 4): a
	// replayable source continues from the committed index and needs none; otherwise the bus
	// is subscribed before the snapshot starts, so every later change arrives as realtime.
	realtime, resumed, err := s.realtimeFrom(resp.GetCommittedIndex(), canResumeBus && resp.GetResumable())
	if err != nil {
		p.closeSession(s.id)
		return true, err
	}
	s.resumed = resumed
	g, gctx := errgroup.WithContext(sctx)
	g.Go(func() error { return guard("heartbeat", func() error { return s.heartbeat(gctx) }) })
	g.Go(func() error { return guard("push sender", func() error { return s.send(gctx, stream) }) })
	g.Go(func() error { return guard("push receiver", func() error { return s.recv(stream) }) })
	g.Go(func() error { return guard("realtime", func() error { return realtime(gctx) }) })
	g.Go(func() error { return guard("leader", func() error { return s.lead(gctx) }) })
	g.Go(func() error { return guard("commands", func() error { return s.commands(gctx) }) })
	s.roleChanged()
	err = g.Wait()
	if !errors.Is(err, errObsoleted) {
		p.closeSession(s.id)
	}
	p.role.Store(int32(fustorv1.Role_ROLE_UNSPECIFIED))
	return true, err
}

func (p *Pipe) resumer() source.Resumer {
	r, _ := p.src.(source.Resumer)
	return r
}

// realtimeFrom returns the session's realtime loop and whether it resumes from committed.
func (s *session) realtimeFrom(committed uint64, resumable bool) (func(context.Context) error, bool, error) {
	if s.p.rows != nil {
		return s.followRows(committed)
	}
	r := s.p.resumer()
	if r == nil {
		// Realtime through the bus. Fusion restarted from its checkpoint and holds everything
		// up to committed: continue from the anchor, resending what came after (no snapshot).
		// Otherwise follow the bus from now, and the leader snapshots.
		sub, resumed := (*bus.Subscriber[source.Event])(nil), false
		if resumable {
			sub, resumed = s.p.resumeBus(committed)
		}
		if resumed {
			s.p.log.Info("realtime resumes from the bus after fusion's restart", zap.Uint64("from_index", committed), zap.Bool("resumed", true))
		} else {
			s.p.newAnchor()
			sub = s.p.bus.Subscribe()
		}
		return func(ctx context.Context) error {
			defer sub.Close()
			return s.realtime(ctx, sub)
		}, resumed, nil
	}
	from, resumed := committed, committed > 0
	if !resumed {
		// Nothing committed: the snapshot covers the log up to now; follow what comes after.
		last, err := r.LastIndex()
		if err != nil {
			return nil, false, fmt.Errorf("find the end of the log: %w", err)
		}
		from = last
	}
	s.p.log.Info("realtime from the source's log", zap.Uint64("from_index", from), zap.Bool("resumed", resumed))
	follow := func(ctx context.Context) error {
		err := r.Follow(ctx, from, s.p.cfg.BatchSize, func(evs []source.Event) error {
			return s.emit(ctx, outItem{origin: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, events: evs})
		})
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return follow, resumed, nil
}

func (p *Pipe) closeSession(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.snd.CloseSession(ctx, id)
}

// guard turns a panic into an error so one broken loop ends the session, never the agent.
func guard(name string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v\n%s", name, r, debug.Stack())
		}
	}()
	return f()
}

func (s *session) roleChanged() {
	select {
	case s.roleCh <- struct{}{}:
	default:
	}
}

func (s *session) setRole(r fustorv1.Role) {
	if old := fustorv1.Role(s.p.role.Swap(int32(r))); old != r {
		s.p.log.Info("role changed", zap.Stringer("from", old), zap.Stringer("to", r))
		s.roleChanged()
	}
}

// heartbeat never stops for a data-plane failure; only a session Fusion no longer knows ends it.
func (s *session) heartbeat(ctx context.Context) error {
	t := time.NewTicker(s.timeout / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, s.timeout/2)
		resp, err := s.p.snd.Heartbeat(hctx, &fustorv1.HeartbeatRequest{SessionId: s.id,
			CanRealtime: s.p.canRealtime(), Progress: s.p.progress()})
		cancel()
		switch {
		case err == nil:
			s.setRole(resp.GetRole())
		case sender.IsSessionGone(err):
			return fmt.Errorf("%w: heartbeat: %v", errObsoleted, err)
		case ctx.Err() != nil:
			return nil
		default:
			s.p.log.Warn("heartbeat failed", zap.Error(err))
		}
	}
}

// Progress is what the pipe's next heartbeat reports (status tools, tests).
func (p *Pipe) Progress() *fustorv1.Progress { return p.progress() }

func (p *Pipe) progress() *fustorv1.Progress {
	var c map[string]uint64
	if cs := p.sourceCounters(); cs != nil {
		c = cs.Counters()
	}
	if c == nil {
		c = map[string]uint64{}
	}
	p.mappingCounters(c)
	c["recovery_audits"] = p.recoveryAudits.Load()
	var skipped uint64
	for k, v := range c {
		if len(k) > 8 && k[:8] == "skipped_" {
			skipped += v
		}
	}
	if p.bus != nil {
		b := p.bus.Stats()
		c["bus_published"], c["bus_rejected"], c["bus_lost"] = b.Published, b.Rejected, b.Lost
		c["bus_splits"], c["bus_merges"], c["bus_lanes"] = b.Splits, b.Merges, uint64(b.Lanes)
	}
	snap, aud := p.snapshotRunning.Load(), p.auditRunning.Load()
	var walk *fustorv1.WalkProgress
	if snap || aud {
		// The flags are cleared on every way out of a walk; a start marker whose send failed
		// leaves the meter's run behind, and the flags keep it from being reported.
		walk = p.walks.progress(p.now())
	}
	return &fustorv1.Progress{SnapshotRunning: snap, AuditRunning: aud, EventsSent: p.eventsSent.Load(),
		ErrorsSkipped: skipped, Watches: c["watches"], Counters: c, Walk: walk}
}
