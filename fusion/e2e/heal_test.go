package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The view must heal: each test below drives one situation in which the view used to stay
// different from the storage, and ends by comparing the whole view with the directory
// (viewEqualsTree) and by asking Fusion's own verify for no difference.

// deleteEvery removes every n-th file of a makeWideTree tree and returns how many it removed.
func deleteEvery(t *testing.T, root string, dirs, perDir, n int) int {
	t.Helper()
	removed := 0
	for i := 0; i < dirs*perDir; i += n {
		must(t, os.Remove(filepath.Join(root, fmt.Sprintf("d%03d/f%03d.dat", i/perDir, i%perDir))))
		removed++
	}
	return removed
}

// waitLeader waits until agent holds a leader session other than old.
func (c *cluster) waitLeader(within time.Duration, agent, old string) sessionInfo {
	c.t.Helper()
	var s sessionInfo
	eventually(c.t, within, agent+" leads with a new session", func() error {
		var err error
		if s, err = c.sessionOf(agent); err != nil {
			return err
		}
		list, err := c.sessions()
		if err != nil {
			return err
		}
		if s.ID == old || s.Role != "ROLE_LEADER" || len(list) != 1 {
			return fmt.Errorf("session %s role %s, %d sessions", s.ID, s.Role, len(list))
		}
		time.Sleep(50 * time.Millisecond)
		return nil
	})
	return s
}

// TestAgentRestartBeforeExpiryReconciles: the agent is killed and restarted before its old
// session expires. The new session follows until the old one expires, then leads and
// snapshots; the files deleted while the agent was down must leave the view through the
// snapshot's reconciliation. Audits are an hour apart, so only the snapshot can remove them.
func TestAgentRestartBeforeExpiryReconciles(t *testing.T) {
	const dirs, perDir = 30, 100
	root := makeWideTree(t, dirs, perDir)
	c := newCluster(t, root)
	c.auditEvery, c.sessionTimeout = "1h", "10s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", dirs*perDir)
	c.waitViewEqualsTree(10*time.Second, "/")
	first, err := c.sessionOf("e2e-agent")
	must(t, err)

	c.agent.stop(t, syscall.SIGKILL)
	removed := deleteEvery(t, root, dirs, perDir, 10)
	must(t, os.RemoveAll(filepath.Join(root, "d029")))
	must(t, os.WriteFile(filepath.Join(root, "d000", "while-down.dat"), []byte("new"), 0o644))
	c.startAgent()
	eventually(t, 10*time.Second, "the restarted agent follows the old, unexpired session", func() error {
		list, err := c.sessions()
		if err != nil {
			return err
		}
		if len(list) != 2 {
			return fmt.Errorf("%d sessions", len(list))
		}
		return nil
	})
	t.Logf("deleted %d files and a directory of %d while the agent was down", removed, perDir)
	c.waitLeader(30*time.Second, "e2e-agent", first.ID)
	took := c.waitViewEqualsTree(30*time.Second, "/")
	t.Logf("view equals the tree %v after the new session leads", took)
	c.requireVerifyClean("/")
}

// TestAgentRestartMidSnapshotReconciles: as above, but the agent is killed while its first
// snapshot is still being applied; the restarted agent's snapshot must still remove what was
// deleted meanwhile (some of it already sent by the killed agent's partial snapshot).
func TestAgentRestartMidSnapshotReconciles(t *testing.T) {
	const dirs, perDir = 200, 100
	root := makeWideTree(t, dirs, perDir)
	c := newCluster(t, root)
	c.auditEvery, c.sessionTimeout = "1h", "10s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	var partial uint64
	eventually(t, 60*time.Second, "the first snapshot is under way", func() error {
		doc, err := c.ctl("views")
		if err != nil {
			return err
		}
		vs, _ := doc["views"].([]any)
		if len(vs) != 1 {
			return fmt.Errorf("%d views", len(vs))
		}
		v, _ := vs[0].(map[string]any)
		meta, _ := v["meta"].(map[string]any)
		if meta["snapshotComplete"] == true {
			t.Skip("the first snapshot completed before the test could kill the agent mid-way")
		}
		if partial = num(v["nodes"]); partial < 500 {
			return fmt.Errorf("%d nodes", partial)
		}
		return nil
	})
	first, err := c.sessionOf("e2e-agent")
	must(t, err)
	c.agent.stop(t, syscall.SIGKILL)
	t.Logf("killed the agent mid-snapshot, the view held %d nodes", partial)
	removed := deleteEvery(t, root, dirs, perDir, 7)
	t.Logf("deleted %d files while the agent was down", removed)
	c.startAgent()
	c.waitLeader(30*time.Second, "e2e-agent", first.ID)
	took := c.waitViewEqualsTree(30*time.Second, "/")
	t.Logf("view equals the tree %v after the new session leads", took)
	c.requireVerifyClean("/")
}

// overflowLimit is the kernel's inotify queue length; the test skips when it is too large to
// overflow here.
func overflowLimit(t *testing.T) int {
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		_, _ = fmt.Sscan(string(b), &limit)
	}
	if limit > 100_000 {
		t.Skipf("max_queued_events is %d: too many files to overflow it here", limit)
	}
	return limit
}

// flood writes files new files in dir while the agent is stopped; each queues IN_CREATE,
// IN_MODIFY and IN_CLOSE_WRITE.
func flood(t *testing.T, dir string, files int) {
	t.Helper()
	for i := range files {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644))
	}
}

// TestSecondOverflowIsRepaired: two inotify queue overflows a few seconds apart. The second
// burst also rewrites existing files in place (same size, other content, distinct mtime) and
// deletes some, after the queue is already full, so only an audit can deliver them. Periodic
// audits are an hour apart: the second overflow must get its own (deep) audit and the view
// must equal the tree within a bounded time.
func TestSecondOverflowIsRepaired(t *testing.T) {
	limit := overflowLimit(t)
	root := makeTree(t)
	c := newCluster(t, root)
	c.auditEvery, c.sessionTimeout = "1h", "20s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	first, err := c.sessionOf("e2e-agent")
	must(t, err)
	files := limit/3 + 2000
	for _, d := range []string{"burst1", "burst2"} {
		must(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	c.waitViewEqualsTree(10*time.Second, "/") // the directories' own events are in

	stop := func() { must(t, c.agent.cmd.Process.Signal(syscall.SIGSTOP)) }
	cont := func() { must(t, c.agent.cmd.Process.Signal(syscall.SIGCONT)) }
	stop()
	t.Cleanup(func() { _ = c.agent.cmd.Process.Signal(syscall.SIGCONT) })
	flood(t, filepath.Join(root, "burst1"), files)
	cont()
	took := c.waitViewEqualsTree(60*time.Second, "/")
	doc, err := c.statsOf("/")
	must(t, err)
	cycles := num(doc["auditCycles"])
	t.Logf("first overflow repaired %v after SIGCONT, %d audit cycles", took, cycles)
	firstOverflow := time.Now()

	stop()
	flood(t, filepath.Join(root, "burst2"), files)
	// The queue is full: these changes are lost to inotify.
	rewritten, deleted := 0, 0
	for a := range 5 {
		for b := range 10 {
			for f := 1; f < 10; f += 2 {
				p := filepath.Join(root, fmt.Sprintf("d%02d/s%02d/f%02d.dat", a, b, f))
				st, err := os.Stat(p)
				must(t, err)
				must(t, os.WriteFile(p, bytes.Repeat([]byte{'y'}, int(st.Size())), 0o644))
				mt := time.Now().Add(-time.Second).Add(time.Duration(rewritten) * time.Microsecond)
				must(t, os.Chtimes(p, mt, mt))
				rewritten++
			}
		}
	}
	for a := 5; a < 10; a++ {
		for f := range 10 {
			must(t, os.Remove(filepath.Join(root, fmt.Sprintf("d%02d/s00/f%02d.dat", a, f))))
			deleted++
		}
	}
	cont()
	second := time.Now()
	t.Logf("second overflow %v after the first was repaired: %d new files, %d rewritten in place, %d deleted",
		second.Sub(firstOverflow).Round(time.Millisecond), files, rewritten, deleted)
	took = c.waitViewEqualsTree(60*time.Second, "/")
	t.Logf("second overflow repaired %v after SIGCONT", took)
	eventually(t, 10*time.Second, "an audit ran for the second overflow", func() error {
		doc, err := c.statsOf("/")
		if err != nil {
			return err
		}
		if n := num(doc["auditCycles"]); n <= cycles {
			return fmt.Errorf("%d audit cycles, %d before the second overflow", n, cycles)
		}
		return nil
	})
	// Both bursts did overflow the queue (else realtime, not audits, delivered them); the
	// counters come with the heartbeat, every half session timeout.
	c.waitOverflowsReported(20*time.Second, first.ID, 2)
	c.requireVerifyClean("/")
}

// TestUnclosedWriteSurvivesFusionRestart: while Fusion is down a file is truncated (IN_MODIFY,
// no IN_CLOSE_WRITE) and a new file is written and kept open. After the restart the agent's
// snapshot must still deliver both — the open one may be suspect — and closing it later
// converges. Audits are an hour apart, so the snapshot and realtime must do it.
func TestUnclosedWriteSurvivesFusionRestart(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.auditEvery = "1h"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	c.fusion.stop(t, syscall.SIGTERM)
	truncated := filepath.Join(root, "d01/s01/f05.dat")
	must(t, os.Truncate(truncated, 3))
	f, err := os.OpenFile(filepath.Join(root, "d02/s02/open.dat"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	defer f.Close()
	_, err = f.Write(bytes.Repeat([]byte{'o'}, 100))
	must(t, err)
	// Scenario timing, not a condition: give the watcher past its modify throttle (200 ms) so
	// the agent knows both files as being written before Fusion returns.
	time.Sleep(time.Second)
	c.startFusion()
	eventually(t, 30*time.Second, "the restarted Fusion serves the tree", func() error {
		_, err := c.fileCount("/")
		return err
	})
	took := c.waitViewEqualsTree(20*time.Second, "/")
	t.Logf("view equals the tree with the unclosed writes %v after the view is ready", took)
	doc, err := c.ctl("stat", "/d02/s02/open.dat")
	must(t, err)
	t.Logf("open file in the view: %v", doc["entry"])

	_, err = f.Write(bytes.Repeat([]byte{'p'}, 50))
	must(t, err)
	must(t, f.Close())
	c.waitViewEqualsTree(10*time.Second, "/")
	c.requireVerifyClean("/")
}

// TestReconnectIsAsFastAsConfigured: Fusion is down for 20 s; once it is back on the same
// address the agent (backoff 100 ms … 500 ms) must have the view ready within a few seconds,
// not after gRPC's own connection backoff (up to 120 s).
func TestReconnectIsAsFastAsConfigured(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	c.fusion.stop(t, syscall.SIGTERM)
	must(t, os.WriteFile(filepath.Join(root, "while-down.dat"), []byte("x"), 0o644))
	time.Sleep(20 * time.Second) // the outage itself
	restarted := time.Now()
	c.startFusion()
	var err error
	for {
		var n uint64
		if n, err = c.fileCount("/"); err == nil && n == 1001 {
			break
		}
		if err == nil {
			t.Fatalf("restarted Fusion answered a partial tree: %d files", n)
		}
		if time.Since(restarted) > 60*time.Second {
			t.Fatalf("the view is not ready 60 s after Fusion restarted: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(restarted)
	t.Logf("view ready %v after Fusion restarted (outage 20 s, agent backoff_max 500ms)", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("the agent took %v to reconnect after the outage; want under 5 s", took)
	}
	c.waitViewEqualsTree(10*time.Second, "/")
	c.requireVerifyClean("/")
}
