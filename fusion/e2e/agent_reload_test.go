package e2e

import (
	"bytes"
	"context"
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

// reloadFusionConfig is Fusion with both views and ingest keys up front: "files" fed by the
// Fusion pipe "main", "second" by "second", each chosen by its own ingest key.
func reloadFusionConfig(addr string) string {
	return fmt.Sprintf(`server:
  listen: %s
  admin_keys: [admin-key]
  shutdown_timeout: 2s
log: {level: debug}
receivers:
  default:
    api_keys:
      - {key: ingest-key, pipe: main}
      - {key: ingest-key-2, pipe: second}
pipes:
  main: {receiver: default, views: [files], session_timeout: 3s}
  second: {receiver: default, views: [second], session_timeout: 3s}
views:
  files: {driver: fs, live: true, query_keys: [query-key]}
  second: {driver: fs, live: true, query_keys: [query-key]}
`, addr)
}

// reloadAgentConfig is the agent on root alone, or, with second set, also on second through a
// pipe and sender (the ingest key picks the Fusion pipe) of its own. extra is appended as is.
func reloadAgentConfig(addr, root, second, extra string) string {
	s := fmt.Sprintf(`agent_id: e2e-agent
log: {level: debug}
sources:
  data: {root: %s, modify_throttle: 200ms}
`, root)
	if second != "" {
		s += fmt.Sprintf("  data2: {root: %s, modify_throttle: 200ms}\n", second)
	}
	s += fmt.Sprintf("senders:\n  fusion: {address: %s, api_key: ingest-key}\n", addr)
	if second != "" {
		s += fmt.Sprintf("  fusion2: {address: %s, api_key: ingest-key-2}\n", addr)
	}
	s += "pipes:\n  main: {source: data, sender: fusion, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s}\n"
	if second != "" {
		s += "  second: {source: data2, sender: fusion2, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s}\n"
	}
	return s + extra
}

// sessionOfPipe is the one session Fusion holds on its pipe (among those feeding c.view).
func (c *cluster) sessionOfPipe(pipe string) (sessionInfo, error) {
	list, err := c.sessions()
	if err != nil {
		return sessionInfo{}, err
	}
	var found []sessionInfo
	for _, s := range list {
		if s.Pipe == pipe {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		return sessionInfo{}, fmt.Errorf("%d sessions on pipe %s in %v", len(found), pipe, list)
	}
	return found[0], nil
}

// output is what the process has written so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// runAgentCmd runs fustor-agent with args to its end and returns its exit code and output.
func (c *cluster) runAgentCmd(args ...string) (int, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "fustor-agent"), args...)
	cmd.Env = raceEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	}
	c.t.Fatalf("run fustor-agent %v: %v", args, err)
	return 0, ""
}

// TestAgentReloadAddsASource: Fusion and an agent on one tree; agent.yaml gains a second
// source and pipe (its own directory, ingest key and view). An invalid edit first, sent by
// SIGHUP, is refused — the agent keeps its pipe and session — and `fustor-agent reload`
// refuses to send one. Then the valid edit, sent by `fustor-agent reload`, makes the second
// view equal its directory (every path, type, size and mtime), realtime included, while the
// first pipe's session is the very same one.
func TestAgentReloadAddsASource(t *testing.T) {
	c := newCluster(t, makeTree(t))
	second := makeTree(t)
	agentYAML := filepath.Join(c.cfgDir, "agent.yaml")
	must(t, os.WriteFile(filepath.Join(c.cfgDir, "fusion.yaml"), []byte(reloadFusionConfig(c.addr)), 0o644))
	must(t, os.WriteFile(agentYAML, []byte(reloadAgentConfig(c.addr, c.root, "", "")), 0o644))
	c.startFusion()
	c.startAgent()
	c.waitViewEqualsTree(60*time.Second, "/")
	first, err := c.sessionOfPipe("main")
	if err != nil {
		t.Fatal(err)
	}
	c2 := *c
	c2.view, c2.root = "second", second

	// Invalid: the reload command says why and sends nothing; a SIGHUP anyway is refused by
	// the agent, every problem logged.
	must(t, os.WriteFile(agentYAML, []byte(reloadAgentConfig(c.addr, c.root, second, "  broken: {source: nope, sender: fusion, batch_size: -1}\n")), 0o644))
	code, out := c.runAgentCmd("reload", "--config", agentYAML)
	if code != 1 || !strings.Contains(out, `unknown source "nope"`) || !strings.Contains(out, "reload not sent") {
		t.Fatalf("reload of an invalid config: exit %d\n%s", code, out)
	}
	code, out = c.runAgentCmd("--validate", "--config", agentYAML)
	if code != 1 || !strings.Contains(out, `unknown source "nope"`) || !strings.Contains(out, "batch_size") {
		t.Fatalf("--validate of an invalid config: exit %d\n%s", code, out)
	}
	must(t, c.agent.cmd.Process.Signal(syscall.SIGHUP))
	eventually(t, 20*time.Second, "the agent to refuse the invalid config", func() error {
		log := c.agent.output()
		if !strings.Contains(log, "reload refused") || !strings.Contains(log, `unknown source \"nope\"`) || !strings.Contains(log, "batch_size") {
			return errNotYet
		}
		return nil
	})
	if _, err := c2.ctl("stats", "/"); err == nil {
		t.Error("the second view answers after a refused reload")
	}

	// Valid: sent by the reload command.
	must(t, os.WriteFile(agentYAML, []byte(reloadAgentConfig(c.addr, c.root, second, "")), 0o644))
	if code, out := c.runAgentCmd("--validate", "--config", agentYAML); code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("--validate of the new config: exit %d\n%s", code, out)
	}
	code, out = c.runAgentCmd("reload", "--config", agentYAML)
	if code != 0 || !strings.Contains(out, "asked the agent") {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	took := c2.waitViewEqualsTree(60*time.Second, "/")
	t.Logf("the second view equals its directory %v after the reload", took)
	// Realtime on the new source: a new file shows up.
	must(t, os.WriteFile(filepath.Join(second, "d00", "after-reload.txt"), []byte("hello"), 0o644))
	c2.waitViewEqualsTree(30*time.Second, "/")

	now, err := c.sessionOfPipe("main")
	if err != nil {
		t.Fatal(err)
	}
	if now.ID != first.ID {
		t.Errorf("the first pipe's session changed from %s to %s across the reload", first.ID, now.ID)
	}
	if _, err := c2.sessionOfPipe("second"); err != nil { // fustorctl lists the sessions of its --view
		t.Error(err)
	}
	c.waitViewEqualsTree(30*time.Second, "/")
	log := c.agent.output()
	for _, want := range []string{"pipe added", "source added", "sender added", "reload applied"} {
		if !strings.Contains(log, want) {
			t.Errorf("agent log lacks %q", want)
		}
	}
	if strings.Contains(log, "pipe restarted") || strings.Contains(log, "pipe removed") {
		t.Error("the reload restarted or removed a pipe it should have left alone")
	}
}
