package e2e

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"
)

type sessionInfo struct {
	ID, Agent, Role, Pipe string
	CanRealtime           bool
	Counters              map[string]uint64
}

func (c *cluster) sessions() ([]sessionInfo, error) {
	doc, err := c.ctlWith("admin-key", "sessions")
	if err != nil {
		return nil, err
	}
	list, _ := doc["sessions"].([]any)
	out := make([]sessionInfo, 0, len(list))
	for _, x := range list {
		m, _ := x.(map[string]any)
		s := sessionInfo{Counters: map[string]uint64{}}
		s.ID, _ = m["sessionId"].(string)
		s.Agent, _ = m["agentId"].(string)
		s.Role, _ = m["role"].(string)
		s.Pipe, _ = m["pipeId"].(string)
		s.CanRealtime, _ = m["canRealtime"].(bool)
		counters, _ := m["counters"].(map[string]any)
		for k, v := range counters {
			s.Counters[k] = num(v)
		}
		out = append(out, s)
	}
	return out, nil
}

// agentProgress returns the one session's last heartbeat progress and its source counters, as
// fustorctl sessions --json prints them.
func (c *cluster) agentProgress() (progress, counters map[string]any, err error) {
	doc, err := c.ctlWith("admin-key", "sessions")
	if err != nil {
		return nil, nil, err
	}
	ss, _ := doc["sessions"].([]any)
	if len(ss) != 1 {
		return nil, nil, fmt.Errorf("%d sessions", len(ss))
	}
	progress, _ = ss[0].(map[string]any)["progress"].(map[string]any)
	counters, _ = progress["counters"].(map[string]any)
	return progress, counters, nil
}

func (c *cluster) sessionOf(agent string) (sessionInfo, error) {
	list, err := c.sessions()
	if err != nil {
		return sessionInfo{}, err
	}
	for _, s := range list {
		if s.Agent == agent {
			return s, nil
		}
	}
	return sessionInfo{}, fmt.Errorf("no session of %s in %v", agent, list)
}

// TestLeaderFollowerAndFailover: the first agent leads, the second follows and never sends a
// snapshot or audit; kill -9 of the leader promotes the follower within the session timeout
// (3 s) plus the sweep, and it snapshots and audits; the old agent comes back as a follower.
func TestLeaderFollowerAndFailover(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	a := c.startAgentAs("agent-a")
	c.waitFiles(60*time.Second, "/", 1000)
	b := c.startAgentAs("agent-b")
	eventually(t, 30*time.Second, "b follows while a audits twice", func() error {
		sa, err := c.sessionOf("agent-a")
		if err != nil {
			return err
		}
		sb, err := c.sessionOf("agent-b")
		if err != nil {
			return err
		}
		if sa.Role != "ROLE_LEADER" || sb.Role != "ROLE_FOLLOWER" {
			return fmt.Errorf("roles a=%s b=%s", sa.Role, sb.Role)
		}
		if sa.Counters["audits"] < 2 {
			return fmt.Errorf("leader audits %d", sa.Counters["audits"])
		}
		return nil
	})
	sb, err := c.sessionOf("agent-b")
	must(t, err)
	for _, k := range []string{"snapshots", "audits", "rejected_follower_snapshot", "rejected_follower_audit", "rejected_follower_rows"} {
		if sb.Counters[k] != 0 {
			t.Fatalf("follower counter %s = %d: %v", k, sb.Counters[k], sb.Counters)
		}
	}

	killed := time.Now()
	a.stop(t, syscall.SIGKILL)
	took := eventually(t, 30*time.Second, "b is promoted", func() error {
		s, err := c.sessionOf("agent-b")
		if err != nil {
			return err
		}
		if s.Role != "ROLE_LEADER" {
			return errors.New(s.Role)
		}
		return nil
	})
	t.Logf("follower promoted %v after kill -9 of the leader (session timeout 3s)", time.Since(killed))
	if took > 3*time.Second+2*time.Second {
		t.Errorf("promotion took %v; want within the 3 s timeout + sweep", took)
	}
	eventually(t, 30*time.Second, "new leader snapshots and audits", func() error {
		s, err := c.sessionOf("agent-b")
		if err != nil {
			return err
		}
		if s.Counters["snapshots"] < 1 || s.Counters["audits"] < 1 {
			return fmt.Errorf("counters %v", s.Counters)
		}
		return nil
	})
	c.waitFiles(30*time.Second, "/", 1000)

	c.startAgentAs("agent-a")
	eventually(t, 30*time.Second, "restarted agent follows (no preemption)", func() error {
		sa, err := c.sessionOf("agent-a")
		if err != nil {
			return err
		}
		if sa.Role != "ROLE_FOLLOWER" {
			return errors.New(sa.Role)
		}
		return nil
	})
	_ = b
}

// TestStoppedAgentExpiresAndComesBack: SIGSTOP past the timeout expires the session; SIGCONT
// makes the agent create a new one by itself and the view is whole again.
func TestStoppedAgentExpiresAndComesBack(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	first, err := c.sessionOf("e2e-agent")
	must(t, err)
	must(t, c.agent.cmd.Process.Signal(syscall.SIGSTOP))
	c.waitNoSessions("session expires while the agent is stopped")
	must(t, c.agent.cmd.Process.Signal(syscall.SIGCONT))
	c.waitNewSession("e2e-agent", first.ID)
	c.waitFiles(60*time.Second, "/", 1000)
}

func (c *cluster) waitNoSessions(what string) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, what, func() error {
		list, err := c.sessions()
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return fmt.Errorf("%d sessions", len(list))
		}
		return nil
	})
}

// waitNewSession waits until agent has a session other than old.
func (c *cluster) waitNewSession(agent, old string) {
	c.t.Helper()
	eventually(c.t, 60*time.Second, agent+" creates a new session by itself", func() error {
		s, err := c.sessionOf(agent)
		if err != nil {
			return err
		}
		if s.ID == old {
			return errors.New("same session")
		}
		return nil
	})
}
