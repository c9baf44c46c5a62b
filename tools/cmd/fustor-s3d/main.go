// Command fustor-s3d is an in-memory S3-protocol server for tests and demos of the agent's s3
// source: fustor-s3d [--listen ADDR] [--bucket NAME] [--seed N]. SIGUSR1 leaves the address
// (an outage), SIGUSR2 takes it back; the data stays.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/fustor/fustor/tools/internal/s3d"
)

func main() {
	cfg := s3d.Default()
	fs := pflag.NewFlagSet("fustor-s3d", pflag.ExitOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the S3 endpoint (port 0: any; the log line \"listening addr=\" names it)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", cfg.AdminListen, "address of a second S3 endpoint that outages (SIGUSR1) leave up")
	fs.StringVar(&cfg.Bucket, "bucket", cfg.Bucket, "bucket created at start")
	fs.IntVar(&cfg.Seed, "seed", cfg.Seed, "objects generated at start under 10 x 10 x 10 nested prefixes")
	fs.StringVar(&cfg.AccessKey, "access-key", cfg.AccessKey, "the only access key requests may name (empty: any; signatures are not checked)")
	fs.StringVar(&cfg.SecretKey, "secret-key", cfg.SecretKey, "secret key (accepted, not checked)")
	start := fs.String("start", cfg.Start.Format(time.RFC3339), "LastModified of the first put: RFC 3339, \"now\", or a duration from now (\"-24h\"); each put adds 1 ms")
	fs.BoolVar(&cfg.WallClock, "wall-clock", cfg.WallClock, "date the puts after the seed by the wall clock")
	_ = fs.Parse(os.Args[1:])
	now := time.Now().UTC().Truncate(time.Millisecond)
	if *start == "now" {
		cfg.Start = now
	} else if d, err := time.ParseDuration(*start); err == nil {
		cfg.Start = now.Add(d)
	} else if t, err := time.Parse(time.RFC3339, *start); err == nil {
		cfg.Start = t
	} else {
		fmt.Fprintf(os.Stderr, "fustor-s3d: --start: %v\n", err)
		os.Exit(2)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "fustor-s3d: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctl := make(chan os.Signal, 8)
	signal.Notify(ctl, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := s3d.New(os.Stdout, cfg).Run(ctx, ctl); err != nil {
		fmt.Fprintf(os.Stderr, "fustor-s3d: %v\n", err)
		os.Exit(1)
	}
}
