// Command bridge-telegram is agentd's Telegram bridge. agentd launches it as
// a plugin; it is not meant to be run by hand.
package main

import (
	"github.com/agentd/agentd/plugins/bridge"
	"github.com/agentd/agentd/plugins/bridge/telegram"
)

func main() { bridge.Serve(telegram.New()) }
