// Command fustor-bench is the end-to-end benchmark: it generates a tree of N files, runs the
// real fustor-fusion and fustor-agent on it, measures them against find(1) and writes a
// report (text, JSON, HTML). See fustor-bench --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fustor/fustor/tools/internal/bench"
)

func main() {
	// Ctrl-C cancels the run; the bench then stops the daemons it started before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, bench.IsTerminal(os.Stderr))
	stop()
	os.Exit(code)
}
