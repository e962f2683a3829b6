package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/agentd/agentd/internal/agentdir"
	"github.com/agentd/agentd/internal/daemon"
)

var serveDebug, serveInit bool

func init() {
	register(&command{
		name: "serve",
		args: "DIR",
		summary: `run the daemon
Loads and validates DIR/openagent.yaml, opens the database, serves the
gateway on the unix socket DIR/agentd.sock (0600), on iroh and tcp when
enabled, and supervises the enabled bridges. Logs JSON to DIR/logs/agentd.log
and text to stderr. SIGINT/SIGTERM stop it cleanly within 2 s. A second serve
on the same directory is refused. After a requested restart (agentd restart,
POST /api/restart) it exits with status 75, on which the systemd unit in
deploy/ starts it again.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&serveDebug, "debug", false, "log at debug level")
			fs.BoolVar(&serveInit, "init", false, "create the agent directory first when it holds no agent yet (as agentd init DIR); an existing agent is served as it is")
		},
		run: runServe,
	})
}

func runServe(_ *flag.FlagSet, args []string) error {
	arg, err := oneDir(args)
	if err != nil {
		return err
	}
	if serveInit {
		if err := initIfMissing(arg); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	level := slog.LevelInfo
	if serveDebug {
		level = slog.LevelDebug
	}
	err = daemon.Run(ctx, daemon.Options{Dir: arg, Console: stderr, Version: AgentVersion(), Level: level})
	if errors.Is(err, daemon.ErrRestart) {
		return &exitError{code: daemon.ExitRestart, err: err}
	}
	return err
}

// initIfMissing creates the agent in arg unless one is there already, so
// `agentd serve DIR --init` works the first time and every time after.
func initIfMissing(arg string) error {
	dir, err := agentdir.Open(arg)
	if err != nil {
		return err
	}
	err = dir.Check()
	if err == nil || !errors.Is(err, agentdir.ErrNotAgentDir) {
		return err
	}
	if dir, err = createAgent(arg, ""); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created agent %q in %s\n", filepath.Base(dir.Root), dir.Root)
	return nil
}
