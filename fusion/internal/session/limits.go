package session

import (
	"time"
)

// Limits bound what a client holding a valid ingest key keeps alive without pushing (issue
// 22). PushIdle: a session that has no push stream open for that long ends ("no push
// stream"), heartbeats or not; an agent opens its stream right after CreateSession and
// closes its session when the stream ends, so only a session that never pushes meets it.
// MaxTimeout caps the timeout an agent asks for (CreateSession's timeout_hint): a session
// gets max(min(hint, MaxTimeout), the pipe's session_timeout), so one that is neither
// heartbeated nor pushed to ends at the latest then, the push stream it holds with it.
type Limits struct {
	PushIdle   time.Duration
	MaxTimeout time.Duration
}

// Defaults of Limits' zero fields.
const (
	DefaultPushIdle   = time.Minute
	DefaultMaxTimeout = 10 * time.Minute
)

func (l Limits) orDefaults() Limits {
	if l.PushIdle <= 0 {
		l.PushIdle = DefaultPushIdle
	}
	if l.MaxTimeout <= 0 {
		l.MaxTimeout = DefaultMaxTimeout
	}
	return l
}

// SetLimits sets the bounds (zero fields: the defaults). Safe while sessions run (a reload):
// the next sweep judges every session by them; a timeout already negotiated stays.
func (m *Manager) SetLimits(l Limits) {
	l = l.orDefaults()
	m.lim.Store(&l)
}

func (m *Manager) limits() Limits { return *m.lim.Load() }

// Phases a session opens and ends on its push streams (Begin, End).
const (
	PhaseSnapshot uint32 = 1 << iota
	PhaseAudit
)

// Begin records that the session opened a phase (a SnapshotStart or AuditStart it sent).
func (s *Session) Begin(phase uint32) { s.phases.Or(phase) }

// End closes a phase and reports whether it was open: a SnapshotEnd or AuditEnd without its
// start is refused.
func (s *Session) End(phase uint32) bool { return s.phases.And(^phase)&phase != 0 }

// StreamOpened counts a push stream of s open; StreamClosed counts it closed. A session with
// none open for Limits.PushIdle ends at the next sweep.
func (m *Manager) StreamOpened(s *Session) { s.streams.Add(1) }

// StreamClosed: see StreamOpened.
func (m *Manager) StreamClosed(s *Session) {
	if s.streams.Add(-1) == 0 {
		s.streamless.Store(m.now().UnixNano())
	}
}

// pushIdle reports whether s has had no push stream open for longer than d at now (unix ns).
func (s *Session) pushIdle(now int64, d time.Duration) bool {
	return s.streams.Load() == 0 && now-s.streamless.Load() > int64(d)
}
