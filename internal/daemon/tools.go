package daemon

import (
	"context"
	"fmt"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/mcp"
	"github.com/agentd/agentd/internal/vault"
)

// openTools builds the agent's tool registry: the MCP servers of the mcps
// table and the built-in tool sets, which appear as builtin rows of that
// table (so they can be disabled like a server). Other packages add their
// built-in tools here with d.mcp.AddBuiltin before the pool starts.
func (d *daemon) openTools(ctx context.Context, cfg *config.Config) error {
	reg, err := agent.NewRegistry()
	if err != nil {
		return err
	}
	d.tools = reg
	mcp.Version = d.opts.Version
	d.mcp, err = mcp.Open(ctx, mcp.Options{
		DB: d.st.DB(), Dir: d.dir.Root, Tools: reg, Seed: cfg,
		Logger: d.log.With("component", "mcp"),
	})
	if err != nil {
		return fmt.Errorf("open MCP servers: %w", err)
	}
	for _, b := range []struct {
		name, desc string
		tools      []agent.Tool
	}{
		{"time", "the current date and time", []agent.Tool{mcp.TimeNow(nil)}},
		{"vault", "the owner's notes in memories/", vault.Tools(d.vault)},
		{"sessions", "send messages to other sessions (tools.sessions_send.allow)", []agent.Tool{mcp.SessionsSend(
			func() []string { return d.cfg.Current().Tools.SessionsSend.Allow },
			func(ctx context.Context, sid, text string) error { return d.mgr.Push(ctx, sid, text, nil) },
		)}},
	} {
		if err := d.mcp.AddBuiltin(ctx, b.name, b.desc, b.tools...); err != nil {
			return err
		}
	}
	return nil
}
