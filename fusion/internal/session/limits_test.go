package session

import (
	"strings"
	"testing"
	"time"
)

// TestPushIdleEndsSessionsThatNeverPush (issue 22): a session with no push stream open for
// Limits.PushIdle ends, heartbeats or not; one with a stream open lives on its heartbeats,
// and the clock starts again when its last stream closes.
func TestPushIdleEndsSessionsThatNeverPush(t *testing.T) {
	c := &clock{now: time.Unix(1000, 0)}
	m := NewManager(nil, c.Now, 10, Hooks{})
	m.SetLimits(Limits{PushIdle: 30 * time.Second})
	never, _ := m.Create(pipeA, Info{AgentID: "never"})
	pushing, _ := m.Create(pipeA, Info{AgentID: "pushing"})
	m.StreamOpened(pushing)
	for range 10 { // 50 s, both heartbeated
		c.Add(5 * time.Second)
		for _, s := range []*Session{never, pushing} {
			_, _ = m.Heartbeat(s.ID, true, nil)
		}
		m.Sweep()
	}
	select {
	case <-never.Done():
	default:
		t.Fatal("a heartbeated session that never opened a push stream lives on")
	}
	if !strings.Contains(never.EndReason(), "server.push_idle_timeout") {
		t.Fatalf("reason %q", never.EndReason())
	}
	if _, err := m.Get(pushing.ID); err != nil {
		t.Fatalf("the session with a stream open: %v", err)
	}
	m.StreamClosed(pushing)
	c.Add(20 * time.Second)
	_, _ = m.Heartbeat(pushing.ID, true, nil)
	if m.Sweep() != 0 {
		t.Fatal("ended 20 s after its stream closed; the bound is 30 s")
	}
	c.Add(11 * time.Second)
	_, _ = m.Heartbeat(pushing.ID, true, nil)
	if m.Sweep() != 1 {
		t.Fatal("31 s without a stream and not ended")
	}
}

// TestTimeoutHintIsCapped (issue 22): an agent's timeout_hint counts up to Limits.MaxTimeout;
// the pipe's own session_timeout always does.
func TestTimeoutHintIsCapped(t *testing.T) {
	m := NewManager(nil, nil, 10, Hooks{})
	m.SetLimits(Limits{MaxTimeout: time.Minute})
	tests := []struct {
		pipe, hint, want time.Duration
	}{
		{10 * time.Second, 30 * time.Second, 30 * time.Second},
		{10 * time.Second, 1000 * time.Hour, time.Minute},
		{time.Hour, 1000 * time.Hour, time.Hour},
	}
	for _, tt := range tests {
		p := pipeA
		p.Timeout = tt.pipe
		s, err := m.Create(p, Info{AgentID: "x", TimeoutHint: tt.hint})
		if err != nil || s.Timeout != tt.want {
			t.Fatalf("pipe %v hint %v: timeout %v, %v; want %v", tt.pipe, tt.hint, s.Timeout, err, tt.want)
		}
	}
}

func TestPhases(t *testing.T) {
	s := &Session{}
	if s.End(PhaseSnapshot) {
		t.Fatal("a snapshot never begun ended")
	}
	s.Begin(PhaseSnapshot)
	s.Begin(PhaseAudit)
	if !s.End(PhaseSnapshot) || s.End(PhaseSnapshot) || !s.End(PhaseAudit) {
		t.Fatal("phases do not open and close one by one")
	}
}
