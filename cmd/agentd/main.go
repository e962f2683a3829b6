// Command agentd is the self-hosted personal AI agent daemon and its CLI.
package main

import (
	"os"

	"github.com/agentd/agentd/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
