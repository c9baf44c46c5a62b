// Command fustor-agent watches and scans directories and streams their metadata to Fusion.
package main

import (
	"os"

	"github.com/fustor/fustor/agent/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Environ(), os.Stderr)) }
