package telegram

import (
	"context"

	"github.com/agentd/agentd/plugins/bridge"
)

// registerCommands puts the bridge's commands in the bot's menu (the "/"
// button) with setMyCommands, in the words bridge.Commands uses for /help.
// Best effort: without the menu the commands still work when typed.
func (p *Platform) registerCommands(ctx context.Context) {
	type command struct {
		Command     string `json:"command"`
		Description string `json:"description"`
	}
	var cmds []command
	for _, c := range bridge.Commands {
		cmds = append(cmds, command{Command: c.Name, Description: c.Help})
	}
	var ok bool
	if err := p.call(ctx, "setMyCommands", map[string]any{"commands": cmds}, &ok); err != nil {
		p.log.Warn("setMyCommands failed; the command menu stays as it was", "err", err)
	}
}
