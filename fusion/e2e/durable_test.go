package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestFusionRestartAnswersFromItsCheckpoint (issue 16): a 100,000-file view; Fusion is stopped
// (SIGTERM: it checkpoints on the way out; then SIGKILL: the last periodic checkpoint is all
// there is) while the agent keeps running and files change; the restarted Fusion answers from
// the checkpoint as soon as its listener is up, flagged restored, with no UNAVAILABLE answer,
// and once the agent's new session has snapshotted, the view equals the tree and the flag is
// gone.
func TestFusionRestartAnswersFromItsCheckpoint(t *testing.T) {
	root := makeWideTree(t, 200, 500)
	c := newCluster(t, root)
	c.stateDir, c.checkpointEvery = t.TempDir(), "1s"
	c.auditEvery = "1h" // the snapshot, not an audit, is what must heal the view
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitViewEqualsTree(120*time.Second, "/")
	ckpt := filepath.Join(c.stateDir, "files.ckpt")
	// A checkpoint on demand (fustorctl checkpoint, admin key).
	doc, err := c.ctlWith("admin-key", "checkpoint")
	must(t, err)
	if cks, _ := doc["checkpoints"].([]any); len(cks) != 1 || num(cks[0].(map[string]any)["nodes"]) < 100_000 {
		t.Fatalf("fustorctl checkpoint: %v", doc)
	}

	for round, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			if sig == syscall.SIGKILL {
				// A periodic checkpoint after the view settled: the one SIGKILL leaves.
				settled := time.Now()
				for deadline := settled.Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					if fi, err := os.Stat(ckpt); err == nil && fi.ModTime().After(settled) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("no periodic checkpoint within 30s of the view settling")
					}
				}
			}
			c.fusion.stop(t, sig)
			stoppedAt := time.Now()
			// Files change while Fusion is down: some deleted, some created, some rewritten.
			for i := range 20 {
				must(t, os.Remove(filepath.Join(root, fmt.Sprintf("d%03d", 20*round+i), "f000.dat")))
				must(t, os.WriteFile(filepath.Join(root, fmt.Sprintf("d%03d", 100+i), fmt.Sprintf("new-%d.dat", round)), []byte("new"), 0o644))
				must(t, os.WriteFile(filepath.Join(root, fmt.Sprintf("d%03d", 150+i), "f001.dat"), make([]byte, 1000+round), 0o644))
			}
			c.startFusion()
			first, restored := c.firstAnswers(t, 30*time.Second)
			t.Logf("%v: first answer %v after the listener came up", sig, first)
			if first > time.Second {
				t.Errorf("the restarted Fusion answered %v after its listener came up; want within 1s", first)
			}
			if restored.GetRestored() != true || restored.GetCheckpointTime() == nil {
				t.Fatalf("the first answer's meta %v; want restored with the checkpoint's time", restored)
			}
			if ct := restored.GetCheckpointTime().AsTime(); ct.After(stoppedAt) {
				t.Fatalf("the checkpoint claims %v, after Fusion stopped (%v)", ct, stoppedAt)
			}
			c.waitViewEqualsTree(120*time.Second, "/")
			eventually(t, 30*time.Second, "the restored flag clears", func() error {
				meta, err := c.rootMeta()
				if err != nil {
					return err
				}
				if meta.GetRestored() {
					return fmt.Errorf("still restored: %v", meta)
				}
				return nil
			})
		})
	}
}

// firstAnswers waits for Fusion's listener to accept a connection, then asks Stat / at once:
// it returns how long after the listener came up the answer came, and its meta. An error
// (UNAVAILABLE: the view not ready) fails the test: there must be no window without answers.
func (c *cluster) firstAnswers(t *testing.T, within time.Duration) (time.Duration, *fustorv1.ViewMeta) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		nc, err := net.DialTimeout("tcp", c.addr, time.Second)
		if err == nil {
			_ = nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Fusion's listener did not come up within %v: %v", within, err)
		}
		time.Sleep(2 * time.Millisecond) // nothing to wait on but the port
	}
	up := time.Now()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer query-key"), 10*time.Second)
	defer cancel()
	resp, err := fustorv1.NewViewServiceClient(conn).Stat(ctx, &fustorv1.StatRequest{View: "files", Path: "/"})
	if err != nil {
		t.Fatalf("the restarted Fusion's first answer (%v after its listener came up): %v", time.Since(up), err)
	}
	return time.Since(up), resp.GetMeta()
}

// rootMeta is the meta of Stat /.
func (c *cluster) rootMeta() (*fustorv1.ViewMeta, error) {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer query-key")
	resp, err := fustorv1.NewViewServiceClient(conn).Stat(ctx, &fustorv1.StatRequest{View: "files", Path: "/"})
	if err != nil {
		return nil, err
	}
	return resp.GetMeta(), nil
}

// TestAgentKilledAndRestartedKeepsAnswering (issue 16): an agent SIGKILLed on a 200,000-file
// tree and started again: queries never answer UNAVAILABLE (the view is stale while no session
// feeds it), and once the new session's snapshot ends the view equals the tree again,
// including what changed while the agent was down.
func TestAgentKilledAndRestartedKeepsAnswering(t *testing.T) {
	root := makeWideTree(t, 400, 500)
	c := newCluster(t, root)
	c.auditEvery = "1h"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitViewEqualsTree(180*time.Second, "/")

	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	load := startQueryLoad(t, fustorv1.NewViewServiceClient(conn), "/d000/f001.dat", 10*time.Millisecond)
	c.agent.stop(t, syscall.SIGKILL)
	for i := range 20 {
		must(t, os.Remove(filepath.Join(root, fmt.Sprintf("d%03d", 300+i), "f000.dat")))
		must(t, os.WriteFile(filepath.Join(root, fmt.Sprintf("d%03d", 300+i), "while-down.dat"), []byte("x"), 0o644))
	}
	// The session expires (3 s): the view is stale, and keeps answering.
	eventually(t, 30*time.Second, "the view flagged stale", func() error {
		meta, err := c.rootMeta()
		if err != nil {
			return err
		}
		if !meta.GetStale() {
			return fmt.Errorf("not stale yet: %v", meta)
		}
		return nil
	})
	c.startAgent()
	c.waitViewEqualsTree(180*time.Second, "/")
	eventually(t, 30*time.Second, "the stale flag clears", func() error {
		meta, err := c.rootMeta()
		if err != nil {
			return err
		}
		if meta.GetStale() {
			return fmt.Errorf("still stale: %v", meta)
		}
		return nil
	})
	load.Stop()
	t.Logf("%d queries while the agent was killed and restarted, %d answered stale, %d failed", load.asked, load.stale, len(load.failures))
	if len(load.failures) != 0 || load.stale == 0 {
		t.Fatalf("%d of %d queries failed (first: %v), %d stale; want none failed, some stale", len(load.failures), load.asked, load.failures, load.stale)
	}
}

// TestFsAgentResumesAcrossAFusionRestart (issue 16): Fusion stops (SIGTERM) while an fs agent
// keeps watching; files change meanwhile (inotify sees them); the restarted Fusion restores
// its view and the pipe's committed index, and the agent re-creates its session and resends
// what its bus holds since that index — no snapshot — after which the view equals the tree
// and is no longer flagged restored.
func TestFsAgentResumesAcrossAFusionRestart(t *testing.T) {
	root := makeWideTree(t, 20, 50)
	c := newCluster(t, root)
	c.stateDir, c.auditEvery = t.TempDir(), "1h"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitViewEqualsTree(60*time.Second, "/")
	first, err := c.sessionOf("e2e-agent")
	must(t, err)

	c.fusion.stop(t, syscall.SIGTERM)
	for i := range 10 {
		must(t, os.Remove(filepath.Join(root, fmt.Sprintf("d%03d", i), "f000.dat")))
		must(t, os.WriteFile(filepath.Join(root, fmt.Sprintf("d%03d", 10+i), "while-down.dat"), []byte("written while fusion was down"), 0o644))
	}
	c.startFusion()
	c.waitViewEqualsTree(60*time.Second, "/")
	s, err := c.sessionOf("e2e-agent")
	must(t, err)
	if s.ID == first.ID || s.Counters["snapshots"] != 0 {
		t.Fatalf("the session after Fusion's restart (%s) sent %d snapshots; want a new session and none", s.ID, s.Counters["snapshots"])
	}
	must(t, c.agentLogContains("realtime resumes from the bus after fusion's restart"))
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
