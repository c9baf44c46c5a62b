// Command fustor-fusion is the Fusion server: it merges agents' event streams into views and
// answers queries over gRPC.
package main

import (
	"os"

	"github.com/fustor/fustor/fusion/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Environ(), os.Stderr)) }
