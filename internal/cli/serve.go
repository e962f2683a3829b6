package cli

import (
	"context"
	"flag"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/agentd/agentd/internal/daemon"
)

var serveDebug bool

func init() {
	register(&command{
		name: "serve",
		args: "DIR",
		summary: `run the daemon
Loads and validates DIR/openagent.yaml, opens the database, serves the
gateway on the unix socket DIR/agentd.sock (0600), on iroh and tcp when
enabled, and supervises the enabled bridges. Logs JSON to DIR/logs/agentd.log
and text to stderr. SIGINT/SIGTERM stop it cleanly within 2 s. A second serve
on the same directory is refused.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&serveDebug, "debug", false, "log at debug level")
		},
		run: runServe,
	})
}

func runServe(_ *flag.FlagSet, args []string) error {
	arg, err := oneDir(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	level := slog.LevelInfo
	if serveDebug {
		level = slog.LevelDebug
	}
	return daemon.Run(ctx, daemon.Options{Dir: arg, Console: stderr, Version: AgentVersion(), Level: level})
}
