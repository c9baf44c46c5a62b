package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func write(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// goodConfig is a valid agent.yaml watching root and sending nowhere reachable (nothing in
// these tests needs a Fusion).
func goodConfig(root string) string {
	return "agent_id: a\nsources:\n  src: {root: " + root + "}\nsenders:\n  f: {address: 127.0.0.1:1, api_key: k}\npipes:\n  p: {source: src, sender: f}\n"
}

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	home := []string{"FUSTOR_HOME=" + dir} // no agent.yaml there
	bad := write(t, filepath.Join(dir, "bad.yaml"), "pipes:\n  p: {source: nope, sender: x}\n  q: {source: src, sender: f, batch_size: -1}\nsources:\n  src: {root: "+dir+"/missing}\nsenders:\n  f: {address: '', api_key: k}\n")
	good := write(t, filepath.Join(dir, "good.yaml"), goodConfig(dir))
	garbled := write(t, filepath.Join(dir, "garbled.yaml"), "pipes: [unclosed\n")
	unreadable := write(t, filepath.Join(dir, "secret.yaml"), goodConfig(dir))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	stale := write(t, filepath.Join(dir, "stale.pid"), "999999999\n")
	tests := []struct {
		name     string
		args     []string
		env      []string
		code     int
		messages []string
		root     bool // the case needs a non-root user (permissions)
	}{
		{"help", []string{"--help"}, nil, 0, []string{"Usage:", "fustor-agent reload", "--validate", "agent.pid"}, false},
		{"unknown flag", []string{"--nope"}, nil, 2, []string{"unknown flag"}, false},
		{"stray argument", []string{"run"}, nil, 2, []string{`unexpected argument "run"`}, false},
		{"missing config file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, 2, []string{"none.yaml does not exist"}, false},
		{"unreadable config file", []string{"--config", unreadable}, nil, 2, []string{"secret.yaml", "permission denied"}, true},
		{"garbled config file", []string{"--config", garbled}, nil, 2, []string{"garbled.yaml"}, false},
		{"invalid config from FUSTOR_CONFIG", nil, []string{"FUSTOR_CONFIG=" + bad}, 1, []string{`unknown source "nope"`}, false},
		{"bad metrics address", []string{"--config", good, "--metrics_listen", "nohostport"}, nil, 1, []string{`metrics_listen "nohostport"`}, false},
		{"bad log level", []string{"--config", good, "--log.level", "loud"}, nil, 2, []string{"log level"}, false},
		{"validate a valid config", []string{"--validate", "--config", good}, nil, 0, []string{"good.yaml is valid"}, false},
		{"validate prints every problem", []string{"--validate", "--config", bad}, nil, 1, []string{
			`unknown source "nope"`, `unknown sender "x"`, "batch_size", "not a readable directory", "address is required", "is invalid: 5 problem(s)"}, false},
		{"validate a missing config", []string{"--validate", "--config", filepath.Join(dir, "none.yaml")}, nil, 2, []string{"does not exist"}, false},
		{"reload without a running agent", []string{"reload", "--config", good}, nil, 1, []string{"no pid file", filepath.Join(dir, "good.pid")}, false},
		{"reload with a stale pid file", []string{"reload", "--config", good, "--pid_file", stale}, nil, 1, []string{"no agent runs as pid 999999999"}, false},
		{"reload an invalid config", []string{"reload", "--config", bad}, nil, 1, []string{"reload not sent", `unknown source "nope"`}, false},
		{"reload help", []string{"reload", "--help"}, nil, 0, []string{"Usage:"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && os.Geteuid() == 0 {
				t.Skip("root reads any file")
			}
			var stderr bytes.Buffer
			code := Main(tt.args, append(home, tt.env...), &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr.String())
			}
			for _, m := range tt.messages {
				if !strings.Contains(stderr.String(), m) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), m)
				}
			}
		})
	}
}

// TestPIDFileDefaults: the agent and `fustor-agent reload` agree where the pid file is.
func TestPIDFileDefaults(t *testing.T) {
	dir := t.TempDir()
	file := write(t, filepath.Join(dir, "agent.yaml"), "")
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"beside a config file", []string{"--config", file}, nil, filepath.Join(dir, "agent.pid")},
		{"in a config directory", []string{"--config", dir}, nil, filepath.Join(dir, "agent.pid")},
		{"from FUSTOR_CONFIG", nil, []string{"FUSTOR_CONFIG=" + file}, filepath.Join(dir, "agent.pid")},
		{"in FUSTOR_HOME without a config", nil, []string{"FUSTOR_HOME=" + filepath.Join(dir, "home")}, filepath.Join(dir, "home", "agent.pid")},
		{"as configured", []string{"--config", file, "--pid_file", "/run/x.pid"}, nil, "/run/x.pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, run := range []bool{true, false} {
				fs, ld := newFlags(&bytes.Buffer{}, run)
				ld.environ = tt.env
				if err := fs.Parse(tt.args); err != nil {
					t.Fatal(err)
				}
				cfg, err := ld.load()
				if err != nil {
					t.Fatal(err)
				}
				if got := ld.pidFile(cfg); got != tt.want {
					t.Errorf("run=%v: pid file %s, want %s", run, got, tt.want)
				}
			}
		})
	}
}

// TestReloadCommandReachesTheAgent runs the agent in this process: it writes its pid file at
// start, `fustor-agent reload` finds it and signals it (the agent catches SIGHUP, so this
// process lives on), and on SIGTERM it stops cleanly and removes the file.
func TestReloadCommandReachesTheAgent(t *testing.T) {
	dir := t.TempDir()
	cfgPath := write(t, filepath.Join(dir, "agent.yaml"), goodConfig(dir))
	pidPath := filepath.Join(dir, "agent.pid")
	env := []string{"FUSTOR_HOME=" + dir}
	var agentErr bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- Main([]string{"--config", cfgPath, "--log.level", "error"}, env, &agentErr) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		if pid, err := readPID(pidPath); err == nil && pid == os.Getpid() {
			break
		}
		select {
		case <-tick.C:
		case c := <-code:
			t.Fatalf("agent exited %d before writing its pid file: %s", c, agentErr.String())
		case <-deadline:
			t.Fatal("no pid file")
		}
	}
	var stderr bytes.Buffer
	if c := Main([]string{"reload", "--config", cfgPath}, env, &stderr); c != 0 || !strings.Contains(stderr.String(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("reload exit %d: %s", c, stderr.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if c := <-code; c != 0 {
		t.Fatalf("agent exit %d: %s", c, agentErr.String())
	}
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}
