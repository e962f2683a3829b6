// Package identity stores a remote device's identity on the machine that
// enrolled it: the device key and certificate (devicecert's identity file,
// so any client can read it) and the agent it belongs to (NodeId, direct
// addresses, relay), in the XDG config directory:
//
//	$XDG_CONFIG_HOME/agentd/identity.json        key + cert   (0600, dir 0700)
//	$XDG_CONFIG_HOME/agentd/identity.agent.json  the agent    (0600)
//
// A custom identity path P keeps its agent record beside it, at P with its
// extension replaced by ".agent.json".
package identity

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/iroh"
)

// File names inside the config directory.
const (
	DirName  = "agentd"
	FileName = "identity.json"
)

// ErrNotEnrolled is returned by Load when there is no identity file.
var ErrNotEnrolled = errors.New("this machine has no agentd identity (enroll it first: agentd enroll TICKET)")

// Agent is the agent a device enrolled with and how to reach it.
type Agent struct {
	Name      string   `json:"name"`
	NetworkID string   `json:"network_id"`
	NodeID    string   `json:"node_id"`         // 64 hex chars
	Addrs     []string `json:"addrs,omitempty"` // direct addresses "ip:port"
	// Relay is the relay URL from the ticket; "" means the device dials
	// with relays disabled (direct addresses and discovery only).
	Relay      string    `json:"relay,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// NodeAddr is how to dial the agent.
func (a *Agent) NodeAddr() iroh.NodeAddr {
	return iroh.NodeAddr{NodeID: a.NodeID, Addrs: append([]string(nil), a.Addrs...), Relay: a.Relay}
}

// ConfigDir is $XDG_CONFIG_HOME/agentd, or ~/.config/agentd.
func ConfigDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the config directory: set XDG_CONFIG_HOME or HOME: %w", err)
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, DirName), nil
}

// DefaultPath is the identity file in ConfigDir.
func DefaultPath() (string, error) {
	dir, err := ConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, FileName), nil
}

// Resolve returns path, or DefaultPath when path is empty.
func Resolve(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	return DefaultPath()
}

// AgentPath is where the agent record of the identity at path lives.
func AgentPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".agent.json"
}

// Load reads the identity at path and its agent record. A missing identity
// file gives ErrNotEnrolled.
func Load(path string) (*devicecert.Identity, *Agent, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (no %s)", ErrNotEnrolled, path)
	}
	id, err := devicecert.LoadIdentity(path)
	if err != nil {
		return nil, nil, err
	}
	if len(id.Cert) == 0 {
		return nil, nil, fmt.Errorf("%w (%s holds a key but no certificate)", ErrNotEnrolled, path)
	}
	ap := AgentPath(path)
	fi, err := os.Stat(ap)
	if err != nil {
		return nil, nil, fmt.Errorf("load agent record: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("load agent record %s: mode %#o; chmod 600 it", ap, fi.Mode().Perm())
	}
	b, err := os.ReadFile(ap)
	if err != nil {
		return nil, nil, fmt.Errorf("load agent record: %w", err)
	}
	var a Agent
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, nil, fmt.Errorf("load agent record %s: %w", ap, err)
	}
	if err := checkNodeID(a.NodeID); err != nil {
		return nil, nil, fmt.Errorf("load agent record %s: %w", ap, err)
	}
	return id, &a, nil
}

// Save writes the identity (0600) and its agent record (0600), creating the
// directory with mode 0700. The identity is written last, so a reader never
// sees a new identity with a stale agent.
func Save(path string, id *devicecert.Identity, a *Agent) error {
	if err := checkNodeID(a.NodeID); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := devicecert.WriteFileAtomic(AgentPath(path), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := id.Save(path); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	return nil
}

func checkNodeID(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("node id %q: want 64 hex characters", s)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("node id %q: %w", s, err)
	}
	return nil
}

// ParseNodeID checks a NodeId given on the command line and lowercases it.
func ParseNodeID(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if err := checkNodeID(s); err != nil {
		return "", err
	}
	return s, nil
}
