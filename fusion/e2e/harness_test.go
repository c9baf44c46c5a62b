// Package e2e runs the real binaries — fustor-fusion, fustor-agent, fustorctl, the test tools
// (fustor-s3d) — and grpcurl against real directories on loopback. It lives in the fusion
// module for the test runner only: it builds the other modules' commands with `go build`, it
// imports none of them.
package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// builds holds the binaries built once per test binary: with the race detector for tests,
// without it for benchmarks.
var builds sync.Map // bool (race) → *build

type build struct {
	once sync.Once
	dir  string
	err  error
}

// repoRoot is the directory holding go.work.
func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("find go.work: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// binaries builds the three commands once per test binary.
func binaries(t testing.TB, race bool) string {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds and runs the real binaries")
	}
	v, _ := builds.LoadOrStore(race, &build{})
	bd := v.(*build)
	bd.once.Do(func() {
		root := repoRoot(t)
		bd.dir, bd.err = os.MkdirTemp("", "fustor-e2e-bin")
		if bd.err != nil {
			return
		}
		args := []string{"build", "-o", bd.dir + "/"}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./fusion/cmd/fustor-fusion", "./agent/cmd/fustor-agent", "./sdk/cmd/fustorctl")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			bd.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if bd.err != nil {
		t.Fatal(bd.err)
	}
	return bd.dir
}

// toolBuild is the test tools (fustor-s3d), built once per test binary without the race
// detector and static: they stand in for outside services, not for code under test.
var toolBuild build

// toolBinaries builds the test tools once and returns their directory.
func toolBinaries(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds and runs the real binaries")
	}
	toolBuild.once.Do(func() {
		toolBuild.dir, toolBuild.err = os.MkdirTemp("", "fustor-e2e-tools")
		if toolBuild.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", toolBuild.dir+"/", "./tools/cmd/fustor-s3d")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			toolBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if toolBuild.err != nil {
		t.Fatal(toolBuild.err)
	}
	return toolBuild.dir
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// raceEnv makes race-enabled binaries exit at once (the detector otherwise sleeps 1 s at exit)
// and fail loudly on the first race, so a race in a daemon fails the test.
func raceEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
}

// proc is a running binary whose output goes to a log file kept for failures.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(name), log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	// A state dir of its own: never the user's ~/.fustor, never another test's checkpoints
	// (a test that restarts Fusion names server.state_dir in its config).
	p.cmd.Env = append(raceEnv(), "FUSTOR_HOME="+t.TempDir())
	p.cmd.Stdout = lockedWriter{p.mu, p.log}
	p.cmd.Stderr = lockedWriter{p.mu, p.log}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t, syscall.SIGTERM)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("---- %s log ----\n%s", p.name, p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

// stop signals the process and waits for it; SIGTERM must end it cleanly within 15 s.
func (p *proc) stop(t testing.TB, sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 15s of %v", p.name, sig)
	}
	if sig == syscall.SIGTERM && p.cmd.ProcessState != nil && !p.cmd.ProcessState.Success() {
		t.Errorf("%s exited with %v after SIGTERM", p.name, p.cmd.ProcessState)
	}
}

// cluster is a Fusion and an agent on one directory.
type cluster struct {
	t      testing.TB
	bin    string
	addr   string
	root   string
	cfgDir string
	fusion *proc
	agent  *proc
	// realtime false runs the agent without watching (degraded).
	realtime bool
	// agentAddr is where the agent sends (Fusion itself, or a proxy in front of it).
	agentAddr string
	// maxWatches is the agent's watch budget (0 = none); auditEvery overrides auditInterval.
	maxWatches int
	auditEvery string
	// sessionTimeout overrides the pipe's 3 s session timeout.
	sessionTimeout string
	// debugListen, when set, is Fusion's server.debug_listen.
	debugListen string
	// storage, when set, is the directory the view must equal (viewEqualsTree) when root is a
	// client mount of it; empty means root itself.
	storage string
	// stateDir and checkpointEvery, when set, are Fusion's server.state_dir and
	// server.checkpoint_interval (a test that restarts Fusion keeps its checkpoints there).
	stateDir, checkpointEvery string
	// auditRollingShare and auditDeepEvery, when set, are the agent pipe's audit_rolling_share
	// and audit_deep_every (empty = the agent's defaults).
	auditRollingShare, auditDeepEvery string
	// view and member are what fustorctl queries (default the view "files"; member only for
	// a forest's); key is its query key (default "query-key").
	view, member, key string
	// serverTLS is Fusion's server.tls block as one flow map ("{cert_file: …}"; empty:
	// plaintext), senderTLS the agent sender's tls flow map, ctlFlags fustorctl's TLS flags.
	serverTLS, senderTLS string
	ctlFlags             []string
}

func newCluster(t testing.TB, root string) *cluster {
	return newClusterWith(t, root, binaries(t, true))
}

// auditInterval is short so every e2e run also exercises audits against a live tree.
const auditInterval = "1s"

func newClusterWith(t testing.TB, root, bin string) *cluster {
	return newClusterOpts(t, root, bin, true)
}

func newClusterOpts(t testing.TB, root, bin string, realtime bool) *cluster {
	c := &cluster{t: t, bin: bin, addr: freePort(t), root: root, cfgDir: t.TempDir(), realtime: realtime}
	c.agentAddr = c.addr
	c.writeConfigs()
	return c
}

// writeConfigs writes fusion.yaml and agent.yaml for the cluster's current settings.
func (c *cluster) writeConfigs() {
	t := c.t
	fusionCfg := fmt.Sprintf(`server:
  listen: %s
  admin_keys: [admin-key]
  shutdown_timeout: 2s
  debug_listen: "%s"%s%s
log: {level: debug}
receivers:
  default:
    api_keys:
      - {key: ingest-key, pipe: main}
pipes:
  main: {receiver: default, views: [files], session_timeout: %s}
views:
  files: {driver: fs, live: true, query_keys: [query-key]}
`, c.addr, c.debugListen, c.stateKeys(), c.serverTLSKey(), cmp.Or(c.sessionTimeout, "3s"))
	agentCfg := fmt.Sprintf(`agent_id: e2e-agent
log: {level: debug}
sources:
  data: {root: %s, modify_throttle: 200ms, disable_realtime: %v, max_watches: %d}
senders:
  fusion: {address: %s, api_key: ingest-key%s}
pipes:
  main: {source: data, sender: fusion, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: %s%s}
`, c.root, !c.realtime, c.maxWatches, c.agentAddr, c.senderTLSKey(), cmp.Or(c.auditEvery, auditInterval), c.auditKeys())
	must(t, os.WriteFile(filepath.Join(c.cfgDir, "fusion.yaml"), []byte(fusionCfg), 0o644))
	must(t, os.WriteFile(filepath.Join(c.cfgDir, "agent.yaml"), []byte(agentCfg), 0o644))
}

// stateKeys is Fusion's optional checkpoint settings, as lines of the server block.
func (c *cluster) stateKeys() string {
	var b strings.Builder
	if c.stateDir != "" {
		fmt.Fprintf(&b, "\n  state_dir: %s", c.stateDir)
	}
	if c.checkpointEvery != "" {
		fmt.Fprintf(&b, "\n  checkpoint_interval: %s", c.checkpointEvery)
	}
	return b.String()
}

// serverTLSKey is Fusion's optional server.tls, as a line of the server block.
func (c *cluster) serverTLSKey() string {
	if c.serverTLS == "" {
		return ""
	}
	return "\n  tls: " + c.serverTLS
}

// senderTLSKey is the agent sender's optional tls, as a flow-map entry.
func (c *cluster) senderTLSKey() string {
	if c.senderTLS == "" {
		return ""
	}
	return ", tls: " + c.senderTLS
}

// auditKeys is the optional audit settings of the agent's pipe, as flow-map entries.
func (c *cluster) auditKeys() string {
	var b strings.Builder
	if c.auditRollingShare != "" {
		fmt.Fprintf(&b, ", audit_rolling_share: %s", c.auditRollingShare)
	}
	if c.auditDeepEvery != "" {
		fmt.Fprintf(&b, ", audit_deep_every: %s", c.auditDeepEvery)
	}
	return b.String()
}

func (c *cluster) startFusion() {
	c.fusion = startProc(c.t, filepath.Join(c.bin, "fustor-fusion"), "--config", filepath.Join(c.cfgDir, "fusion.yaml"))
}

func (c *cluster) startAgent() {
	c.agent = c.startAgentAs("e2e-agent")
}

// startAgentAs starts another agent on the same tree with its own agent id.
func (c *cluster) startAgentAs(id string) *proc {
	return startProc(c.t, filepath.Join(c.bin, "fustor-agent"), "--config", filepath.Join(c.cfgDir, "agent.yaml"), "--agent_id", id)
}

// ctl runs fustorctl --json with the query key and decodes its one JSON document.
func (c *cluster) ctl(args ...string) (map[string]any, error) {
	return c.ctlWith(cmp.Or(c.key, "query-key"), args...)
}

func (c *cluster) ctlWith(key string, args ...string) (map[string]any, error) {
	full := append([]string{"--server", c.addr, "--key", key, "--view", cmp.Or(c.view, "files"), "--json"}, c.ctlFlags...)
	if c.member != "" {
		full = append(full, "--member", c.member)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "fustorctl"), full...)
	cmd.Env = raceEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("fustorctl %v: %v: %s", args, err, stderr.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("fustorctl %v printed no single JSON document: %v\n%s", args, err, stdout.String())
	}
	return doc, nil
}

var errNotYet = errors.New("not yet")

// eventually polls cond until it holds or the deadline passes, and returns how long it took.
func eventually(t testing.TB, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var err error
	for {
		if err = cond(); err == nil {
			took := time.Since(start)
			if took > within {
				t.Fatalf("%s: took %v, more than %v", what, took, within)
			}
			return took
		}
		if testing.Verbose() {
			t.Logf("%s: %v after %v", what, err, time.Since(start))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, within, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// num reads a JSON number that protojson may print as a string (64-bit integers).
func num(v any) uint64 {
	switch x := v.(type) {
	case string:
		var n uint64
		fmt.Sscan(x, &n)
		return n
	case float64:
		return uint64(x)
	}
	return 0
}

func bytesContains(b []byte, s string) bool { return strings.Contains(string(b), s) }
