package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentd/agentd/internal/agentdir"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/coordinator"
	"github.com/agentd/agentd/internal/store"
)

var initName string

func init() {
	register(&command{
		name: "init",
		args: "DIR",
		summary: `create an agent directory
Creates DIR with openagent.yaml (every option commented), openagent.db,
memories/, logs/, keys/ (0700), uploads/ and bridges/, makes this agent the
coordinator of a new network, and gives the local CLI an owner identity with
an admin certificate. A real LLM provider is configured when OPENAI_API_KEY or
ANTHROPIC_API_KEY is set (referenced as ${VAR}); otherwise the offline echo
provider. Refuses a directory that already holds an agent.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&initName, "name", "", "agent name (default: the directory's name)")
		},
		run: runInit,
	})
}

func runInit(_ *flag.FlagSet, args []string) error {
	arg, err := oneDir(args)
	if err != nil {
		return err
	}
	dir, err := createAgent(arg, initName)
	if err != nil {
		return err
	}
	name := initName
	if name == "" {
		name = filepath.Base(dir.Root)
	}
	fmt.Fprintf(stdout, "created agent %q in %s\n\nnext:\n  agentd serve %s      # run it\n  agentd chat %s -m hi  # talk to it\n",
		name, dir.Root, arg, arg)
	return nil
}

// createAgent makes a new agent directory at arg (init, serve --init).
func createAgent(arg, name string) (agentdir.Dir, error) {
	dir, err := agentdir.Open(arg)
	if err != nil {
		return dir, err
	}
	if name == "" {
		name = filepath.Base(dir.Root)
	}
	text, err := config.Template(name, os.LookupEnv)
	if err != nil {
		return dir, err
	}
	if err := dir.Create(text); err != nil {
		return dir, err
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dir.DB())
	if err != nil {
		return dir, err
	}
	defer st.Close()
	if err := coordinator.Bootstrap(ctx, dir.Root, st, name); err != nil {
		return dir, fmt.Errorf("create network: %w", err)
	}
	return dir, nil
}

// errNotRunning is returned by commands that need the daemon.
var errNotRunning = errors.New("agentd is not running")
