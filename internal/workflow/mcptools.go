package workflow

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/agentd/agentd/internal/agent"
	"github.com/agentd/agentd/internal/mcp"
)

// PoolTools is Tools over the MCP pool: a tool is called through the
// agent's registry, where the pool registers the tools of its servers and
// built-in sets, so a workflow uses the same live connection as the model.
type PoolTools struct {
	Pool     *mcp.Pool
	Registry *agent.Registry
}

// Lookup implements Tools.
func (p PoolTools) Lookup(server, tool string) (known, running, listed bool) {
	v, err := p.Pool.Get(server)
	if err != nil {
		return false, false, false
	}
	if v.Status != mcp.StateRunning {
		return true, false, false
	}
	return true, true, p.registered(server, tool) != ""
}

// registered is the registry name of a listed tool ("" when not listed):
// <server>__<tool> for servers, the tool's own name for built-in sets.
func (p PoolTools) registered(server, tool string) string {
	for _, t := range p.Pool.Tools() {
		if t.MCP == server && t.Name == tool {
			return t.Registered
		}
	}
	return ""
}

// Call implements Tools, bounded by the pool's default call timeout.
func (p PoolTools) Call(ctx context.Context, server, tool string, args json.RawMessage) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, mcp.DefaultCallTimeout)
	defer cancel()
	name := p.registered(server, tool)
	if name == "" {
		return "", fmt.Errorf("MCP server %q has no tool %q now (is it running?)", server, tool)
	}
	return p.Registry.Call(ctx, name, args)
}
