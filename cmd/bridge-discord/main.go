// Command bridge-discord is agentd's Discord bridge. agentd launches it as
// a plugin; it is not meant to be run by hand.
package main

import (
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/discord"
)

func main() { bridge.Serve(discord.New()) }
