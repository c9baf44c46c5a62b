//go:build docker

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The container fault tests (make test-docker): the compose demo's file and images (FROM
// scratch around bin/, built by make build), its storages bind-mounted from the test's
// directories so the views can be compared with them, and no writer: the test writes. Each
// fault ends with both storages' views equal to their directories (every path, type, size and
// mtime).

// composeRun is the demo's compose project for one test.
type composeRun struct {
	t       *testing.T
	cmd     []string // docker compose, or docker-compose
	project string
	env     []string
	root    string
}

func (c *composeRun) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", strings.Join(c.cmd, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *composeRun) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append(append(append([]string{}, c.cmd[1:]...), "-p", c.project), args...)
	cmd := exec.CommandContext(ctx, c.cmd[0], full...)
	cmd.Dir, cmd.Env = c.root, append(os.Environ(), c.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// container returns the id of service's container.
func (c *composeRun) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.run("ps", "-q", service))
	if id == "" {
		c.t.Fatalf("no container for %s", service)
	}
	return id
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startCompose brings the demo up without its writer, or skips the test saying why.
func startCompose(t *testing.T) (*composeRun, *cluster, *cluster) {
	compose := strings.Fields(os.Getenv("FUSTOR_COMPOSE"))
	if len(compose) == 0 {
		t.Skip("container fault tests: no Compose (FUSTOR_COMPOSE is empty: make test-docker sets it to the one installed)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("container fault tests: no Docker engine answers: %v %s", err, out)
	}
	root := repoRoot(t)
	for _, b := range []string{"fustor-fusion", "fustor-agent", "fustorctl"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			t.Fatalf("the images need the static binaries: run make build (%v)", err)
		}
	}
	s1, s2 := t.TempDir(), t.TempDir()
	port := strings.TrimPrefix(freePort(t), "127.0.0.1:")
	c := &composeRun{t: t, cmd: compose, project: fmt.Sprintf("fustor-test-%d", os.Getpid()), root: root,
		env: []string{"FUSTOR_STORAGE_1=" + s1, "FUSTOR_STORAGE_2=" + s2, "FUSTOR_COMPOSE_PORT=" + port}}
	c.run("build")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.try("logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.try("down", "--volumes", "--remove-orphans", "-t", "2"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	c.run("up", "-d", "fusion", "agent-1a", "agent-1b", "agent-2")
	bin := filepath.Join(root, "bin")
	one := &cluster{t: t, bin: bin, addr: "127.0.0.1:" + port, root: s1, view: "storage-1", key: "demo-key"}
	two := &cluster{t: t, bin: bin, addr: "127.0.0.1:" + port, root: s2, view: "storage-2", key: "demo-key"}
	for _, cl := range []*cluster{one, two} {
		makeSubmissions(t, cl.root, "first", 3)
	}
	for _, cl := range []*cluster{one, two} {
		cl.waitViewEqualsTree(90*time.Second, "/")
	}
	return c, one, two
}

// makeSubmissions writes n small submissions under root/upload/<tag>-<i>.
func makeSubmissions(t *testing.T, root, tag string, n int) {
	t.Helper()
	for i := range n {
		dir := filepath.Join(root, "upload", fmt.Sprintf("%s-%d", tag, i))
		must(t, os.MkdirAll(dir, 0o755))
		for f := range 5 {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("data_%04d.dat", f)), bytes.Repeat([]byte{'x'}, 100+f), 0o644))
		}
	}
}

// sessionsOf returns agent id → role of the sessions of pipe (fustorctl sessions, admin key).
func sessionsOf(c *cluster, pipe string) (map[string]string, error) {
	doc, err := c.ctlWith("demo-key", "sessions")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	list, _ := doc["sessions"].([]any)
	for _, x := range list {
		s, _ := x.(map[string]any)
		if s["pipeId"] == pipe {
			id, _ := s["agentId"].(string)
			role, _ := s["role"].(string)
			out[id] = role
		}
	}
	return out, nil
}

// oneLeader waits until pipe has exactly the agents want, one of them leading (lead, when not
// empty, names which), and returns the leader.
func oneLeader(t *testing.T, c *cluster, pipe string, want []string, lead string, within time.Duration) string {
	t.Helper()
	var leader string
	eventually(t, within, fmt.Sprintf("pipe %s: sessions of %v, one leader %s", pipe, want, lead), func() error {
		ss, err := sessionsOf(c, pipe)
		if err != nil {
			return err
		}
		leaders := 0
		for id, role := range ss {
			if role == "ROLE_LEADER" {
				leaders++
				leader = id
			}
		}
		if len(ss) != len(want) || leaders != 1 || (lead != "" && leader != lead) {
			return fmt.Errorf("%w: sessions %v", errNotYet, ss)
		}
		for _, id := range want {
			if _, ok := ss[id]; !ok {
				return fmt.Errorf("%w: no session of %s: %v", errNotYet, id, ss)
			}
		}
		return nil
	})
	return leader
}

func TestDockerFaults(t *testing.T) {
	c, one, two := startCompose(t)
	leader := oneLeader(t, one, "storage-1", []string{"agent-1a", "agent-1b"}, "", time.Minute)
	other := map[string]string{"agent-1a": "agent-1b", "agent-1b": "agent-1a"}[leader]

	t.Run("network-disconnect", func(t *testing.T) {
		// The leader of storage-1 is cut off for 30 s (past its 15 s session timeout): the
		// follower leads, and the cut-off agent comes back as follower.
		net := c.project + "_default"
		id := c.container(leader)
		docker(t, "network", "disconnect", net, id)
		cut := time.Now()
		makeSubmissions(t, one.root, "cut", 2)
		oneLeader(t, one, "storage-1", []string{other}, other, time.Minute)
		time.Sleep(time.Until(cut.Add(30 * time.Second))) // the fault lasts 30 s
		docker(t, "network", "connect", net, id)
		oneLeader(t, one, "storage-1", []string{"agent-1a", "agent-1b"}, other, time.Minute)
		one.waitViewEqualsTree(90*time.Second, "/")
		two.waitViewEqualsTree(90*time.Second, "/")
		leader, other = other, leader
	})

	t.Run("fusion-killed", func(t *testing.T) {
		// Fusion is SIGKILLed after a checkpoint and started again: it answers from the
		// checkpoint at once, and the agents reconnect by themselves.
		if _, err := one.ctlWith("demo-key", "checkpoint"); err != nil {
			t.Fatal(err)
		}
		id := c.container("fusion")
		docker(t, "kill", id)
		makeSubmissions(t, one.root, "while-down", 2)
		makeSubmissions(t, two.root, "while-down", 2)
		docker(t, "start", id)
		eventually(t, time.Minute, "Fusion answering again", func() error {
			if _, err := one.ctl("stats", "/"); err != nil {
				return fmt.Errorf("%w: %v", errNotYet, err)
			}
			return nil
		})
		// It answered from its checkpoint: each view was restored before the listener opened.
		if logs := docker(t, "logs", id); strings.Count(logs, "view restored from its checkpoint") < 3 {
			t.Fatalf("Fusion did not restore its three views from the checkpoint; its log:\n%s", logs)
		}
		oneLeader(t, one, "storage-1", []string{"agent-1a", "agent-1b"}, "", time.Minute)
		oneLeader(t, two, "storage-2", []string{"agent-2"}, "agent-2", time.Minute)
		one.waitViewEqualsTree(90*time.Second, "/")
		two.waitViewEqualsTree(90*time.Second, "/")
	})

	t.Run("leader-paused", func(t *testing.T) {
		// The leader is frozen past its session timeout: the follower leads; thawed, the old
		// leader is a follower.
		ss, err := sessionsOf(one, "storage-1")
		must(t, err)
		for id, role := range ss {
			if role == "ROLE_LEADER" {
				leader = id
			}
		}
		other = map[string]string{"agent-1a": "agent-1b", "agent-1b": "agent-1a"}[leader]
		id := c.container(leader)
		docker(t, "pause", id)
		paused := true
		defer func() {
			if paused {
				docker(t, "unpause", id)
			}
		}()
		makeSubmissions(t, one.root, "paused", 2)
		oneLeader(t, one, "storage-1", []string{other}, other, time.Minute)
		docker(t, "unpause", id)
		paused = false
		oneLeader(t, one, "storage-1", []string{"agent-1a", "agent-1b"}, other, time.Minute)
		one.waitViewEqualsTree(90*time.Second, "/")
		two.waitViewEqualsTree(90*time.Second, "/")
	})
}
