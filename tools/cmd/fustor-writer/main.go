// Command fustor-writer keeps writing submissions into storages for the compose demo:
// fustor-writer [--every 3s] [--keep 20] DIR...
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/fustor/fustor/tools/internal/writer"
)

func main() {
	cfg := writer.Default()
	fs := pflag.NewFlagSet("fustor-writer", pflag.ExitOnError)
	fs.DurationVar(&cfg.Every, "every", cfg.Every, "pause between two submissions")
	fs.DurationVar(&cfg.Append, "append", cfg.Append, "pause between a file's appends")
	fs.IntVar(&cfg.Files, "files", cfg.Files, "most files in a submission")
	fs.IntVar(&cfg.Keep, "keep", cfg.Keep, "submissions kept per storage (older ones are deleted)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	_ = fs.Parse(os.Args[1:])
	cfg.Roots = fs.Args()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "fustor-writer: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := writer.New(os.Stdout, cfg).Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "fustor-writer: %v\n", err)
		os.Exit(1)
	}
}
