// Package agentdir owns the layout of an agent directory (DESIGN.md §5):
// which files and folders exist, their modes, and creating a new one.
package agentdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/store"
)

// Dir is an agent directory.
type Dir struct {
	Root string // absolute
}

// Open returns the agent directory at root without checking it.
func Open(root string) (Dir, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return Dir{}, fmt.Errorf("agent directory %s: %w", root, err)
	}
	return Dir{Root: abs}, nil
}

func (d Dir) Config() string   { return filepath.Join(d.Root, config.FileName) }
func (d Dir) DB() string       { return filepath.Join(d.Root, store.FileName) }
func (d Dir) Memories() string { return filepath.Join(d.Root, "memories") }
func (d Dir) Logs() string     { return filepath.Join(d.Root, "logs") }
func (d Dir) Keys() string     { return filepath.Join(d.Root, "keys") }
func (d Dir) Uploads() string  { return filepath.Join(d.Root, "uploads") }
func (d Dir) Bridges() string  { return filepath.Join(d.Root, "bridges") }
func (d Dir) Socket() string   { return filepath.Join(d.Root, "agentd.sock") }
func (d Dir) Lock() string     { return filepath.Join(d.Root, "agentd.lock") }

// IrohSocket is where the iroh sidecar hands accepted streams to agentd.
func (d Dir) IrohSocket() string { return filepath.Join(d.Root, "iroh.sock") }

// OwnerIdentity is the local CLI's identity file (key + admin cert).
func (d Dir) OwnerIdentity() string { return filepath.Join(d.Keys(), "owner.identity") }

// Log returns the path of a log file in logs/.
func (d Dir) Log(name string) string { return filepath.Join(d.Logs(), name) }

// BridgeData returns a bridge's own state directory.
func (d Dir) BridgeData(name string) string { return filepath.Join(d.Bridges(), name) }

// ErrExists is returned by Create for a directory that already holds an agent.
var ErrExists = errors.New("already an agent directory")

// ErrNotAgentDir is returned by Check for a directory without an agent.
var ErrNotAgentDir = errors.New("not an agent directory")

// Check verifies that d holds an agent (its config file exists).
func (d Dir) Check() error {
	if _, err := os.Stat(d.Config()); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w (no %s; create one with: agentd init %s)", d.Root, ErrNotAgentDir, config.FileName, d.Root)
		}
		return fmt.Errorf("%s: %w", d.Root, err)
	}
	return nil
}

// Create makes the directory tree for a new agent and writes configText as
// its config. It refuses a directory that already holds an agent's config
// or database, and touches nothing in that case.
func (d Dir) Create(configText []byte) error {
	for _, p := range []string{d.Config(), d.DB()} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w (found %s); refusing to touch it", d.Root, ErrExists, filepath.Base(p))
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", d.Root, err)
		}
	}
	// 0700: the directory holds keys, the database (provider keys, chat
	// history) and the config; no other local user may list or read it.
	if err := os.MkdirAll(d.Root, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d.Root, err)
	}
	if err := os.Chmod(d.Root, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d.Root, err)
	}
	for _, sub := range []struct {
		path string
		mode os.FileMode
	}{
		{d.Memories(), 0o755}, {d.Logs(), 0o755}, {d.Keys(), 0o700},
		{d.Uploads(), 0o755}, {d.Bridges(), 0o700},
	} {
		if err := os.MkdirAll(sub.path, sub.mode); err != nil {
			return fmt.Errorf("create %s: %w", sub.path, err)
		}
		// MkdirAll obeys the umask; the mode is part of the contract.
		if err := os.Chmod(sub.path, sub.mode); err != nil {
			return err
		}
	}
	// O_EXCL: if another init raced us, one of them loses cleanly.
	f, err := os.OpenFile(d.Config(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := f.Write(configText); err != nil {
		f.Close()
		return fmt.Errorf("write config: %w", err)
	}
	return f.Close()
}

// private lists what must be readable by the agent's user alone, with the
// mode it gets: the directory, the config, the database with its WAL and
// shared-memory files, and the keys.
func (d Dir) private() []struct {
	path string
	mode os.FileMode
} {
	db := d.DB()
	return []struct {
		path string
		mode os.FileMode
	}{
		{d.Root, 0o700}, {d.Keys(), 0o700}, {d.Config(), 0o600},
		{db, 0o600}, {db + "-wal", 0o600}, {db + "-shm", 0o600},
	}
}

// Secure takes group and other permissions away from the private parts of
// an existing agent directory (agents made before 0700/0600 were the rule
// had a 0755 directory and a 0644 database) and returns the paths it
// changed, for one log line. Missing files are skipped.
func (d Dir) Secure() ([]string, error) {
	var changed []string
	for _, p := range d.private() {
		fi, err := os.Lstat(p.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("secure %s: %w", p.path, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm()&0o077 == 0 {
			continue // a symlink's own mode means nothing; already private
		}
		if err := os.Chmod(p.path, p.mode); err != nil {
			return changed, fmt.Errorf("secure %s: %w", p.path, err)
		}
		changed = append(changed, p.path)
	}
	return changed, nil
}
