package supervisor

import (
	"fmt"
	"os"

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

// ReadEnabled reads bridges.<name>.enabled from the config file as it is
// now; ok is false when it is not written there as a plain boolean (a
// missing key, an ${ENV} reference: config.Load is the one to read those).
func ReadEnabled(path, name string) (on, ok bool, err error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return false, false, fmt.Errorf("read %s: %w", path, err)
	}
	raw, err := config.Raw(src)
	if err != nil {
		return false, false, fmt.Errorf("read %s: %w", path, err)
	}
	top, _ := raw.(map[string]any)
	br, _ := top["bridges"].(map[string]any)
	b, _ := br[name].(map[string]any)
	on, ok = b["enabled"].(bool)
	return on, ok, nil
}
