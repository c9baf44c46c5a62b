// Command fustorctl queries Fusion: views, listings, trees, stats, find, sessions.
package main

import (
	"context"
	"os"

	"github.com/fustor/fustor/sdk/internal/ctl"
)

func main() { os.Exit(ctl.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv)) }
