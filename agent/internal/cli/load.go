package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/fustor/fustor/agent/internal/config"
	sdkconfig "github.com/fustor/fustor/sdk/config"
)

// loader loads the configuration from the command line's sources, as often as asked: at start,
// and again on each SIGHUP, so a reload reads exactly what a restart would.
type loader struct {
	fs      *pflag.FlagSet
	cfgPath *string
	demo    *string // nil for the reload command
	environ []string
}

func (l *loader) getenv(key string) string {
	v := ""
	for _, kv := range l.environ {
		if x, ok := strings.CutPrefix(kv, key+"="); ok {
			v = x
		}
	}
	return v
}

func (l *loader) demoDir() string {
	if l.demo == nil {
		return ""
	}
	return *l.demo
}

// path is the configuration file or directory read, "" when none is: --config, else
// $FUSTOR_CONFIG, else $FUSTOR_HOME/agent.yaml if it exists (not for the demo).
func (l *loader) path() string {
	if *l.cfgPath != "" {
		return *l.cfgPath
	}
	if p := l.getenv(sdkconfig.EnvPrefix + "CONFIG"); p != "" {
		return p
	}
	if l.demoDir() != "" {
		return ""
	}
	p := filepath.Join(sdkconfig.Home(l.getenv), "agent.yaml")
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p
	}
	return ""
}

// describe names the configuration read, for messages ("" when built in).
func (l *loader) describe() string {
	if p := l.path(); p != "" {
		return p + " "
	}
	return ""
}

// load reads the configuration; it does not validate it (New, Reload and --validate do).
func (l *loader) load() (config.Config, error) {
	path := l.path()
	if err := readable(path); err != nil {
		return config.Config{}, err
	}
	cfg := config.Default()
	if d := l.demoDir(); d != "" {
		cfg = config.Demo(d)
	}
	// The path is resolved here, so the loader reads just that (the home file included).
	err := sdkconfig.Load(&cfg, sdkconfig.Source{Path: path, Environ: func() []string { return l.environ }, Flags: l.fs})
	if err != nil {
		return config.Config{}, err
	}
	// Top-level keys' flags are mapped by hand (config flags contain a dot).
	for name, dst := range map[string]*string{"agent_id": &cfg.AgentID, "debug_listen": &cfg.DebugListen,
		"metrics_listen": &cfg.MetricsListen, "pid_file": &cfg.PIDFile} {
		if f := l.fs.Lookup(name); f != nil && f.Changed {
			*dst = f.Value.String()
		}
	}
	return cfg, nil
}

// readable says clearly why a configuration path cannot be read, before the loader's own,
// more technical, error would.
func readable(path string) error {
	if path == "" {
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read config: %s does not exist", path)
	case err != nil:
		return fmt.Errorf("read config: %w", err)
	case st.IsDir():
		if _, err := os.ReadDir(path); err != nil {
			return fmt.Errorf("read config directory %s: %w", path, err)
		}
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config file %s: %w", path, err)
	}
	return f.Close()
}

// pidFile is where the running agent's pid is: pid_file, else beside the configuration
// (agent.yaml -> agent.pid; a directory -> DIR/agent.pid), else $FUSTOR_HOME/agent.pid. The
// agent and the reload command compute it from the same flags and environment.
func (l *loader) pidFile(cfg config.Config) string {
	p := l.pidPath(cfg)
	// Absolute, so the log names it unambiguously.
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func (l *loader) pidPath(cfg config.Config) string {
	if cfg.PIDFile != "" {
		return cfg.PIDFile
	}
	if p := l.path(); p != "" {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return filepath.Join(p, "agent.pid")
		}
		return strings.TrimSuffix(p, filepath.Ext(p)) + ".pid"
	}
	return filepath.Join(sdkconfig.Home(l.getenv), "agent.pid")
}

// writePIDFile writes pid to path (whole, through a rename, so a reader never sees half) and
// returns what removes it again — only while it still holds this pid, so an agent started
// since on the same file keeps its own.
func writePIDFile(path string, pid int) (remove func(), err error) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	return func() {
		if got, err := readPID(path); err == nil && got == pid {
			_ = os.Remove(path)
		}
	}, nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds no process id", path)
	}
	return pid, nil
}

// signalPID sends sig to the process named in the pid file at path.
func signalPID(path string, sig syscall.Signal) (int, error) {
	pid, err := readPID(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("no pid file %s: is the agent running (with this --config or --pid_file)?", path)
	}
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return 0, fmt.Errorf("no agent runs as pid %d (stale pid file %s)", pid, path)
		}
		return 0, fmt.Errorf("signal pid %d: %w", pid, err)
	}
	return pid, nil
}
