// Package cli is fustor-agent's command line: flags, configuration loading, logging and
// signal handling around app.Agent.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/app"
	"github.com/fustor/fustor/agent/internal/config"
	sdkconfig "github.com/fustor/fustor/sdk/config"
	"github.com/fustor/fustor/sdk/logging"
)

const usage = `fustor-agent: watch and scan directories and stream their metadata to Fusion.

Usage: fustor-agent [--config FILE|DIR] [--demo DIR] [--agent_id ID] [--log.level LEVEL]

Configuration comes from the built-in defaults, then the YAML file or directory of files given by
--config (or $FUSTOR_CONFIG, else $FUSTOR_HOME/agent.yaml if it exists; FUSTOR_HOME defaults to
~/.fustor), then FUSTOR_* variables (FUSTOR_AGENT_ID=...), then flags.
--demo DIR starts from the built-in demo configuration: watch DIR and send to Fusion on
127.0.0.1:7070 with the demo ingest key.
`

// Main runs the agent until SIGINT/SIGTERM and returns the exit code.
func Main(args, environ []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fustor-agent", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "YAML config file or directory of *.yaml files")
	demo := fs.String("demo", "", "watch this directory with the built-in demo configuration")
	def := config.Default()
	fs.String("agent_id", "", "globally unique agent id (default: host name)")
	fs.String("debug_listen", "", "serve /debug/pprof/, /debug/memstats and /metrics on this HTTP address (off when empty)")
	fs.String("metrics_listen", "", "serve Prometheus /metrics only on this HTTP address (off when empty)")
	fs.String("log.level", def.Log.Level, "log level: debug, info, warn, error")
	fs.String("log.format", def.Log.Format, "log format: console or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "fustor-agent: %v\n", err)
		return 2
	}
	cfg := config.Default()
	if *demo != "" {
		cfg = config.Demo(*demo)
	}
	// The home directory's file ($FUSTOR_HOME/agent.yaml) is read unless a path is given; the demo
	// stays the demo.
	home := "agent"
	if *demo != "" {
		home = ""
	}
	if err := sdkconfig.Load(&cfg, sdkconfig.Source{Path: *cfgPath, Name: home, Environ: func() []string { return environ }, Flags: fs}); err != nil {
		fmt.Fprintf(stderr, "fustor-agent: %v\n", err)
		return 2
	}
	// Top-level keys' flags are mapped by hand (config flags contain a dot).
	if f := fs.Lookup("agent_id"); f.Changed {
		cfg.AgentID = f.Value.String()
	}
	if f := fs.Lookup("debug_listen"); f.Changed {
		cfg.DebugListen = f.Value.String()
	}
	if f := fs.Lookup("metrics_listen"); f.Changed {
		cfg.MetricsListen = f.Value.String()
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "fustor-agent: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	a, err := app.New(log, cfg, app.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "fustor-agent: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("agent started", zap.String("agent_id", cfg.AgentID), zap.Int("pipes", len(cfg.Pipes)))
	if err := a.Run(ctx); err != nil {
		log.Error("agent stopped with an error", zap.Error(err))
		return 1
	}
	log.Info("agent stopped")
	return 0
}
