// Package cli is fustor-fusion's command line: flags, configuration loading, logging and
// signal handling around app.Fusion.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/app"
	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	sdkconfig "github.com/fustor/fustor/sdk/config"
	"github.com/fustor/fustor/sdk/dial"
	"github.com/fustor/fustor/sdk/logging"
)

const usage = `fustor-fusion: merge agents' event streams into views and serve queries.

Usage: fustor-fusion [--config FILE|DIR] [--demo] [--validate] [--server.listen ADDR] [--log.level LEVEL]
       fustor-fusion reload [--config FILE|DIR] [--server ADDR] [--key ADMIN_KEY]
                            [--tls] [--ca-file F] [--cert F --cert-key F] [--server-name N]

--validate checks the configuration, prints every error and exits 0 (valid) or 1.
"reload" asks the running Fusion (AdminService.Reload; its address and admin key from the same
configuration unless given) to read its configuration again; SIGHUP does the same. Only what
changed by id is started, stopped or changed; an invalid configuration changes nothing.
Exit codes: 0 ok, 1 invalid configuration or failed reload, 2 usage or unreadable configuration.

Configuration comes from the built-in defaults, then the YAML file or directory of files given by
--config (or $FUSTOR_CONFIG, else $FUSTOR_HOME/fusion.yaml if it exists; FUSTOR_HOME defaults to
~/.fustor), then FUSTOR_* variables (FUSTOR_SERVER__LISTEN=...), then flags.
--demo starts from the built-in demo configuration (view "demo", query key "demo-key").
`

// Main runs Fusion until SIGINT/SIGTERM (SIGHUP reloads its configuration) and returns the exit
// code.
func Main(args, environ []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "reload" {
		return reloadMain(args[1:], environ, stderr)
	}
	fs := pflag.NewFlagSet("fustor-fusion", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "YAML config file or directory of *.yaml files")
	demo := fs.Bool("demo", false, "start from the built-in demo configuration")
	validate := fs.Bool("validate", false, "check the configuration, print every error, exit 0 or 1")
	def := config.Default()
	fs.String("server.listen", def.Server.Listen, "gRPC listen address")
	fs.String("server.debug_listen", def.Server.DebugListen, "serve /debug/pprof/, /debug/memstats and /metrics on this HTTP address (off when empty)")
	fs.String("server.metrics_listen", def.Server.MetricsListen, "serve Prometheus metrics at /metrics on this HTTP address (off when empty)")
	fs.String("server.http_listen", def.Server.HTTPListen, "serve the JSON/HTTP gateway, /openapi.json and the web console on this HTTP address (off when empty)")
	fs.String("log.level", def.Log.Level, "log level: debug, info, warn, error")
	fs.String("log.format", def.Log.Format, "log format: console or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 2
	}
	// The same sources are read again on a reload.
	load := func() (config.Config, error) { return loadConfig(*cfgPath, *demo, environ, fs) }
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 2
	}
	if *validate {
		cfg.Normalize()
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "fustor-fusion: the configuration is invalid:\n%v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "fustor-fusion: the configuration is valid (%d views, %d pipes)\n", len(cfg.Views), len(cfg.Pipes))
		return 0
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	f, err := app.New(log, cfg, app.Options{Load: load})
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// Reload logs what changed, or every error of a refused configuration.
				_, _ = f.Reload(ctx)
			}
		}
	}()
	log.Info("fusion started", zap.String("addr", f.Addr().String()), zap.Int("pipes", len(cfg.Pipes)), zap.Int("views", len(cfg.Views)))
	if err := f.Run(ctx); err != nil {
		log.Error("fusion stopped with an error", zap.Error(err))
		return 1
	}
	log.Info("fusion stopped")
	return 0
}

// loadConfig reads the configuration from its sources: the defaults (or the demo), the file or
// directory, FUSTOR_* variables and the flags the user set.
func loadConfig(path string, demo bool, environ []string, fs *pflag.FlagSet) (config.Config, error) {
	cfg := config.Default()
	// The home directory's file ($FUSTOR_HOME/fusion.yaml) is read unless a path is given; the
	// demo stays the demo.
	home := "fusion"
	if demo {
		cfg, home = config.Demo(), ""
	}
	err := sdkconfig.Load(&cfg, sdkconfig.Source{Path: path, Name: home, Environ: func() []string { return environ }, Flags: fs})
	return cfg, err
}

// adminKey returns the first admin key the configuration can give (a literal, env: or file:
// this shell can read): a sha256: setting only lets Fusion check a key, so reload needs --key
// when every admin key is one.
func adminKey(settings []string) (string, error) {
	var first error
	for i, s := range settings {
		k, err := config.ReadKey(s)
		if err == nil {
			return k, nil
		}
		if first == nil && !errors.Is(err, config.ErrDigestOnly) {
			first = fmt.Errorf("read server.admin_keys[%d]: %w", i, err)
		}
	}
	switch {
	case first != nil:
		return "", first
	case len(settings) > 0:
		return "", errors.New("no admin key to send: server.admin_keys holds only sha256: digests; give --key")
	}
	return "", nil
}

// reloadMain asks a running Fusion to reload its configuration.
func reloadMain(args, environ []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fustor-fusion reload", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the running Fusion's configuration (for its address and admin key)")
	addr := fs.String("server", "", "Fusion's address (default: server.listen of the configuration)")
	key := fs.String("key", "", "an admin key (default: the configuration's first server.admin_keys that is not a sha256: digest)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the reload")
	var sec dial.TLS
	fs.BoolVar(&sec.Enabled, "tls", false, "use TLS (default when the configuration's server.tls is set), verifying Fusion with the system roots unless --ca-file")
	fs.StringVar(&sec.CAFile, "ca-file", "", "use TLS, verifying Fusion with this PEM CA bundle")
	fs.StringVar(&sec.CertFile, "cert", "", "use TLS and present this client certificate (mutual TLS)")
	fs.StringVar(&sec.KeyFile, "cert-key", "", "the client certificate's private key")
	fs.StringVar(&sec.ServerName, "server-name", "", "the name Fusion's certificate must carry (default: the host of --server)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *addr == "" || *key == "" {
		cfg, err := loadConfig(*cfgPath, false, environ, nil)
		if err != nil {
			fmt.Fprintf(stderr, "fustor-fusion reload: %v\n", err)
			return 2
		}
		if *addr == "" {
			*addr = cfg.Server.Listen
		}
		if cfg.Server.TLS.Enabled() {
			sec.Enabled = true
		}
		if *key == "" {
			k, err := adminKey(cfg.Server.AdminKeys)
			if err != nil {
				fmt.Fprintf(stderr, "fustor-fusion reload: %v\n", err)
				return 2
			}
			*key = k
		}
	}
	creds, err := sec.Credentials(nil)
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion reload: %v\n", err)
		return 2
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "fustor-fusion reload: connect to %s: %v\n", *addr, err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*key)
	resp, err := fustorv1.NewAdminServiceClient(conn).Reload(ctx, &fustorv1.ReloadRequest{})
	if err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "fustor-fusion reload: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintf(stderr, "fustor-fusion reload: %v\n", err)
		}
		return 1
	}
	if len(resp.GetChanges()) == 0 {
		fmt.Fprintln(stderr, "fustor-fusion reload: nothing changed")
	}
	for _, c := range resp.GetChanges() {
		fmt.Fprintf(stderr, "fustor-fusion reload: %s\n", c)
	}
	return 0
}
