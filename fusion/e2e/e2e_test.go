package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// visibleWithin is the bound for a change to show through the query API.
const visibleWithin = time.Second

// makeTree writes 1,000 files in 10 × 10 nested directories, sizes 0..999 bytes.
func makeTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	n := 0
	for a := range 10 {
		for b := range 10 {
			dir := filepath.Join(root, fmt.Sprintf("d%02d", a), fmt.Sprintf("s%02d", b))
			must(t, os.MkdirAll(dir, 0o755))
			for f := range 10 {
				must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.dat", f)), bytes.Repeat([]byte{'x'}, n), 0o644))
				n++
			}
		}
	}
	return root
}

func (c *cluster) fileCount(path string) (uint64, error) {
	doc, err := c.ctl("stats", path)
	if err != nil {
		return 0, err
	}
	return num(doc["fileCount"]), nil
}

func (c *cluster) waitFiles(within time.Duration, path string, want uint64) {
	c.t.Helper()
	eventually(c.t, within, fmt.Sprintf("stats %s reports %d files", path, want), func() error {
		n, err := c.fileCount(path)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%d files", n)
		}
		return nil
	})
}

// statMatches checks the view's entry for rel against os.Stat of the real file.
func (c *cluster) statMatches(rel string) error {
	doc, err := c.ctl("stat", rel)
	if err != nil {
		return err
	}
	return matchEntry(doc["entry"], filepath.Join(c.root, rel))
}

func matchEntry(v any, real string) error {
	e, _ := v.(map[string]any)
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	if st.IsDir() {
		if e["isDir"] != true {
			return fmt.Errorf("%s: view says not a dir", real)
		}
		return nil
	}
	if got := num(e["size"]); got != uint64(st.Size()) {
		return fmt.Errorf("%s: size %d, os.Stat %d", real, got, st.Size())
	}
	mt, _ := e["mtime"].(string)
	got, err := time.Parse(time.RFC3339Nano, mt)
	if err != nil {
		return fmt.Errorf("%s: mtime %q: %v", real, mt, err)
	}
	if !got.Equal(st.ModTime()) {
		return fmt.Errorf("%s: mtime %v, os.Stat %v", real, got, st.ModTime())
	}
	return nil
}

func (c *cluster) gone(rel string) error {
	_, err := c.ctl("stat", rel)
	if err == nil {
		return fmt.Errorf("%s still in the view", rel)
	}
	if !strings.Contains(err.Error(), "NotFound") {
		return err
	}
	return nil
}

func TestViewMirrorsTreeAndFollowsChanges(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	// Every file's size and mtime equal os.Stat, read through a streamed tree.
	doc, err := c.ctl("tree", "/")
	must(t, err)
	entries, _ := doc["entries"].([]any)
	if len(entries) != 1110 {
		t.Fatalf("tree has %d entries; want 1000 files + 110 dirs", len(entries))
	}
	for _, e := range entries {
		p, _ := e.(map[string]any)["path"].(string)
		if err := matchEntry(e, filepath.Join(root, p)); err != nil {
			t.Error(err)
		}
	}

	steps := []struct {
		name  string
		do    func() error
		check func() error
	}{
		{"create", func() error { return os.WriteFile(filepath.Join(root, "new.txt"), []byte("hello"), 0o644) },
			func() error { return c.statMatches("/new.txt") }},
		{"append and close", func() error {
			f, err := os.OpenFile(filepath.Join(root, "d00/s00/f01.dat"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteString("more bytes"); err != nil {
				return err
			}
			return f.Close()
		}, func() error { return c.statMatches("/d00/s00/f01.dat") }},
		{"rename a file", func() error { return os.Rename(filepath.Join(root, "new.txt"), filepath.Join(root, "d01/renamed.txt")) },
			func() error { return errors.Join(c.gone("/new.txt"), c.statMatches("/d01/renamed.txt")) }},
		{"rename a directory with files", func() error { return os.Rename(filepath.Join(root, "d02"), filepath.Join(root, "d02-moved")) },
			func() error {
				n, err := c.fileCount("/d02-moved")
				if err == nil && n != 100 {
					err = fmt.Errorf("/d02-moved holds %d files", n)
				}
				return errors.Join(err, c.gone("/d02"), c.statMatches("/d02-moved/s05/f05.dat"))
			}},
		{"delete a file", func() error { return os.Remove(filepath.Join(root, "d03/s00/f00.dat")) },
			func() error { return c.gone("/d03/s00/f00.dat") }},
		{"delete a directory", func() error { return os.RemoveAll(filepath.Join(root, "d04")) },
			func() error { return c.gone("/d04") }},
	}
	for _, s := range steps {
		must(t, s.do())
		took := eventually(t, visibleWithin, s.name, s.check)
		t.Logf("%s visible after %v", s.name, took)
	}
	// 1000 + new file − deleted file − 100 files of d04.
	c.waitFiles(visibleWithin, "/", 900)
}

func grpcurlPath(t testing.TB) string {
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	p := filepath.Join(repoRoot(t), "bin", "tools", "grpcurl")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("grpcurl not found on PATH or in bin/tools: run `make tools` (make test does)")
	}
	return p
}

func grpcurl(t *testing.T, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, grpcurlPath(t), args...).CombinedOutput()
	return string(out), err
}

func TestGrpcurlWithReflection(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)

	out, err := grpcurl(t, "-plaintext", c.addr, "list")
	must(t, err)
	for _, svc := range []string{"fustor.v1.ViewService", "fustor.v1.SessionService", "fustor.v1.PushService", "fustor.v1.AdminService", "grpc.health.v1.Health"} {
		if !strings.Contains(out, svc) {
			t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
		}
	}
	out, err = grpcurl(t, "-plaintext", "-H", "authorization: Bearer query-key", "-d", `{"view":"files","path":"/d05"}`, c.addr, "fustor.v1.ViewService/GetStats")
	must(t, err)
	var stats struct {
		FileCount string `json:"fileCount"`
		DirCount  string `json:"dirCount"`
	}
	must(t, json.Unmarshal([]byte(out), &stats))
	if stats.FileCount != "100" || stats.DirCount != "10" {
		t.Fatalf("GetStats via grpcurl = %s", out)
	}
	out, err = grpcurl(t, "-plaintext", "-H", "authorization: Bearer query-key", "-d", `{"view":"files","path":"/d05/s05/f05.dat"}`, c.addr, "fustor.v1.ViewService/Stat")
	must(t, err)
	var st struct {
		Entry json.RawMessage `json:"entry"`
	}
	must(t, json.Unmarshal([]byte(out), &st))
	var entry map[string]any
	must(t, json.Unmarshal(st.Entry, &entry))
	must(t, matchEntry(entry, filepath.Join(root, "d05/s05/f05.dat")))

	out, err = grpcurl(t, "-plaintext", "-H", "authorization: Bearer wrong", "-d", `{"view":"files","path":"/"}`, c.addr, "fustor.v1.ViewService/Stat")
	if err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Fatalf("wrong key via grpcurl: %v\n%s", err, out)
	}
	out, err = grpcurl(t, "-plaintext", "-H", "authorization: Bearer query-key", "-d", `{"view":"files","path":"/../etc"}`, c.addr, "fustor.v1.ViewService/Stat")
	if err == nil || !strings.Contains(out, "InvalidArgument") {
		t.Fatalf("bad path via grpcurl: %v\n%s", err, out)
	}
	out, err = grpcurl(t, "-plaintext", c.addr, "grpc.health.v1.Health/Check")
	if err != nil || !strings.Contains(out, "SERVING") {
		t.Fatalf("health: %v\n%s", err, out)
	}
}

func TestAgentBeforeFusionAndFusionRestart(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startAgent()
	// The agent must have tried and failed at least once before Fusion exists.
	eventually(t, 30*time.Second, "agent reports a failed session", func() error {
		c.agent.mu.Lock()
		defer c.agent.mu.Unlock()
		if !strings.Contains(c.agent.log.String(), "session failed") {
			return errors.New("no failure logged yet")
		}
		return nil
	})
	c.startFusion()
	c.waitFiles(60*time.Second, "/", 1000)

	c.fusion.stop(t, syscall.SIGKILL)
	must(t, os.WriteFile(filepath.Join(root, "while-down.txt"), []byte("x"), 0o644))
	c.startFusion()
	// Until the leader's first snapshot is applied the view answers UNAVAILABLE — never a
	// partial tree; then the full one.
	eventually(t, 60*time.Second, "restarted fusion serves the whole tree", func() error {
		n, err := c.fileCount("/")
		switch {
		case err != nil && strings.Contains(err.Error(), "Unavailable"):
			return err
		case err != nil:
			return err // not yet listening
		case n != 1001:
			t.Fatalf("restarted fusion answered a partial tree: %d files", n)
		}
		return nil
	})
	must(t, c.statMatches("/while-down.txt"))
}

// TestAuditsKeepALiveTreeIntact runs audits every second against a tree that changes through
// the agent: missing-item detection must never delete what exists.
func TestAuditsKeepALiveTreeIntact(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	must(t, os.WriteFile(filepath.Join(root, "d07/s07/during-audits.dat"), []byte("x"), 0o644))
	must(t, os.Remove(filepath.Join(root, "d08/s08/f00.dat")))
	eventually(t, 30*time.Second, "two audits completed", func() error {
		doc, err := c.ctl("stats", "/")
		if err != nil {
			return err
		}
		if n := num(doc["auditCycles"]); n < 2 {
			return fmt.Errorf("%d audit cycles", n)
		}
		if n := num(doc["fileCount"]); n != 1000 {
			return fmt.Errorf("%d files after audits", n)
		}
		if doc["blindSpotDeletions"] != nil || doc["blindSpotAdditions"] != nil {
			return fmt.Errorf("audits found blind spots in a fully watched tree: %v", doc)
		}
		return nil
	})
	must(t, c.statMatches("/d07/s07/during-audits.dat"))
}

// TestForceRealTimeSeesChangesBehindTheAgent: with realtime off, a new file is invisible until
// a query asks for force_real_time, which makes the leader re-scan the path first.
func TestForceRealTimeSeesChangesBehindTheAgent(t *testing.T) {
	root := makeTree(t)
	c := newClusterOpts(t, root, binaries(t, true), false)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	s, err := c.sessionOf("e2e-agent")
	must(t, err)
	if s.CanRealtime {
		t.Fatal("an agent without watching reports can_realtime")
	}
	must(t, os.WriteFile(filepath.Join(root, "d09/s09/behind.dat"), []byte("unseen"), 0o644))
	must(t, c.gone("/d09/s09/behind.dat"))
	doc, err := c.ctl("stat", "/d09/s09/behind.dat", "--force-real-time")
	must(t, err)
	if meta, _ := doc["meta"].(map[string]any); meta["jobPending"] == true {
		t.Fatalf("scan did not finish: %v", doc)
	}
	must(t, matchEntry(doc["entry"], filepath.Join(root, "d09/s09/behind.dat")))
	doc, err = c.ctl("stats", "/d09", "--force-real-time")
	must(t, err)
	if n := num(doc["fileCount"]); n != 101 {
		t.Fatalf("stats after a forced scan: %d files", n)
	}
}
