// Package session keeps Fusion's sessions and the leadership of views (DESIGN.md §5.1).
//
// What keeps a session alive: a Heartbeat call or any message received on its push stream
// (Touch). Both refresh it before any queueing, so a busy pipe cannot starve a live session.
// A sweeper (Run) expires sessions not refreshed for their negotiated timeout, and ends those
// with no push stream open for Limits.PushIdle.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/errs"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// ErrNotFound is returned for an unknown, expired or closed session.
var ErrNotFound = errs.New(errs.ErrNotFound, "session not found")

// ErrTooMany is returned when the session bound is reached.
var ErrTooMany = errs.New(errs.ErrFull, "too many sessions")

// Pipe is what the manager needs to know of a Fusion pipe.
type Pipe struct {
	ID string
	// Views are the leadership keys of what the pipe feeds: a view's name, or "view/member"
	// for its member of a forest view. A session leads all of them or none.
	Views   []string
	Timeout time.Duration
}

// Info is what the agent says about itself at creation.
type Info struct {
	AgentID, TaskID, SourceURI string
	TimeoutHint                time.Duration
	CanRealtime                bool
	// Resumes is true when the agent's source continues from the committed index it was given
	// (a replayable source and an index > 0): it sends no snapshot, its tree is the pipe's.
	Resumes bool
}

// Session is one live session. Fields set at creation are immutable.
type Session struct {
	ID      string
	Pipe    Pipe
	Info    Info
	Timeout time.Duration
	Created time.Time

	lastSeen    atomic.Int64 // unix ns, Fusion clock
	leader      atomic.Bool
	canRealtime atomic.Bool
	progress    atomic.Pointer[fustorv1.Progress]
	// phases holds the Phase bits open (Begin, End); streams counts the push streams open,
	// streamless is since when none is (unix ns; creation until the first opens).
	phases     atomic.Uint32
	streams    atomic.Int32
	streamless atomic.Int64

	// Out carries control messages (role changes, commands) to the push stream's sender.
	// Bounded: when full, new messages are dropped and counted, which is safe because every
	// heartbeat answer carries the role too.
	Out  chan *fustorv1.PushResponse
	done chan struct{}
	// reason is written once before done is closed.
	reason string

	mu       sync.Mutex
	counters map[string]uint64
}

// Done is closed when the session ends (closed or expired).
func (s *Session) Done() <-chan struct{} { return s.done }

// EndReason says why the session ended; valid after Done is closed.
func (s *Session) EndReason() string { return s.reason }

// Role returns the session's current role.
func (s *Session) Role() fustorv1.Role {
	if s.leader.Load() {
		return fustorv1.Role_ROLE_LEADER
	}
	return fustorv1.Role_ROLE_FOLLOWER
}

// IsLeader reports whether the session leads at least one of its pipe's election keys (it then
// snapshots and audits; the pipe applies those rows to the members it leads).
func (s *Session) IsLeader() bool { return s.leader.Load() }

// LastSeen returns when the session was last refreshed.
func (s *Session) LastSeen() time.Time { return time.Unix(0, s.lastSeen.Load()) }

// CanRealtime returns the last reported capability.
func (s *Session) CanRealtime() bool { return s.canRealtime.Load() }

// Count adds n to a named counter.
func (s *Session) Count(name string, n uint64) {
	s.mu.Lock()
	s.counters[name] += n
	s.mu.Unlock()
}

// Counters returns a copy of the counters.
func (s *Session) Counters() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.counters))
	for k, v := range s.counters {
		out[k] = v
	}
	return out
}

// notify queues a control message without blocking; the heartbeat answer carries the role as
// well, so a dropped notification delays the agent by at most one heartbeat.
func (s *Session) notify(m *fustorv1.PushResponse) {
	select {
	case s.Out <- m:
	default:
		s.Count("control_dropped", 1)
	}
}

// Command queues a command for the session's push stream. It returns false when the session's
// control channel is full or the session ended; the caller answers as if the command timed out.
func (s *Session) Command(c *fustorv1.Command) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.Out <- &fustorv1.PushResponse{Payload: &fustorv1.PushResponse_Command{Command: c}}:
		s.Count("commands_sent", 1)
		return true
	default:
		s.Count("control_dropped", 1)
		return false
	}
}

// Hooks let the rest of Fusion react to session events. Each may be nil. They are called
// without the manager's lock held.
type Hooks struct {
	// ViewIdle is called when the last session feeding a view ends.
	ViewIdle func(view string)
	// LeaderChanged is called when a view's leader changes (id "" = none).
	LeaderChanged func(view, sessionID string)
}

// Manager owns all sessions.
type Manager struct {
	log   *zap.Logger
	now   func() time.Time
	max   int
	hooks Hooks
	lim   atomic.Pointer[Limits]

	mu       sync.Mutex
	sessions map[string]*Session
	leaders  map[string]string // view → session id
}

// NewManager returns a manager; now nil means time.Now.
func NewManager(log *zap.Logger, now func() time.Time, maxSessions int, hooks Hooks) *Manager {
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	m := &Manager{log: log, now: now, max: maxSessions, hooks: hooks,
		sessions: map[string]*Session{}, leaders: map[string]string{}}
	m.SetLimits(Limits{})
	return m
}

// Create opens a session on pipe p. The negotiated timeout is max(hint, pipe default), the
// hint capped at Limits.MaxTimeout.
func (m *Manager) Create(p Pipe, info Info) (*Session, error) {
	timeout := max(min(info.TimeoutHint, m.limits().MaxTimeout), p.Timeout)
	now := m.now()
	s := &Session{
		ID: newID(), Pipe: p, Info: info, Timeout: timeout, Created: now,
		Out: make(chan *fustorv1.PushResponse, 16), done: make(chan struct{}),
		counters: map[string]uint64{},
	}
	s.lastSeen.Store(now.UnixNano())
	s.streamless.Store(now.UnixNano())
	s.canRealtime.Store(info.CanRealtime)
	m.mu.Lock()
	if len(m.sessions) >= m.max {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: %d live sessions", ErrTooMany, m.max)
	}
	m.sessions[s.ID] = s
	changed := m.claimLocked(s)
	m.mu.Unlock()
	m.log.Info("session created", zap.String("session", s.ID), zap.String("pipe", p.ID),
		zap.String("agent", info.AgentID), zap.Stringer("role", s.Role()), zap.Duration("timeout", timeout))
	m.fireLeaders(changed)
	return s, nil
}

// claimLocked makes s leader of every key of its pipe that has no leader, and returns the
// keys it took. The election key is the view, or view + member for a forest (DESIGN.md §5.1,
// §6): sessions of every pipe feeding a view compete for it, and a session of a pipe feeding
// a forest member and an fs view fed by another pipe too may lead the one and follow in the
// other. The pipe applies snapshot and audit rows only to the members the session leads.
func (m *Manager) claimLocked(s *Session) []string {
	var took []string
	for _, k := range s.Pipe.Views {
		if _, taken := m.leaders[k]; !taken {
			m.leaders[k] = s.ID
			took = append(took, k)
		}
	}
	if len(took) > 0 {
		s.leader.Store(true)
	}
	return took
}

// Get returns a live session.
func (m *Manager) Get(id string) (*Session, error) {
	m.mu.Lock()
	s, ok := m.sessions[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q is unknown, expired or closed; create a new session", ErrNotFound, id)
	}
	return s, nil
}

// Touch refreshes a session's liveness.
func (m *Manager) Touch(s *Session) { s.lastSeen.Store(m.now().UnixNano()) }

// Heartbeat refreshes a session and records its capability and progress (nil keeps the last).
func (m *Manager) Heartbeat(id string, canRealtime bool, progress *fustorv1.Progress) (*Session, error) {
	s, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	m.Touch(s)
	s.canRealtime.Store(canRealtime)
	if progress != nil {
		s.progress.Store(progress)
	}
	return s, nil
}

// Progress returns the agent's status from its last heartbeat (nil before the first).
func (s *Session) Progress() *fustorv1.Progress { return s.progress.Load() }

// Close ends a session explicitly.
func (m *Manager) Close(id string) error {
	return m.end(id, "closed")
}

func (m *Manager) end(id, reason string) error {
	m.mu.Lock()
	s, ok := m.sessions[id]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	delete(m.sessions, id)
	var changed, idle []string
	if s.leader.Load() {
		for _, k := range s.Pipe.Views {
			if m.leaders[k] == id {
				delete(m.leaders, k)
				changed = append(changed, k)
			}
		}
		s.leader.Store(false)
		// Promote at once the oldest surviving sessions that feed the freed keys (DESIGN.md
		// §5.1); a follower that becomes a leader is told on its stream.
		for _, c := range m.byAgeLocked() {
			was := c.leader.Load()
			if took := m.claimLocked(c); len(took) > 0 && !was {
				c.notify(&fustorv1.PushResponse{Payload: &fustorv1.PushResponse_RoleChange{
					RoleChange: &fustorv1.RoleChange{Role: fustorv1.Role_ROLE_LEADER}}})
			}
		}
	}
	for _, v := range s.Pipe.Views {
		if !m.viewFedLocked(v) {
			idle = append(idle, v)
		}
	}
	s.reason = reason
	close(s.done)
	m.mu.Unlock()
	m.log.Info("session ended", zap.String("session", id), zap.String("reason", reason), zap.String("pipe", s.Pipe.ID))
	m.fireLeaders(changed)
	if m.hooks.ViewIdle != nil {
		for _, v := range idle {
			m.hooks.ViewIdle(v)
		}
	}
	return nil
}

func (m *Manager) fireLeaders(views []string) {
	if m.hooks.LeaderChanged == nil {
		return
	}
	for _, v := range views {
		m.mu.Lock()
		id := m.leaders[v]
		m.mu.Unlock()
		m.hooks.LeaderChanged(v, id)
	}
}

func (m *Manager) viewFedLocked(view string) bool {
	for _, s := range m.sessions {
		for _, v := range s.Pipe.Views {
			if v == view {
				return true
			}
		}
	}
	return false
}

func (m *Manager) byAgeLocked() []*Session {
	out := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Leader returns the id of the view's leader session ("" = none).
func (m *Manager) Leader(view string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaders[view]
}

// List returns the live sessions, oldest first.
func (m *Manager) List() []*Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byAgeLocked()
}

// Sweep expires every session not refreshed within its timeout, ends every session with no
// push stream open for Limits.PushIdle, and returns how many ended.
func (m *Manager) Sweep() int {
	now, idle := m.now().UnixNano(), m.limits().PushIdle
	var expired, unpushed []string
	m.mu.Lock()
	for id, s := range m.sessions {
		switch {
		case now-s.lastSeen.Load() > int64(s.Timeout):
			expired = append(expired, id)
		case s.pushIdle(now, idle):
			unpushed = append(unpushed, id)
		}
	}
	m.mu.Unlock()
	for _, id := range expired {
		_ = m.end(id, "expired")
	}
	for _, id := range unpushed {
		_ = m.end(id, "no push stream for "+idle.String()+" (server.push_idle_timeout)")
	}
	return len(expired) + len(unpushed)
}

// Run sweeps every interval until ctx is done.
func (m *Manager) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Sweep()
		}
	}
}

// CloseAll ends every session (shutdown).
func (m *Manager) CloseAll(reason string) {
	for _, s := range m.List() {
		_ = m.end(s.ID, reason)
	}
}

// ClosePipe ends every session of pipe id (a reload stopped or changed the pipe); their agents
// reconnect to what the pipe is now.
func (m *Manager) ClosePipe(id, reason string) int {
	n := 0
	for _, s := range m.List() {
		if s.Pipe.ID == id && m.end(s.ID, reason) == nil {
			n++
		}
	}
	return n
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
