package config

import (
	"fmt"
	"os"
	"sync"

	"github.com/agentd/agentd/devicecert"
)

// fileMu serialises read-modify-write of config files within the process
// (REST edits and bridge enable/disable), so one cannot undo the other.
var fileMu sync.Mutex

// AnyEnv is a lookup that accepts every ${NAME}: it checks a file's shape
// where the environment that will expand it is not this process's (the CLI
// editing the file of a daemon started elsewhere).
func AnyEnv(string) (string, bool) { return "set", true }

// WriteFile checks src exactly as a hand edit is checked on reload (the
// same Parse, the same messages) and only then atomically replaces path
// (temp file + rename, mode 0600). An invalid src changes nothing.
func WriteFile(path string, src []byte, lookup func(string) (string, bool)) (*Config, error) {
	cfg, err := Parse(FileName, src, lookup)
	if err != nil {
		return nil, err
	}
	if err := devicecert.WriteFileAtomic(path, src, 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	return cfg, nil
}

// EditFile hands fn the file's tree as written (${ENV} references not
// expanded), then writes what fn left back into the file with Rewrite, so
// only the changed values' text changes, and checks it with WriteFile.
// It returns the new config and the new file text.
func EditFile(path string, lookup func(string) (string, bool), fn func(raw map[string]any) error) (*Config, []byte, error) {
	fileMu.Lock()
	defer fileMu.Unlock()
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	raw, err := Raw(src)
	if err != nil {
		return nil, nil, err
	}
	m, _ := raw.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	if err := fn(m); err != nil {
		return nil, nil, err
	}
	out, err := Rewrite(src, m)
	if err != nil {
		return nil, nil, fmt.Errorf("edit config: %w", err)
	}
	cfg, err := WriteFile(path, out, lookup)
	return cfg, out, err
}
