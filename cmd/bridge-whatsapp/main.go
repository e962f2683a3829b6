// Command bridge-whatsapp is agentd's WhatsApp bridge (a linked device
// through whatsmeow). agentd launches it as a plugin; it is not meant to
// be run by hand. Link it with `agentd bridge login DIR whatsapp`.
package main

import (
	"github.com/agentd/agentd/plugins/bridge"
)

func main() { bridge.Serve(newPlatform()) }
