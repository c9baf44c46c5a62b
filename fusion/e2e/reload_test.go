package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reloadConfig is a Fusion configuration for the reload test: view "files" fed by pipe main
// (the agent's), plus the views and pipes extra decides.
func reloadConfig(addr, extra string, hot string, queryKeys string) string {
	return fmt.Sprintf(`server: {listen: %s, admin_keys: [admin-key], shutdown_timeout: 2s}
log: {level: debug}
receivers:
  default:
    api_keys:
      - {key: ingest-key, pipe: main}
      - {key: other-key, pipe: other}
pipes:
  main: {receiver: default, views: [files], session_timeout: 3s}
  other: {receiver: default, views: [%s], session_timeout: 3s}
views:
  files: {driver: fs, live: true, query_keys: [%s], hot_threshold: %s}
  %s: {driver: fs, live: true, query_keys: [query-key]}
`, addr, extra, queryKeys, hot, extra)
}

// TestReloadWithRealBinaries: SIGHUP and `fustor-fusion reload` apply a new configuration —
// a view and a pipe replaced by others, a query key added, a view's hot threshold changed —
// while the untouched view keeps its tree, its session and its snapshot; an invalid
// configuration is refused and the old one keeps serving.
func TestReloadWithRealBinaries(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	cfgPath := filepath.Join(c.cfgDir, "fusion.yaml")
	must(t, os.WriteFile(cfgPath, []byte(reloadConfig(c.addr, "gone", "30s", "query-key")), 0o644))
	c.startFusion()
	c.startAgent()
	c.waitViewEqualsTree(60*time.Second, "/")
	before, err := c.sessionOf("e2e-agent")
	must(t, err)

	// SIGHUP: view and pipe "gone" go (the pipe other now feeds "added"), query key added, hot
	// threshold changed.
	must(t, os.WriteFile(cfgPath, []byte(reloadConfig(c.addr, "added", "10s", "query-key, second-key")), 0o644))
	must(t, c.fusion.cmd.Process.Signal(syscall.SIGHUP))
	eventually(t, 20*time.Second, "the reload applied", func() error {
		if _, err := c.ctlWith("second-key", "stats", "/"); err != nil {
			return err
		}
		views, err := c.ctlWith("query-key", "views")
		if err != nil {
			return err
		}
		if s := fmt.Sprint(views["views"]); !strings.Contains(s, "added") || strings.Contains(s, "gone") {
			return fmt.Errorf("views %s", s)
		}
		return nil
	})
	for _, want := range []string{"view removed: gone", "view added: added", "pipe changed: other", "view changed: files (query keys, hot_threshold 30s -> 10s)"} {
		if !strings.Contains(c.fusion.text(), want) {
			t.Errorf("fusion log lacks %q", want)
		}
	}
	after, err := c.sessionOf("e2e-agent")
	must(t, err)
	if after.ID != before.ID {
		t.Fatalf("the untouched pipe's session changed: %s -> %s", before.ID, after.ID)
	}
	c.waitViewEqualsTree(10*time.Second, "/")
	if after.Counters["snapshots"] != before.Counters["snapshots"] {
		t.Fatalf("the untouched view was snapshotted again (%d snapshots, %d before)", after.Counters["snapshots"], before.Counters["snapshots"])
	}

	// An invalid configuration through `fustor-fusion reload`: exit 1, every error said,
	// nothing changed.
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(reloadConfig(c.addr, "added", "10s", "query-key"), "views: [files]", "views: [nope]", 1)), 0o644))
	out, err := exec.Command(filepath.Join(c.bin, "fustor-fusion"), "reload", "--config", cfgPath).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !bytes.Contains(out, []byte(`unknown view \"nope\"`)) && !bytes.Contains(out, []byte(`unknown view "nope"`)) {
		t.Fatalf("invalid reload: %v\n%s", err, out)
	}
	if _, err := c.ctlWith("second-key", "stats", "/"); err != nil {
		t.Fatalf("the old configuration stopped serving after a refused reload: %v", err)
	}
	c.waitViewEqualsTree(10*time.Second, "/")
	if after, err := c.sessionOf("e2e-agent"); err != nil || after.ID != before.ID {
		t.Fatalf("session after the refused reload: %v %v", after, err)
	}
	c.requireVerifyClean("/")
}

// TestHealthWithGrpcurl: grpc.health says NOT_SERVING for a view until its leader's snapshot
// is applied, SERVING then, and NOT_SERVING for the server during a graceful shutdown.
func TestHealthWithGrpcurl(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	check := func(svc string) string {
		out, _ := grpcurl(t, "-plaintext", "-d", fmt.Sprintf(`{"service":%q}`, svc), c.addr, "grpc.health.v1.Health/Check")
		return out
	}
	eventually(t, 20*time.Second, "server SERVING, view NOT_SERVING before an agent", func() error {
		if s, v := check(""), check("fustor.v1.ViewService/files"); !strings.Contains(s, `"SERVING"`) || !strings.Contains(v, "NOT_SERVING") {
			return fmt.Errorf("server %q, view %q", s, v)
		}
		return nil
	})
	c.startAgent()
	c.waitViewEqualsTree(60*time.Second, "/")
	eventually(t, 20*time.Second, "view SERVING", func() error {
		if v := check("fustor.v1.ViewService/files"); !strings.Contains(v, `"SERVING"`) || strings.Contains(v, "NOT_SERVING") {
			return fmt.Errorf("view %q", v)
		}
		return nil
	})
	// A watcher opened before the shutdown sees the server go NOT_SERVING while the agent's
	// stream keeps the graceful stop waiting.
	watch := exec.Command(grpcurlPath(t), "-plaintext", "-d", `{"service":""}`, c.addr, "grpc.health.v1.Health/Watch")
	stdout, err := watch.StdoutPipe()
	must(t, err)
	must(t, watch.Start())
	defer func() { _ = watch.Process.Kill(); _ = watch.Wait() }()
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			seen = append(seen, sc.Text())
			mu.Unlock()
		}
	}()
	lines := func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(seen, "\n") }
	eventually(t, 10*time.Second, "the watcher sees SERVING", func() error {
		if !strings.Contains(lines(), `"SERVING"`) {
			return errNotYet
		}
		return nil
	})
	must(t, c.fusion.cmd.Process.Signal(syscall.SIGTERM))
	eventually(t, 10*time.Second, "the watcher sees NOT_SERVING during the shutdown", func() error {
		if !strings.Contains(lines(), "NOT_SERVING") {
			return fmt.Errorf("watch output %q", lines())
		}
		return nil
	})
	<-c.fusion.done
}

// text returns what the process logged so far.
func (p *proc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}
