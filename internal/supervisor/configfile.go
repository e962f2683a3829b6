package supervisor

import (
	"fmt"

	"github.com/agentd/agentd/internal/config"
)

// WriteEnabled writes bridges.<name>.enabled to the config file, changing
// nothing else (config.EditFile edits the value's text in place, so
// comments, ${ENV} references and key order survive). The bridge's section
// must exist. Enable and Disable use it; the CLI uses it directly when no
// daemon is running, so ${ENV} references are checked by the daemon's
// reload, not here.
func WriteEnabled(path, name string, on bool) error {
	_, _, err := config.EditFile(path, config.AnyEnv, func(raw map[string]any) error {
		br, _ := raw["bridges"].(map[string]any)
		b, ok := br[name].(map[string]any)
		if !ok {
			return fmt.Errorf("no bridges.%s section", name)
		}
		b["enabled"] = on
		return nil
	})
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return nil
}
