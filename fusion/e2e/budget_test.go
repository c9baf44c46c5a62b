package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchBudgetLeavesColdDirectoriesToAudit: with a budget of 10 watches on a tree of 1,000
// directories the agent watches the 10 most recently active ones. A file written in one of them
// arrives in real time (known to the agent); a file written in an unwatched one arrives with
// the next audit, as a blind-spot addition.
func TestWatchBudgetLeavesColdDirectoriesToAudit(t *testing.T) {
	root := t.TempDir()
	old, recent := time.Now().Add(-48*time.Hour), time.Now().Add(-time.Minute)
	for i := range 1000 {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i))
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "f.dat"), []byte("x"), 0o644))
		mt := old
		if i >= 100 && i < 109 {
			mt = recent
		}
		must(t, os.Chtimes(filepath.Join(d, "f.dat"), old, old))
		must(t, os.Chtimes(d, mt, mt))
	}
	c := newCluster(t, root)
	c.maxWatches, c.auditEvery = 10, "3s"
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	eventually(t, 30*time.Second, "the agent reports its watch budget", func() error {
		pr, cs, err := c.agentProgress()
		if err != nil {
			return err
		}
		if num(pr["watches"]) != 10 || num(cs["watch_budget"]) != 10 || num(cs["dirs_left_to_audit"]) != 991 {
			return fmt.Errorf("progress %v", pr)
		}
		return nil
	})

	must(t, os.WriteFile(filepath.Join(root, "d105", "hot.dat"), []byte("hot"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "d500", "cold.dat"), []byte("cold"), 0o644))
	// The watched directory's file arrives first, from realtime: known to the agent.
	hot := eventually(t, 10*time.Second, "/d105/hot.dat from realtime", func() error {
		doc, err := c.ctl("stat", "/d105/hot.dat")
		if err != nil {
			return err
		}
		if e, _ := doc["entry"].(map[string]any); e["knownByAgent"] != true {
			return fmt.Errorf("not known by the agent: %v", doc)
		}
		return nil
	})
	t.Logf("watched directory: visible after %v", hot)
	cold := eventually(t, 30*time.Second, "/d500/cold.dat as a blind-spot addition", func() error {
		doc, err := c.ctl("blind-spots", "/")
		if err != nil {
			return err
		}
		adds, _ := doc["additions"].([]any)
		for _, a := range adds {
			if e, _ := a.(map[string]any); e["path"] == "/d500/cold.dat" {
				if e["knownByAgent"] == true {
					return fmt.Errorf("audit addition marked known: %v", e)
				}
				return nil
			}
			if e, _ := a.(map[string]any); e["path"] == "/d105/hot.dat" {
				t.Fatalf("the watched directory's file became a blind spot: %v", e)
			}
		}
		return fmt.Errorf("additions %v", adds)
	})
	t.Logf("unwatched directory: visible as a blind-spot addition after %v (audit every 3 s)", cold)
}
