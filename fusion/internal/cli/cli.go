// Package cli is fustor-fusion's command line: flags, configuration loading, logging and
// signal handling around app.Fusion.
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

	"github.com/fustor/fustor/fusion/internal/app"
	"github.com/fustor/fustor/fusion/internal/config"
	sdkconfig "github.com/fustor/fustor/sdk/config"
	"github.com/fustor/fustor/sdk/logging"
)

const usage = `fustor-fusion: merge agents' event streams into views and serve queries.

Usage: fustor-fusion [--config FILE|DIR] [--demo] [--server.listen ADDR] [--log.level LEVEL]

Configuration comes from the built-in defaults, then the YAML file or directory of files given by
--config (or $FUSTOR_CONFIG, else $FUSTOR_HOME/fusion.yaml if it exists; FUSTOR_HOME defaults to
~/.fustor), then FUSTOR_* variables (FUSTOR_SERVER__LISTEN=...), then flags.
--demo starts from the built-in demo configuration (view "demo", query key "demo-key").
`

// Main runs Fusion until SIGINT/SIGTERM and returns the exit code.
func Main(args, environ []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fustor-fusion", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "YAML config file or directory of *.yaml files")
	demo := fs.Bool("demo", false, "start from the built-in demo configuration")
	def := config.Default()
	fs.String("server.listen", def.Server.Listen, "gRPC listen address")
	fs.String("server.debug_listen", def.Server.DebugListen, "serve /debug/pprof/, /debug/memstats and /metrics on this HTTP address (off when empty)")
	fs.String("server.metrics_listen", def.Server.MetricsListen, "serve Prometheus metrics at /metrics on this HTTP address (off when empty)")
	fs.String("log.level", def.Log.Level, "log level: debug, info, warn, error")
	fs.String("log.format", def.Log.Format, "log format: console or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 2
	}
	cfg := config.Default()
	if *demo {
		cfg = config.Demo()
	}
	// The home directory's file ($FUSTOR_HOME/fusion.yaml) is read unless a path is given; the demo
	// stays the demo.
	home := "fusion"
	if *demo {
		home = ""
	}
	if err := sdkconfig.Load(&cfg, sdkconfig.Source{Path: *cfgPath, Name: home, Environ: func() []string { return environ }, Flags: fs}); err != nil {
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 2
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	f, err := app.New(log, cfg, app.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("fusion started", zap.String("addr", f.Addr().String()), zap.Int("pipes", len(cfg.Pipes)), zap.Int("views", len(cfg.Views)))
	if err := f.Run(ctx); err != nil {
		log.Error("fusion stopped with an error", zap.Error(err))
		return 1
	}
	log.Info("fusion stopped")
	return 0
}
