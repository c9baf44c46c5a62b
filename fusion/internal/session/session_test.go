package session

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var pipeA = Pipe{ID: "a", Views: []string{"v"}, Timeout: 10 * time.Second}

func TestTimeoutIsMaxOfHintAndDefault(t *testing.T) {
	m := NewManager(nil, nil, 10, Hooks{})
	tests := []struct {
		hint, want time.Duration
	}{{0, 10 * time.Second}, {time.Second, 10 * time.Second}, {time.Minute, time.Minute}}
	for _, tt := range tests {
		s, err := m.Create(pipeA, Info{AgentID: "x", TimeoutHint: tt.hint})
		if err != nil || s.Timeout != tt.want {
			t.Fatalf("hint %v: timeout %v, %v", tt.hint, s.Timeout, err)
		}
	}
}

func TestExpiryPromotesFollowerAndIdlesView(t *testing.T) {
	c := &clock{now: time.Unix(1000, 0)}
	var mu sync.Mutex
	var idle []string
	leaders := map[string]string{}
	m := NewManager(nil, c.Now, 10, Hooks{
		ViewIdle:      func(v string) { mu.Lock(); idle = append(idle, v); mu.Unlock() },
		LeaderChanged: func(v, id string) { mu.Lock(); leaders[v] = id; mu.Unlock() },
	})
	l, _ := m.Create(pipeA, Info{AgentID: "l"})
	c.Add(time.Second)
	f, _ := m.Create(pipeA, Info{AgentID: "f"})
	if !l.IsLeader() || f.IsLeader() || leaders["v"] != l.ID {
		t.Fatalf("leader %v follower %v hook %q", l.IsLeader(), f.IsLeader(), leaders["v"])
	}
	// The follower keeps heartbeating; the leader stops.
	for range 3 {
		c.Add(4 * time.Second)
		if _, err := m.Heartbeat(f.ID, true, nil); err != nil {
			t.Fatal(err)
		}
		m.Sweep()
	}
	if _, err := m.Get(l.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("leader not expired: %v", err)
	}
	<-l.Done()
	if l.EndReason() != "expired" || !f.IsLeader() || leaders["v"] != f.ID {
		t.Fatalf("reason %q follower leader %v hook %q", l.EndReason(), f.IsLeader(), leaders["v"])
	}
	select {
	case msg := <-f.Out:
		if msg.GetRoleChange().GetRole() != fustorv1.Role_ROLE_LEADER {
			t.Fatalf("notification %v", msg)
		}
	default:
		t.Fatal("promoted follower was not told on its stream")
	}
	if len(idle) != 0 {
		t.Fatalf("view idled while fed: %v", idle)
	}
	if err := m.Close(f.ID); err != nil {
		t.Fatal(err)
	}
	if len(idle) != 1 || idle[0] != "v" || leaders["v"] != "" {
		t.Fatalf("idle %v leader %q", idle, leaders["v"])
	}
}

func TestTouchKeepsSessionAlive(t *testing.T) {
	c := &clock{now: time.Unix(1000, 0)}
	m := NewManager(nil, c.Now, 10, Hooks{})
	s, _ := m.Create(pipeA, Info{AgentID: "x"})
	m.StreamOpened(s)
	for range 100 {
		c.Add(9 * time.Second)
		m.Touch(s) // a message received on the push stream
		if m.Sweep() != 0 {
			t.Fatal("a session receiving messages expired")
		}
	}
}

func TestSessionBound(t *testing.T) {
	m := NewManager(nil, nil, 2, Hooks{})
	for range 2 {
		if _, err := m.Create(pipeA, Info{AgentID: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Create(pipeA, Info{AgentID: "x"}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("err = %v", err)
	}
}

// Leadership is per election key (a view, or a forest's member): a session leads the keys of
// its pipe that are free and follows on the others, and a freed key goes to the oldest session
// of any pipe that feeds it.
func TestLeadershipPerKey(t *testing.T) {
	leaders := map[string]string{}
	var mu sync.Mutex
	m := NewManager(nil, nil, 10, Hooks{LeaderChanged: func(k, id string) { mu.Lock(); leaders[k] = id; mu.Unlock() }})
	// Pipe b feeds fs view "v" only; pipe a feeds "v" and its member of forest "all".
	b, _ := m.Create(Pipe{ID: "b", Views: []string{"v"}, Timeout: time.Minute}, Info{AgentID: "b"})
	a, _ := m.Create(Pipe{ID: "a", Views: []string{"v", "all/a"}, Timeout: time.Minute}, Info{AgentID: "a"})
	if !b.IsLeader() || !a.IsLeader() || leaders["v"] != b.ID || leaders["all/a"] != a.ID {
		t.Fatalf("leaders %v (a %s, b %s)", leaders, a.ID, b.ID)
	}
	if err := m.Close(b.ID); err != nil {
		t.Fatal(err)
	}
	if leaders["v"] != a.ID || m.Leader("v") != a.ID || m.Leader("all/a") != a.ID {
		t.Fatalf("after b left: %v", leaders)
	}
	select {
	case msg := <-a.Out:
		t.Fatalf("a already led; told %v", msg)
	default:
	}
}
