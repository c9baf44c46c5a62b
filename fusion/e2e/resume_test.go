package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// appendJournal appends n file entries with indexes from first on.
func appendJournal(t *testing.T, path string, first, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	defer f.Close()
	enc := json.NewEncoder(f)
	for i := first; i < first+n; i++ {
		must(t, enc.Encode(map[string]any{"index": i, "path": fmt.Sprintf("/log/f%04d.dat", i), "size": i,
			"mtime_ns": time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).UnixNano()}))
	}
}

// TestResumeFromCommittedIndexWithoutSnapshot: an agent on a replayable source (a journal) is
// restarted; its new session gets the pipe's committed index and continues from it — no
// snapshot — and entries appended while it was down arrive. The view is not live, so Fusion
// keeps its state between sessions.
func TestResumeFromCommittedIndexWithoutSnapshot(t *testing.T) {
	c, journal := journalCluster(t, false, "")
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 100)
	first, err := c.sessionOf("e2e-agent")
	must(t, err)
	if first.Counters["snapshots"] != 1 {
		t.Fatalf("first session snapshots = %d; want 1", first.Counters["snapshots"])
	}
	appendJournal(t, journal, 101, 5) // realtime through the follower of the log
	c.waitFiles(30*time.Second, "/", 105)

	c.agent.stop(t, syscall.SIGTERM)
	appendJournal(t, journal, 106, 10) // written while the agent is down
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 115)
	second, err := c.sessionOf("e2e-agent")
	must(t, err)
	if second.ID == first.ID || second.Counters["snapshots"] != 0 {
		t.Fatalf("resumed session %s sent %d snapshots; want none", second.ID, second.Counters["snapshots"])
	}
	must(t, c.agentLogContains(`"resumed": true`))
}

// TestJournalResumesAcrossAFusionRestart (issue 16): Fusion stops (SIGTERM: its views and
// their pipes' committed indexes are checkpointed) and starts again from its state dir; the
// agent on a replayable source re-creates its session, gets the committed index back and
// carries on from it — no snapshot — and entries appended while Fusion was down arrive.
func TestJournalResumesAcrossAFusionRestart(t *testing.T) {
	c, journal := journalCluster(t, true, "state")
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 100)
	appendJournal(t, journal, 101, 5)
	c.waitFiles(30*time.Second, "/", 105)

	c.fusion.stop(t, syscall.SIGTERM)
	appendJournal(t, journal, 106, 10) // written while Fusion is down
	c.startFusion()
	c.waitFiles(60*time.Second, "/", 115)
	s, err := c.sessionOf("e2e-agent")
	must(t, err)
	if s.Counters["snapshots"] != 0 {
		t.Fatalf("the session after Fusion's restart sent %d snapshots; want none", s.Counters["snapshots"])
	}
	must(t, c.agentLogContains(`"resumed": true`))
	// The resuming leader confirms the restored tree: no snapshot will come to clear the flag.
	eventually(t, 10*time.Second, "the view neither restored nor stale", func() error {
		meta, err := c.rootMeta()
		if err != nil {
			return err
		}
		if meta.GetRestored() || meta.GetStale() {
			return fmt.Errorf("meta %v", meta)
		}
		return nil
	})
}

// journalCluster is a Fusion with one view (live or not; state, when set, is the state dir's
// name in the cluster's directory) fed by an agent on a journal of 100 entries.
func journalCluster(t *testing.T, live bool, state string) (c *cluster, journal string) {
	dir := t.TempDir()
	journal = filepath.Join(dir, "events.jsonl")
	appendJournal(t, journal, 1, 100)
	c = &cluster{t: t, bin: binaries(t, true), addr: freePort(t), cfgDir: dir, realtime: true}
	c.agentAddr = c.addr
	stateDir := ""
	if state != "" {
		stateDir = ", state_dir: " + filepath.Join(dir, state)
	}
	must(t, os.WriteFile(filepath.Join(dir, "fusion.yaml"), []byte(fmt.Sprintf(`server: {listen: %s, admin_keys: [admin-key], shutdown_timeout: 2s%s}
receivers:
  default: {api_keys: [{key: ingest-key, pipe: main}]}
pipes:
  main: {receiver: default, views: [files], session_timeout: 3s}
views:
  files: {driver: fs, live: %v, query_keys: [query-key]}
`, c.addr, stateDir, live)), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(fmt.Sprintf(`agent_id: e2e-agent
sources:
  log: {driver: journal, path: %s}
senders:
  fusion: {address: %s, api_key: ingest-key}
pipes:
  main: {source: log, sender: fusion, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1h}
`, journal, c.addr)), 0o644))
	return c, journal
}

func (c *cluster) agentLogContains(s string) error {
	c.agent.mu.Lock()
	defer c.agent.mu.Unlock()
	if !bytesContains(c.agent.log.Bytes(), s) {
		return fmt.Errorf("agent log lacks %q", s)
	}
	return nil
}
