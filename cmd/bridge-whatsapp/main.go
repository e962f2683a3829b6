// Command bridge-whatsapp will be the WhatsApp bridge. It is not built yet: this main
// only says so, so that an operator who enables it gets a clear error
// (agentd shows the bridge as failed with this message) instead of a hang.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bridge-whatsapp: not built yet: the WhatsApp bridge has not landed in this version of agentd; disable bridges.whatsapp in openagent.yaml")
	os.Exit(1)
}
