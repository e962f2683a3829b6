// Command bridge-discord will be the Discord bridge. It is not built yet: this main
// only says so, so that an operator who enables it gets a clear error
// (agentd shows the bridge as failed with this message) instead of a hang.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bridge-discord: not built yet: the Discord bridge has not landed in this version of agentd; disable bridges.discord in openagent.yaml")
	os.Exit(1)
}
