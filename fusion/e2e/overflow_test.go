package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestQueueOverflowConvergesThroughAudit pauses the agent (SIGSTOP: its inotify reader stops)
// while far more events than the kernel queues (fs.inotify.max_queued_events, 16384 by default)
// are produced. On SIGCONT the watcher reads IN_Q_OVERFLOW, reports it, and the triggered audit
// brings the view to the tree's state. Periodic audits are an hour apart and the session
// outlives the pause, so only the overflow's audit can deliver the lost events.
func TestQueueOverflowConvergesThroughAudit(t *testing.T) {
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		_, _ = fmt.Sscan(string(b), &limit)
	}
	if limit > 100_000 {
		t.Skipf("max_queued_events is %d: too many files to overflow it here", limit)
	}
	root := makeTree(t)
	c := newCluster(t, root)
	c.auditEvery, c.sessionTimeout = "1h", "20s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	first, err := c.sessionOf("e2e-agent")
	must(t, err)

	// Each new file queues IN_CREATE, IN_MODIFY and IN_CLOSE_WRITE.
	files := limit/3 + 2000
	burst := filepath.Join(root, "burst")
	must(t, os.Mkdir(burst, 0o755))
	c.waitFiles(10*time.Second, "/", 1000) // the directory's own event is in before the pause
	must(t, c.agent.cmd.Process.Signal(syscall.SIGSTOP))
	for i := range files {
		if err := os.WriteFile(filepath.Join(burst, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644); err != nil {
			_ = c.agent.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatal(err)
		}
	}
	must(t, c.agent.cmd.Process.Signal(syscall.SIGCONT))

	c.waitFiles(60*time.Second, "/", uint64(1000+files))
	c.waitOverflowsReported(30*time.Second, first.ID, 1)
	if err := c.agentLogContains("realtime events were lost; deep audit now"); err != nil {
		t.Fatal(err)
	}
}

// waitOverflowsReported waits until the agent's status (sent with its heartbeats) counts at
// least n queue overflows, and fails at once if the session was replaced meanwhile: then a
// snapshot, not the overflow's audit, would have repaired the view.
func (c *cluster) waitOverflowsReported(within time.Duration, session string, n uint64) {
	c.t.Helper()
	eventually(c.t, within, fmt.Sprintf("the agent reports %d overflows", n), func() error {
		s, err := c.sessionOf("e2e-agent")
		if err != nil {
			return err
		}
		if s.ID != session {
			c.t.Fatalf("the session was replaced (%s → %s): a snapshot, not an audit, repaired the view", session, s.ID)
		}
		_, cs, err := c.agentProgress()
		if err != nil {
			return err
		}
		if num(cs["overflows"]) < n {
			return fmt.Errorf("counters %v", cs)
		}
		return nil
	})
}
