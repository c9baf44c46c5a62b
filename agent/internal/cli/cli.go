// Package cli is fustor-agent's command line: flags, configuration loading, logging, the pid
// file and signal handling around app.Agent, and the reload and --validate commands.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/app"
	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/sdk/logging"
)

const usage = `fustor-agent: watch and scan directories and stream their metadata to Fusion.

Usage:
  fustor-agent [--config FILE|DIR] [--demo DIR] [--agent_id ID] [--pid_file FILE] [--log.level LEVEL]
  fustor-agent --validate [--config FILE|DIR]
  fustor-agent reload [--config FILE|DIR] [--pid_file FILE]

Configuration comes from the built-in defaults, then the YAML file or directory of files given by
--config (or $FUSTOR_CONFIG, else $FUSTOR_HOME/agent.yaml if it exists; FUSTOR_HOME defaults to
~/.fustor), then FUSTOR_* variables (FUSTOR_AGENT_ID=...), then flags.
--demo DIR starts from the built-in demo configuration: watch DIR and send to Fusion on
127.0.0.1:7070 with the demo ingest key.

--validate loads and checks the configuration, prints every problem, and exits 0 if it is valid,
1 if not.

Reload: on SIGHUP the running agent loads its configuration again, the same way as at start. If
it is invalid nothing changes and every problem is logged; otherwise only the sources, senders
and pipes that changed (by id) are started, stopped or restarted — the others keep their
sessions — and each change is logged on a line of its own. Listeners and log settings apply at
start only. "fustor-agent reload" checks the configuration, then sends SIGHUP to the agent whose
process id is in the pid file: pid_file (--pid_file), else next to the configuration
(agent.yaml -> agent.pid in the same directory; a config directory -> DIR/agent.pid), else
$FUSTOR_HOME/agent.pid. The running agent writes that file at start and removes it on exit.

Exit codes: 0 ok; 1 invalid configuration or the agent failed; 2 bad usage, or a configuration
file that is missing or cannot be read.
`

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // invalid configuration, or the agent stopped with an error
	exitUsage   = 2 // bad flags, or a configuration that cannot be read
	cmdReload   = "reload"
	programName = "fustor-agent"
)

// Main runs the agent until SIGINT/SIGTERM, or one of its commands, and returns the exit code.
func Main(args, environ []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == cmdReload {
		return reloadMain(args[1:], environ, stderr)
	}
	fs, ld := newFlags(stderr, true)
	ld.environ = environ
	validate := fs.Bool("validate", false, "check the configuration, print every problem and exit 0 (valid) or 1")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if *validate {
		return validateMain(ld, stderr)
	}
	cfg, err := ld.load()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()
	a, err := app.New(log, cfg, app.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitFailed
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught before the pid file says where we are: its default action kills.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	pidPath := ld.pidFile(cfg)
	removePID, err := writePIDFile(pidPath, os.Getpid())
	if err != nil {
		log.Warn("pid file not written; fustor-agent reload cannot find this agent, SIGHUP still reloads", zap.String("pid_file", pidPath), zap.Error(err))
	} else {
		defer removePID()
	}
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		reloadOnHUP(ctx, log, hup, a, ld)
	}()
	log.Info("agent started", zap.String("agent_id", cfg.AgentID), zap.Int("pipes", len(cfg.Pipes)), zap.String("pid_file", pidPath))
	err = a.Run(ctx)
	stop() // Run may end on its own error: the reload loop must end too
	<-reloaded
	if err != nil {
		log.Error("agent stopped with an error", zap.Error(err))
		return exitFailed
	}
	log.Info("agent stopped")
	return exitOK
}

// reloadOnHUP reloads the configuration on each SIGHUP until ctx is done. Signals arriving
// during a reload fold into one more (the channel holds one).
func reloadOnHUP(ctx context.Context, log *zap.Logger, hup <-chan os.Signal, a *app.Agent, ld *loader) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info("reload requested", zap.String("signal", "SIGHUP"))
		cfg, err := ld.load()
		if err != nil {
			a.RefuseReload(fmt.Errorf("load config: %w", err))
			continue
		}
		reloadOnce(log, a, cfg)
	}
}

// reloadOnce applies cfg; a panic in it (a bug) is recovered and logged with its stack, so a
// reload can never take the running agent down (DESIGN.md §8).
func reloadOnce(log *zap.Logger, a *app.Agent, cfg config.Config) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("reload panicked", zap.String("panic", fmt.Sprint(r)), zap.ByteString("stack", debug.Stack()))
			a.RefuseReload(fmt.Errorf("reload panicked: %v", r))
		}
	}()
	_ = a.Reload(cfg) // it logs what changed, or every problem
}

// validateMain is --validate: every problem on a line of its own.
func validateMain(ld *loader, stderr io.Writer) int {
	cfg, err := ld.load()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage
	}
	errs := app.Errors(app.Validate(cfg))
	for _, e := range errs {
		fmt.Fprintf(stderr, "%s: %v\n", programName, e)
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "%s: configuration %sis invalid: %d problem(s)\n", programName, ld.describe(), len(errs))
		return exitFailed
	}
	fmt.Fprintf(stderr, "%s: configuration %sis valid\n", programName, ld.describe())
	return exitOK
}

// reloadMain is the reload command: check the configuration, then SIGHUP the running agent.
func reloadMain(args, environ []string, stderr io.Writer) int {
	fs, ld := newFlags(stderr, false)
	ld.environ = environ
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	cfg, err := ld.load()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage
	}
	// The agent would refuse it anyway; saying so here, with every problem, is quicker to read
	// than its log.
	if errs := app.Errors(app.Validate(cfg)); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(stderr, "%s: %v\n", programName, e)
		}
		fmt.Fprintf(stderr, "%s: reload not sent: configuration %sis invalid: %d problem(s)\n", programName, ld.describe(), len(errs))
		return exitFailed
	}
	path := ld.pidFile(cfg)
	pid, err := signalPID(path, syscall.SIGHUP)
	if err != nil {
		fmt.Fprintf(stderr, "%s: reload: %v\n", programName, err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "%s: asked the agent (pid %d, from %s) to reload; its log lists what changed\n", programName, pid, path)
	return exitOK
}

// parse parses args; ok is false when Main must return code at once.
func parse(fs *pflag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, false
		}
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see --help)\n", programName, fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

// newFlags declares the flags; run adds those only the daemon itself takes.
func newFlags(stderr io.Writer, run bool) (*pflag.FlagSet, *loader) {
	fs := pflag.NewFlagSet(programName, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	ld := &loader{fs: fs}
	ld.cfgPath = fs.String("config", "", "YAML config file or directory of *.yaml files")
	fs.String("pid_file", "", "where the running agent's process id is written (default: next to the config, else $FUSTOR_HOME/agent.pid)")
	if run {
		ld.demo = fs.String("demo", "", "watch this directory with the built-in demo configuration")
		def := config.Default()
		fs.String("agent_id", "", "globally unique agent id (default: host name)")
		fs.String("debug_listen", "", "serve /debug/pprof/, /debug/memstats and /metrics on this HTTP address (off when empty)")
		fs.String("metrics_listen", "", "serve Prometheus /metrics only on this HTTP address (off when empty)")
		fs.String("log.level", def.Log.Level, "log level: debug, info, warn, error")
		fs.String("log.format", def.Log.Format, "log format: console or json")
	}
	return fs, ld
}
