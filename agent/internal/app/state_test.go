package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	"github.com/fustor/fustor/agent/internal/state"
)

// stateTree makes a tree of 1 + fan + fan*fan directories, two files in each leaf, and returns
// how many directories it has.
func stateTree(t *testing.T, root string, fan int) int {
	t.Helper()
	dirs := 1
	for i := range fan {
		for j := range fan {
			d := filepath.Join(root, fmt.Sprintf("d%02d", i), fmt.Sprintf("e%02d", j))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for k := range 2 {
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.dat", k)), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dirs++
		}
		dirs++
	}
	return dirs
}

// stateConfig is an agent on root feeding addr, auditing every 300 ms in pure true silence
// (no rolling share, no deep audits), so each audit's listed directories are exactly the
// changed ones; save < 0 keeps no state.
func stateConfig(addr, root, stateDir string, save time.Duration) config.Config {
	cfg := config.Default()
	cfg.AgentID = "test-agent"
	cfg.StateDir = stateDir
	cfg.Sources["src"] = config.Source{Driver: "fs", Root: root, DisableRealtime: true}
	cfg.Senders["fusion"] = config.Sender{Address: addr, APIKey: "k"}
	share, deep := 0.0, 0
	cfg.Pipes["p"] = config.Pipe{Source: "src", Sender: "fusion", AuditInterval: 300 * time.Millisecond,
		AuditRollingShare: &share, AuditDeepEvery: &deep, AuditStateSaveInterval: save,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond}
	return cfg
}

// runUntilAudit runs an agent until its pipe completed its first audit, stops it gracefully
// and returns the pipe's status then.
func runUntilAudit(t *testing.T, cfg config.Config) pipe.Status {
	t.Helper()
	a, err := New(nil, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	p := a.Pipe("p")
	eventually(t, "the first audit", func() bool { return p.Status().Audits >= 1 })
	st := p.Status()
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return st
}

func listedDirs(st pipe.Status) uint64 { return st.LastAudit.Dirs - st.LastAudit.Silent }

// TestRestartedAgentAuditsInTrueSilence: an agent restarted on a tree whose directories did not
// change runs a first audit that lists none of them (its cache comes from state_dir); one
// restarted on a tree changed while it was down lists exactly the changed directories; and
// without the state (save < 0) the first audit after every restart lists the whole tree.
func TestRestartedAgentAuditsInTrueSilence(t *testing.T) {
	_, addr := startFakeFusion(t)
	root, stateDir := t.TempDir(), t.TempDir()
	dirs := uint64(stateTree(t, root, 12))
	cfg := stateConfig(addr, root, stateDir, 0)

	first := runUntilAudit(t, cfg)
	if listedDirs(first) != dirs || first.AuditStateRestores != 0 {
		t.Fatalf("first run: audit listed %d of %d directories (restores %d); want all", listedDirs(first), dirs, first.AuditStateRestores)
	}
	if _, err := os.Stat(state.File(stateDir, "p")); err != nil {
		t.Fatalf("no state saved: %v", err)
	}

	again := runUntilAudit(t, cfg)
	t.Logf("restart on an unchanged tree: first audit listed %d of %d directories (%d silent)", listedDirs(again), dirs, again.LastAudit.Silent)
	if listedDirs(again) != 0 || again.LastAudit.Silent != dirs || again.AuditStateRestores != 1 {
		t.Fatalf("restart on an unchanged tree: listed %d, silent %d of %d (restores %d); want 0 listed", listedDirs(again),
			again.LastAudit.Silent, dirs, again.AuditStateRestores)
	}

	// Changed while the agent is down: a file added to two directories, a directory created
	// in a third (which changes it, and is new).
	for _, p := range []string{"d00/e00/new.dat", "d05/new.dat"} {
		if err := os.WriteFile(filepath.Join(root, p), []byte("y"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "d07", "e03", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed := runUntilAudit(t, cfg)
	t.Logf("restart on a changed tree: first audit listed %d of %d directories", listedDirs(changed), dirs+1)
	if listedDirs(changed) != 4 || changed.LastAudit.Dirs != dirs+1 {
		t.Fatalf("restart on a changed tree: listed %d of %d; want the 4 changed (d00/e00, d05, d07/e03, d07/e03/sub)",
			listedDirs(changed), changed.LastAudit.Dirs)
	}

	// Without the state, every restart's first audit is a full one.
	off := stateConfig(addr, root, t.TempDir(), -1)
	runUntilAudit(t, off)
	full := runUntilAudit(t, off)
	t.Logf("restart without state: first audit listed %d of %d directories", listedDirs(full), dirs+1)
	if listedDirs(full) != dirs+1 {
		t.Fatalf("restart without state: listed %d of %d; want all", listedDirs(full), dirs+1)
	}
	if names, _ := filepath.Glob(filepath.Join(off.StateDir, "*")); len(names) != 0 {
		t.Fatalf("state saved with audit_state_save_interval < 0: %v", names)
	}
}

// TestDamagedStateIsRefused: a state file that cannot be trusted is moved aside, counted in
// fustor_agent_pipe_audit_state_refused_total, and the agent audits in full: it never fails.
func TestDamagedStateIsRefused(t *testing.T) {
	_, addr := startFakeFusion(t)
	root, stateDir := t.TempDir(), t.TempDir()
	dirs := uint64(stateTree(t, root, 3))
	cfg := stateConfig(addr, root, stateDir, 0)
	runUntilAudit(t, cfg)
	path := state.File(stateDir, "p")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	cfg.MetricsListen = "127.0.0.1:0"
	a, err := New(nil, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	p := a.Pipe("p")
	eventually(t, "the first audit", func() bool { return p.Status().Audits >= 1 })
	if st := p.Status(); listedDirs(st) != dirs || st.AuditStateRefused != 1 || st.AuditStateRestores != 0 {
		t.Fatalf("after a refused state: listed %d of %d, refused %d, restores %d; want a full audit", listedDirs(st), dirs,
			st.AuditStateRefused, st.AuditStateRestores)
	}
	aside, _ := filepath.Glob(path + ".refused-*")
	if len(aside) != 1 {
		t.Fatalf("refused file not moved aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); len(b) != len(good)/2 {
		t.Fatalf("the refused file was changed: %d bytes", len(b))
	}
	c := &http.Client{Timeout: 5 * time.Second}
	waitMetrics(t, c, "http://"+a.MetricsAddr().String()+"/metrics", map[string]float64{
		`fustor_agent_pipe_audit_state_refused_total{pipe="p"}`:     1,
		`fustor_agent_pipe_last_audit_dirs{kind="listed",pipe="p"}`: float64(dirs),
		`fustor_agent_pipe_audit_state_saves_total{pipe="p"}`:       1,
	})
}
