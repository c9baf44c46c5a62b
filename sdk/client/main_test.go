package client_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
)

// addr is the demo Fusion the examples and tests query (view "demo", key "demo-key"), fed
// by an agent watching dataDir.
var (
	addr    string
	dataDir string
)

// mtime is every demo file's modification time: fixed, so the examples can print it, and
// old, so no file is suspect (still being written).
var mtime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// demoFiles is the tree the agent watches: a few files for the examples, and /many with
// enough entries to page through.
func demoFiles() map[string]string {
	files := map[string]string{
		"upload/run-0001/data_0001.dat": "sample 1\n",
		"upload/run-0001/data_0002.dat": "sample 2\n",
		"upload/run-0002/data_0001.dat": "partial\n",
		"docs/README.txt":               "Files here are watched by the demo agent.\n",
	}
	for i := range 25 {
		files[fmt.Sprintf("many/f%02d.txt", i)] = "x"
	}
	return files
}

// overlay is laid over the demo configuration: a second storage ("second", its own pipe and
// agent), a forest view "all" of both (its members are the pipes), and a view "other" of
// another key, which may not read "demo" (PermissionDenied), and a rows view "subs" of schema
// submissions (its pipe's sessions use rows-ingest-key; rows_test.go pushes them), read with
// rows-key.
const overlay = `receivers:
  default:
    api_keys:
      - {key: demo-ingest-key, pipe: demo}
      - {key: second-ingest-key, pipe: second}
      - {key: rows-ingest-key, pipe: subs}
pipes:
  demo: {receiver: default, views: [demo, all]}
  second: {receiver: default, views: [all]}
  subs: {receiver: default, schema: submissions, views: [subs]}
views:
  all: {driver: forest-fs, schema: fs, live: true, query_keys: [demo-key], hot_threshold: 1s}
  other: {driver: fs, schema: fs, live: true, query_keys: [other-key]}
  subs: {driver: rows, schema: submissions, schema_version: 1, query_keys: [rows-key]}
`

// secondFiles is the second storage's tree: /many holds other names than the demo's.
func secondFiles() map[string]string {
	files := map[string]string{}
	for i := range 15 {
		files[fmt.Sprintf("many/g%02d.txt", i)] = "yy"
	}
	return files
}

// TestMain builds fustor-fusion and fustor-agent from the workspace, runs Fusion's demo
// configuration on a free port and an agent on a temporary directory, and waits until the
// view holds every file: the examples need a real Fusion.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("sdk/client: -short: skipped (the examples and tests need the fusion and agent binaries)")
		return 0
	}
	tmp, err := os.MkdirTemp("", "fustor-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	stop, err := startDemo(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start demo:", err)
		stop(true)
		return 1
	}
	code := m.Run()
	stop(code != 0)
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return code
}

func startDemo(tmp string) (stop func(showLogs bool), err error) {
	var procs []*exec.Cmd
	var logs []string
	stop = func(showLogs bool) {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = procs[i].Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = procs[i].Process.Kill()
				<-done
			}
		}
		if showLogs {
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				fmt.Fprintf(os.Stderr, "---- %s ----\n%s\n", filepath.Base(l), b)
			}
		}
	}
	bin := filepath.Join(tmp, "bin")
	if err := build(bin); err != nil {
		return stop, err
	}
	dataDir = filepath.Join(tmp, "data")
	secondDir := filepath.Join(tmp, "second")
	if err := writeTree(dataDir, demoFiles()); err != nil {
		return stop, err
	}
	if err := writeTree(secondDir, secondFiles()); err != nil {
		return stop, err
	}
	demoCount := len(demoFiles())
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		if err := benchTree(dataDir); err != nil {
			return stop, err
		}
		demoCount += benchFiles
	}
	if addr, err = freePort(); err != nil {
		return stop, err
	}
	start := func(name, label string, env []string, args ...string) error {
		logPath := filepath.Join(tmp, label+".log")
		f, err := os.Create(logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		home := filepath.Join(tmp, label+"-home")
		if err := os.MkdirAll(home, 0o755); err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(bin, name), args...)
		// *os.File outputs: no copying goroutines for goleak to find.
		cmd.Stdout, cmd.Stderr = f, f
		cmd.Env = append(os.Environ(), append(env, "FUSTOR_HOME="+home)...)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		procs, logs = append(procs, cmd), append(logs, logPath)
		return nil
	}
	// The demo, the overlay on top, and a hot_threshold of 1s: a file the tests write stops
	// being suspect within a second or two.
	cfg := filepath.Join(tmp, "fusion.yaml")
	if err := os.WriteFile(cfg, []byte(overlay), 0o644); err != nil {
		return stop, err
	}
	if err := start("fustor-fusion", "fusion", []string{"FUSTOR_VIEWS__DEMO__HOT_THRESHOLD=1s"}, "--demo", "--config", cfg, "--server.listen", addr); err != nil {
		return stop, err
	}
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		return stop, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := poll(ctx, func() error { _, err := c.ListViews(ctx); return err }); err != nil {
		return stop, fmt.Errorf("fusion does not answer: %w", err)
	}
	// The agent's demo configuration sends to 127.0.0.1:7070; the address is overridden as
	// the compose demo's agents set theirs.
	if err := start("fustor-agent", "agent", []string{"FUSTOR_SENDERS__FUSION__ADDRESS=" + addr}, "--demo", dataDir); err != nil {
		return stop, err
	}
	if err := start("fustor-agent", "second-agent", []string{"FUSTOR_SENDERS__FUSION__ADDRESS=" + addr,
		"FUSTOR_SENDERS__FUSION__API_KEY=second-ingest-key", "FUSTOR_AGENT_ID=second-agent"}, "--demo", secondDir); err != nil {
		return stop, err
	}
	for _, v := range []struct {
		view, member string
		files        int
	}{{"demo", "", demoCount}, {"all", "demo", demoCount}, {"all", "second", len(secondFiles())}} {
		err = poll(ctx, func() error {
			st, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: v.view, Member: v.member, Path: "/"})
			if err != nil {
				return err
			}
			if st.GetFileCount() != uint64(v.files) || st.GetSuspectCount() != 0 {
				return fmt.Errorf("holds %d files (%d suspect); want %d", st.GetFileCount(), st.GetSuspectCount(), v.files)
			}
			return nil
		})
		if err != nil {
			return stop, fmt.Errorf("view %s (member %q) is not ready: %w", v.view, v.member, err)
		}
	}
	return stop, nil
}

// writeTree writes files under root, directories included with the fixed mtime (deepest
// first: creating a child changed its parent's mtime, a Chtimes does not).
func writeTree(root string, files map[string]string) error {
	for name, body := range files {
		if err := writeFile(filepath.Join(root, name), body); err != nil {
			return err
		}
	}
	var dirs []string
	if err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	}); err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], mtime, mtime); err != nil {
			return err
		}
	}
	return nil
}

// build builds the daemons from the workspace root by exec (sdk imports neither).
func build(bin string) error {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	work := strings.TrimSpace(string(out))
	if err != nil || work == "" || work == "off" {
		return fmt.Errorf("find go.work (the tests build fusion and agent from the workspace): %v", err)
	}
	cmd := exec.Command("go", "build", "-o", bin+"/", "./fusion/cmd/fustor-fusion", "./agent/cmd/fustor-agent")
	cmd.Dir = filepath.Dir(work)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeFile writes a file of the demo tree with the fixed mtime.
func writeFile(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Chtimes(path, mtime, mtime)
}

// poll calls f every 50 ms until it succeeds or ctx ends (then f's last error).
func poll(ctx context.Context, f func() error) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
