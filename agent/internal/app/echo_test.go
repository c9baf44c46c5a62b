package app

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fustor/fustor/agent/internal/config"
)

// TestEchoSenderSmallTree runs an agent whose fs source feeds the echo sender into a file and
// checks the output line by line: the session, the snapshot markers, one batch line and one
// row per entry with its re-assembled path, size and mtime.
func TestEchoSenderSmallTree(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a", "one.txt"), []byte("1"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a", "b", "two.txt"), []byte("22"), 0o644))
	must(os.WriteFile(filepath.Join(root, "top.txt"), []byte("333"), 0o644))
	// Directory mtimes last: writing files into them changed theirs.
	old := time.Unix(1_700_000_000, 0)
	for _, p := range []string{"a/b/two.txt", "a/one.txt", "top.txt", "a/b", "a"} {
		must(os.Chtimes(filepath.Join(root, p), old, old))
	}
	out := filepath.Join(t.TempDir(), "echo.jsonl")

	cfg := config.Default()
	cfg.AgentID = "echo-agent"
	cfg.Sources["tree"] = config.Source{Driver: "fs", Root: root, DisableRealtime: true}
	cfg.Senders["echo"] = config.Sender{Driver: "echo", Path: out}
	cfg.Pipes["p"] = config.Pipe{Source: "tree", Sender: "echo", AuditInterval: time.Hour, TimeoutHint: time.Hour}
	a, err := New(zaptest.NewLogger(t), cfg, Options{})
	must(err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	var lines []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines = readLines(t, out)
		if len(lines) > 0 && lines[len(lines)-1]["event"] == "snapshot_end" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot_end after 20s; got %d lines", len(lines))
		}
		time.Sleep(20 * time.Millisecond)
	}

	mt := func(rel string) float64 {
		st, err := os.Stat(filepath.Join(root, rel))
		must(err)
		return float64(st.ModTime().UnixNano())
	}
	want := []map[string]any{
		{"event": "create_session", "session": "echo-1", "agent_id": "echo-agent", "task_id": "p", "schema": "fs", "schema_version": 1.0},
		{"event": "snapshot_start", "session": "echo-1", "seq": 2.0},
		{"event": "batch", "session": "echo-1", "seq": 3.0, "origin": "snapshot", "schema": "fs", "rows": 6.0},
		{"event": "row", "path": "/", "dir": true},
		{"event": "row", "path": "/a", "dir": true, "mtime_ns": mt("a")},
		{"event": "row", "path": "/top.txt", "size": 3.0, "mtime_ns": mt("top.txt")},
		{"event": "row", "path": "/a/b", "dir": true, "mtime_ns": mt("a/b")},
		{"event": "row", "path": "/a/one.txt", "size": 1.0, "mtime_ns": mt("a/one.txt")},
		{"event": "row", "path": "/a/b/two.txt", "size": 2.0, "mtime_ns": mt("a/b/two.txt")},
		{"event": "snapshot_end", "session": "echo-1", "rows": 6.0},
	}
	// Heartbeats may come at any point; the markers and the batch line are in this order, the
	// rows in walk order (parents before children, siblings as listed).
	var got []map[string]any
	for _, l := range lines {
		if l["event"] != "heartbeat" {
			got = append(got, l)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%v", len(got), len(want), got)
	}
	wantRow := map[string]map[string]any{}
	for _, w := range want {
		if w["event"] == "row" {
			wantRow[w["path"].(string)] = w
		}
	}
	seen := map[string]bool{}
	for i, w := range want {
		g := got[i]
		if w["event"] == "row" {
			p, _ := g["path"].(string)
			if w = wantRow[p]; w == nil || seen[p] {
				t.Errorf("line %d: unexpected or repeated row %v", i+1, g)
				continue
			}
			seen[p] = true
			if par := filepath.Dir(p); p != "/" && !seen[par] {
				t.Errorf("line %d: %s before its parent %s", i+1, p, par)
			}
			if g["session"] != "echo-1" || g["seq"] != 3.0 {
				t.Errorf("line %d: row of session %v seq %v, want echo-1 seq 3", i+1, g["session"], g["seq"])
			}
			if _, ok := g["index"].(float64); !ok {
				t.Errorf("line %d: no index: %v", i+1, g)
			}
			if w["dir"] != true && g["size"] != w["size"] {
				t.Errorf("line %d: %s size %v, want %v", i+1, p, g["size"], w["size"])
			}
		}
		for k, v := range w {
			if k == "size" || (k == "mtime_ns" && w["path"] == "/") {
				continue
			}
			if g[k] != v {
				t.Errorf("line %d: %s = %v, want %v (line %v)", i+1, k, g[k], v, g)
			}
		}
	}
}

// readLines decodes the JSON lines of path written so far (none if it does not exist yet); a
// last line still being written is left out.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			break // a partial last line
		}
		out = append(out, m)
	}
	return out
}
